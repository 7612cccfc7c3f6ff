//! Updates of a container on `local` as the customers of a vendor see them, through its
//! stable address: releases in a row without one failed request, a broken release that
//! leaves the previous version serving, retry and redeploy from there, and a delete that
//! leaves no process, port or directory behind.

use std::net::TcpStream;
use std::time::Duration;

use e2e::api::{Api, Request};
use e2e::deployments::{LOOPS, delete, endpoint, onboard, release, web_stack};
use e2e::hammer::{Hammer, get, port_of};
use e2e::procfs::{ProcInfo, live_processes};
use e2e::server::Options;
use e2e::wait_for;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// How long one release, update, retry or delete may take.
const SETTLE: Duration = Duration::from_secs(60);

fn start() -> Api {
    Api::start_with(Options {
        deployment_loops: true,
        config: Some(LOOPS.into()),
        ..Options::default()
    })
}

/// The versions of one test: each `<marker>.v<n>`, so that its processes are told apart in
/// `/proc` from every other test's, and killed by [`Leftovers`] if the test fails half-way.
struct Versions {
    marker: String,
}

impl Versions {
    fn new() -> Versions {
        Versions {
            marker: e2e::api::unique(&format!("t{}", std::process::id())),
        }
    }

    fn v(&self, n: u32) -> String {
        format!("{}.v{n}", self.marker)
    }

    /// Whether `process` runs a workload of one of these versions.
    fn runs(&self, process: &ProcInfo) -> bool {
        let prefix = format!("{}.", self.marker);
        process
            .argv
            .windows(2)
            .any(|pair| pair[0] == "--version" && pair[1].starts_with(&prefix))
    }

    fn processes(&self) -> Vec<ProcInfo> {
        live_processes()
            .into_iter()
            .filter(|p| self.runs(p))
            .collect()
    }
}

impl Drop for Versions {
    /// Workloads outlive the server (a container is detached from deployd), so a test that
    /// ends before its delete kills what it started.
    fn drop(&mut self) {
        for process in self.processes() {
            let _ = kill(Pid::from_raw(process.pid), Signal::SIGKILL);
        }
    }
}

/// Waits until `done` holds for the deployment's record; panics with the record otherwise.
fn wait_record(api: &Api, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_for(SETTLE, || {
        last = api.deployment(id);
        done(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("deployment {id}: {what} within {SETTLE:?}: {last:#}"))
}

/// Waits until the deployment runs `release`.
fn wait_running_on(api: &Api, id: &str, release: &str) -> Value {
    wait_record(api, id, &format!("running on {release}"), |record| {
        record["status"] == "running" && record["currentReleaseId"] == release
    })
}

#[test]
fn five_updates_in_a_row_answer_every_request_of_clients_hammering_the_stable_address() {
    let api = start();
    let versions = Versions::new();
    let names: Vec<String> = (1..=6).map(|n| versions.v(n)).collect();
    let first = release(
        &api,
        web_stack(&e2e::workloads::push(
            &api,
            "alien-test-web",
            &names[0],
            &[],
        )),
    );
    let deployment = onboard(&api);
    let running = wait_running_on(&api, &deployment.id, &first);
    let url = endpoint(&running, "web");
    assert_eq!(get(&url), Ok((200, names[0].clone())), "{url}");

    let hammer = Hammer::start(port_of(&url), &names);
    for name in &names[1..] {
        let image = e2e::workloads::push(&api, "alien-test-web", name, &[]);
        let next = release(&api, web_stack(&image));
        let updated = wait_running_on(&api, &deployment.id, &next);
        assert_eq!(
            endpoint(&updated, "web"),
            url,
            "the address changed with {name}"
        );
        assert_eq!(get(&url), Ok((200, name.clone())), "{url} after {name}");
    }
    let seen = hammer.finish();

    let kept_alive = &seen[0];
    assert_eq!(
        kept_alive.connections, 1,
        "the kept-alive connection broke: {kept_alive:?}"
    );
    for client in &seen {
        assert_eq!(
            client.versions, names,
            "a client did not see every version answer in turn: {client:?}"
        );
    }
    let left: Vec<ProcInfo> = versions.processes();
    assert_eq!(
        left.iter()
            .filter(|p| !p.has_args(&["--version", &names[5]]))
            .count(),
        0,
        "older versions still run after the updates: {left:#?}"
    );
    delete(&api, &deployment.id);
}

#[test]
fn a_broken_release_fails_the_update_leaves_the_last_version_serving_and_retry_and_redeploy_work() {
    let api = start();
    let versions = Versions::new();
    let (good, broken, fixed) = (versions.v(1), versions.v(2), versions.v(3));
    let first = release(
        &api,
        web_stack(&e2e::workloads::push(&api, "alien-test-web", &good, &[])),
    );
    let deployment = onboard(&api);
    let id = deployment.id.as_str();
    let running = wait_running_on(&api, id, &first);
    let url = endpoint(&running, "web");
    let hammer = Hammer::start(port_of(&url), &[good.clone(), fixed.clone()]);

    let broken_image = e2e::workloads::push(&api, "alien-test-web", &broken, &["--exit-at-start"]);
    let broken_release = release(&api, web_stack(&broken_image));
    let failed = wait_record(&api, id, "update-failed", |record| {
        record["status"] == "update-failed"
    });
    let error = failure_message(&failed);
    for expected in ["'web'", "exiting at start, as asked"] {
        assert!(
            error.contains(expected),
            "the error does not say {expected:?}: {error}"
        );
    }
    let summary = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(
        summary.contains("web"),
        "the deployment's error does not name the resource: {failed:#}"
    );
    assert_eq!(failed["currentReleaseId"], first.as_str(), "{failed:#}");
    assert_eq!(
        endpoint(&failed, "web"),
        url,
        "the address changed: {failed:#}"
    );
    assert_eq!(
        get(&url),
        Ok((200, good.clone())),
        "{url} after the failure"
    );

    api.expect(
        &Request::post_empty(format!("/v1/deployments/{id}/retry")).auth(api.admin()),
        200,
    );
    let again = wait_record(&api, id, "update-failed again after a retry", |record| {
        record["status"] == "update-failed"
            && record["retryRequested"] != true
            && failure_message(record) != error
    });
    let second_error = failure_message(&again);
    assert!(
        second_error.contains("'web'") && second_error.contains("exiting at start, as asked"),
        "{second_error}"
    );
    assert_eq!(get(&url), Ok((200, good.clone())), "{url} after the retry");
    assert_ne!(
        again["currentReleaseId"],
        broken_release.as_str(),
        "{again:#}"
    );

    let fixed_release = release(
        &api,
        web_stack(&e2e::workloads::push(&api, "alien-test-web", &fixed, &[])),
    );
    let recovered = wait_running_on(&api, id, &fixed_release);
    assert_eq!(
        endpoint(&recovered, "web"),
        url,
        "the address changed: {recovered:#}"
    );
    assert_eq!(get(&url), Ok((200, fixed.clone())), "{url} after the fix");

    let serving: Vec<i32> = versions.processes().iter().map(|p| p.pid).collect();
    api.expect(
        &Request::post_empty(format!("/v1/deployments/{id}/redeploy")).auth(api.admin()),
        200,
    );
    let redeploying = api.status_of(id);
    assert!(
        ["update-pending", "updating"].contains(&redeploying.as_str()),
        "a redeploy did not start an update: {redeploying}"
    );
    let redeployed = wait_record(&api, id, "running after a redeploy", |record| {
        record["status"] == "running"
    });
    assert_eq!(
        redeployed["currentReleaseId"],
        fixed_release.as_str(),
        "{redeployed:#}"
    );
    assert_eq!(
        endpoint(&redeployed, "web"),
        url,
        "the address changed: {redeployed:#}"
    );
    assert_eq!(
        get(&url),
        Ok((200, fixed.clone())),
        "{url} after the redeploy"
    );
    // As on the public platform, an update only touches resources whose configuration
    // changed: a redeploy of the same release leaves a healthy workload running.
    let after: Vec<i32> = versions.processes().iter().map(|p| p.pid).collect();
    assert!(
        !serving.is_empty() && after == serving,
        "a redeploy of an unchanged release restarted the workload: {serving:?} then {after:?}"
    );

    let seen = hammer.finish();
    for client in &seen {
        assert_eq!(
            client.versions,
            [good.clone(), fixed.clone()],
            "a client did not see both good versions answer: {client:?}"
        );
    }
    delete(&api, id);
}

/// The web resource's error message in the stack state: why its update failed.
fn failure_message(record: &Value) -> String {
    record["stackState"]["resources"]["web"]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_delete_stops_every_version_closes_the_stable_address_and_removes_the_directory() {
    let api = start();
    let versions = Versions::new();
    let (v1, v2) = (versions.v(1), versions.v(2));
    let first = release(
        &api,
        web_stack(&e2e::workloads::push(&api, "alien-test-web", &v1, &[])),
    );
    let deployment = onboard(&api);
    let id = deployment.id.as_str();
    wait_running_on(&api, id, &first);
    let second = release(
        &api,
        web_stack(&e2e::workloads::push(&api, "alien-test-web", &v2, &[])),
    );
    let running = wait_running_on(&api, id, &second);
    let url = endpoint(&running, "web");
    assert_eq!(get(&url), Ok((200, v2.clone())), "{url}");
    let before = versions.processes();
    assert!(
        !before.is_empty() && before.iter().all(|p| p.has_args(&["--version", &v2])),
        "not exactly the version serving runs: {before:#?}"
    );
    let dir = api.server().data_dir().join("deployments").join(id);
    assert!(dir.is_dir(), "no {}", dir.display());

    delete(&api, id);
    let left = versions.processes();
    assert!(
        left.is_empty(),
        "processes of the deployment outlive its delete: {left:#?}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port_of(&url))).is_err(),
        "the stable address {url} still accepts connections"
    );
    assert!(!dir.exists(), "{} is left after the delete", dir.display());
}
