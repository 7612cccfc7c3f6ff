//! Push deployments on `local` when things die: a workload killed, deployd killed, the
//! manager killed mid-update, no OCI runtime to run in, and an image that tries to write
//! outside its root. Every version string names this test process, so that the workloads
//! found in `/proc` are this test's and not those of a test running beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e::api::{Api, NewDeployment, Request};
use e2e::deployments::{LOOPS, endpoint, release, web_stack};
use e2e::images::{Compression, Entry, Layer, OciImage};
use e2e::procfs::{self, ProcInfo};
use e2e::registry::{Oci, REPOSITORY};
use e2e::server::{Options, RunAs, UNPRIVILEGED_UID, running_as_root};
use e2e::wait_for;
use images::ImageConfig;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(60);
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a version of the test web server takes to start and answer, at most: a runc
/// container starts in a few hundred milliseconds on the CI machine.
const START_ALLOWANCE: Duration = Duration::from_secs(3);

fn start(options: Options) -> Api {
    Api::start_with(Options {
        deployment_loops: true,
        config: Some(LOOPS.into()),
        ..options
    })
}

/// Waits until deployd says which backend it runs workloads in; as root with runc
/// installed, that must be the OCI runtime (a silent fallback would run these tests on plain
/// processes).
fn expect_oci_when_root(api: &Api) {
    let said = api.server().wait_log_line(Duration::from_secs(30), |line| {
        line.contains("workloads run in an OCI runtime") || line.contains(FALLBACK)
    });
    let runc = std::process::Command::new("runc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if running_as_root() && runc {
        assert!(
            !said.contains(FALLBACK),
            "runc is installed and we are root, yet: {said}"
        );
    }
}

const FALLBACK: &str = "no OCI runtime can run containers here";

/// A version string no other test process uses: `<name>-p<pid>`.
fn version(name: &str) -> String {
    format!("{name}-p{}", std::process::id())
}

/// The deployment's record, or `None` while the manager does not answer (restarting).
fn try_deployment(api: &Api, id: &str) -> Option<Value> {
    let reply = api
        .try_send(&Request::get(format!("/v1/deployments/{id}")).auth(api.admin()))
        .ok()?;
    (reply.status == 200).then(|| reply.json())
}

/// Waits until `done` holds for the deployment's record; panics with the record otherwise.
fn wait_record(api: &Api, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_for(SETTLE, || {
        let record = try_deployment(api, id)?;
        last = record.clone();
        done(&record).then_some(record)
    })
    .unwrap_or_else(|| {
        panic!(
            "deployment {id}: {what} did not happen: {last:#}\nserver stderr:\n{}",
            api.server().stderr()
        )
    })
}

fn wait_status(api: &Api, id: &str, status: &str) -> Value {
    wait_record(api, id, &format!("status {status}"), |r| {
        r["status"] == status
    })
}

fn onboard(api: &Api) -> String {
    let group = api.create_group();
    api.create_deployment(&group, NewDeployment::on("local")).id
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// Status and body of `GET url`; `Err` with what went wrong when no answer came.
fn get_with(agent: &ureq::Agent, url: &str) -> Result<(u16, String), String> {
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

fn get(url: &str) -> Result<(u16, String), String> {
    get_with(&agent(), url)
}

/// Waits until `url` answers 200 with `body`; returns when it did.
fn wait_answer(api: &Api, url: &str, body: &str, timeout: Duration) -> Instant {
    let mut last = Err(String::new());
    wait_for(timeout, || {
        last = get(url);
        (last.as_ref().ok() == Some(&(200, body.to_owned()))).then(Instant::now)
    })
    .unwrap_or_else(|| {
        panic!(
            "{url} did not answer {body:?} within {timeout:?}: {last:?}\nserver stderr:\n{}",
            api.server().stderr()
        )
    })
}

/// The running processes of the test web server at `version`.
fn web_processes(version: &str) -> Vec<ProcInfo> {
    procfs::live_processes()
        .into_iter()
        .filter(|p| {
            p.argv
                .first()
                .is_some_and(|a| a.ends_with("alien-test-web"))
                && p.has_args(&["--version", version])
        })
        .collect()
}

/// The one process of `version`.
fn web_process(version: &str) -> ProcInfo {
    let found = wait_for(Duration::from_secs(5), || {
        let mut found = web_processes(version);
        (found.len() == 1).then(|| found.remove(0))
    });
    found.unwrap_or_else(|| {
        panic!(
            "not exactly one process of {version}: {:?}",
            web_processes(version)
        )
    })
}

fn sigkill(pid: i32) {
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap_or_else(|e| panic!("kill -9 {pid}: {e}"));
}

/// Releases the test web server at `version`, onboards a deployment and waits until its
/// stable URL answers; returns the deployment's id and the URL.
fn deploy_web(api: &Api, version: &str) -> (String, String) {
    let image = e2e::workloads::push(api, "alien-test-web", version, &[]);
    release(api, web_stack(&image));
    let id = onboard(api);
    let running = wait_status(api, &id, "running");
    let url = endpoint(&running, "web");
    wait_answer(api, &url, version, Duration::from_secs(5));
    (id, url)
}

/// Deletes the deployment and waits until its row is gone and none of `versions` runs.
fn delete(api: &Api, id: &str, versions: &[&str]) {
    api.expect(
        &Request::post(
            format!("/v1/deployments/{id}/delete"),
            json!({"action": "cleanup"}),
        )
        .auth(api.admin()),
        202,
    );
    let gone = wait_for(SETTLE, || {
        let reply = api.try_send(&Request::get(format!("/v1/deployments/{id}")).auth(api.admin()));
        reply.is_ok_and(|r| r.status == 404).then_some(())
    });
    assert!(gone.is_some(), "deployment {id} is still there");
    for version in versions {
        let left = wait_for(Duration::from_secs(10), || {
            web_processes(version).is_empty().then_some(())
        });
        assert!(
            left.is_some(),
            "{version} still runs after the delete: {:?}",
            web_processes(version)
        );
    }
}

/// When a test fails half-way: stops the server with SIGTERM, so that deployd stops the
/// workloads it runs (the harness's SIGKILL would leave them running), then kills whatever
/// of `versions` is left.
struct Cleanup<'a> {
    api: &'a Api,
    versions: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(pid) = self.api.server().daemon_pid("deployd") {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            let _ = wait_for(Duration::from_secs(15), || {
                (!procfs::is_running(pid)).then_some(())
            });
        }
        for version in &self.versions {
            for process in web_processes(version) {
                let _ = kill(Pid::from_raw(process.pid), Signal::SIGKILL);
            }
        }
    }
}

#[test]
fn a_killed_workload_answers_again_within_a_heartbeat_and_the_deployment_stays_running() {
    let api = start(Options::default());
    expect_oci_when_root(&api);
    let v1 = version("killed");
    let _cleanup = Cleanup {
        api: &api,
        versions: vec![v1.clone()],
    };
    let (id, url) = deploy_web(&api, &v1);
    let first = web_process(&v1);

    sigkill(first.pid);
    let killed = Instant::now();
    let bound = HEARTBEAT + START_ALLOWANCE;
    let mut statuses = Vec::new();
    let back = wait_for(bound + Duration::from_secs(10), || {
        if let Some(record) = try_deployment(&api, &id) {
            statuses.push(record["status"].as_str().unwrap_or_default().to_owned());
        }
        (get(&url).ok() == Some((200, v1.clone()))).then(Instant::now)
    })
    .unwrap_or_else(|| panic!("{url} did not answer again; statuses seen: {statuses:?}"));
    let took = back - killed;
    eprintln!("a killed workload answered again after {took:?}");
    assert!(
        took <= bound,
        "answered again after {took:?}, over one heartbeat plus the start ({bound:?})"
    );
    let second = web_process(&v1);
    assert_ne!(second.pid, first.pid, "the same process answers");
    assert!(
        statuses.iter().all(|s| s == "running"),
        "the deployment left running: {statuses:?}"
    );
    let record = wait_status(&api, &id, "running");
    assert_eq!(endpoint(&record, "web"), url, "the address changed");

    delete(&api, &id, &[&v1]);
}

#[test]
fn a_workload_that_cannot_come_back_makes_the_deployment_refresh_failed_and_a_retry_heals_it() {
    let api = start(Options::default());
    expect_oci_when_root(&api);
    let v1 = version("unhealable");
    let _cleanup = Cleanup {
        api: &api,
        versions: vec![v1.clone()],
    };
    // The version refuses to start while a marker object is in its linked bucket.
    let image = e2e::workloads::push(&api, "alien-test-web", &v1, &["--exit-if-stored", "broken"]);
    let mut stack = web_stack(&image);
    stack["resources"]["files"] = json!({
        "config": {"type": "storage", "id": "files"}, "lifecycle": "frozen", "dependencies": []
    });
    stack["resources"]["web"]["config"]["links"] = json!([{"type": "storage", "id": "files"}]);
    release(&api, stack);
    let id = onboard(&api);
    let url = endpoint(&wait_status(&api, &id, "running"), "web");
    let marker = api
        .server()
        .data_dir()
        .join("deployments")
        .join(&id)
        .join("storage/files/broken");
    wait_answer(&api, &url, &v1, Duration::from_secs(5));

    std::fs::write(&marker, b"").expect("the marker");
    sigkill(web_process(&v1).pid);
    let failed = wait_status(&api, &id, "refresh-failed");
    let web = &failed["stackState"]["resources"]["web"];
    assert_eq!(web["status"], "refresh-failed", "{failed:#}");
    let message = web["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("exiting at start"),
        "the error quotes the version's output: {failed:#}"
    );
    let answer = get(&url);
    assert!(
        !matches!(answer, Ok((200, _))),
        "a dead workload answers: {answer:?}"
    );

    std::fs::remove_file(&marker).expect("remove the marker");
    api.expect(
        &Request::post_empty(format!("/v1/deployments/{id}/retry")).auth(api.admin()),
        200,
    );
    wait_status(&api, &id, "running");
    wait_answer(&api, &url, &v1, Duration::from_secs(15));

    delete(&api, &id, &[&v1]);
}

#[test]
fn kill_9_of_deployd_leaves_the_workload_running_and_the_address_answers_again_at_once() {
    let api = start(Options::default());
    expect_oci_when_root(&api);
    let v1 = version("deployd");
    let _cleanup = Cleanup {
        api: &api,
        versions: vec![v1.clone()],
    };
    let (id, url) = deploy_web(&api, &v1);
    let workload = web_process(&v1);
    let server = api.server();
    let deployd = server.wait_daemon_pid("deployd", None, Duration::from_secs(5));

    sigkill(deployd);
    let killed = Instant::now();
    server.wait_daemon_pid("deployd", Some(deployd), Duration::from_secs(20));
    let restarted = Instant::now();
    let answered = wait_answer(&api, &url, &v1, Duration::from_secs(10));
    let after_restart = answered - restarted;
    eprintln!(
        "deployd back {:?} after kill -9; the address answered {after_restart:?} after that",
        restarted - killed
    );
    assert!(
        after_restart <= Duration::from_secs(3),
        "the address answered {after_restart:?} after deployd came back"
    );
    // Over two heartbeats the restarted deployd checks the workload and keeps it.
    std::thread::sleep(2 * HEARTBEAT + Duration::from_millis(500));
    assert_eq!(
        web_processes(&v1).iter().map(|p| p.pid).collect::<Vec<_>>(),
        [workload.pid],
        "the workload was restarted or doubled"
    );
    assert_eq!(get(&url), Ok((200, v1.clone())), "{url}");
    let record = wait_status(&api, &id, "running");
    assert_eq!(endpoint(&record, "web"), url, "the address changed");

    delete(&api, &id, &[&v1]);
}

/// GETs `url` every 20 ms until told to stop (or two minutes passed); returns every answer.
fn hammer(
    url: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Result<String, String>>> {
    std::thread::spawn(move || {
        let agent = agent();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut answers = Vec::new();
        while !stop.load(Ordering::Acquire) && Instant::now() < deadline && answers.len() < 20_000 {
            answers.push(match get_with(&agent, &url) {
                Ok((200, body)) => Ok(body),
                Ok((status, body)) => Err(format!("{status} {body}")),
                Err(error) => Err(error),
            });
            std::thread::sleep(Duration::from_millis(20));
        }
        answers
    })
}

#[test]
fn kill_9_of_the_manager_mid_update_completes_the_update_with_one_version_serving_throughout() {
    let api = start(Options::default());
    expect_oci_when_root(&api);
    let v1 = version("mgr-v1");
    let v2 = version("mgr-v2");
    let _cleanup = Cleanup {
        api: &api,
        versions: vec![v1.clone(), v2.clone()],
    };
    let (id, url) = deploy_web(&api, &v1);
    let second = e2e::workloads::push(&api, "alien-test-web", &v2, &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let hammering = hammer(url.clone(), stop.clone());
    let second_release = release(&api, web_stack(&second));
    let manager = api
        .server()
        .daemon_pid("manager")
        .expect("the manager runs");
    // `updating`: deployd is starting v2 and reports once it serves, into a manager that is
    // gone.
    let updating = wait_for(Duration::from_secs(10), || {
        (try_deployment(&api, &id)?["status"] == "updating").then(Instant::now)
    });
    assert!(updating.is_some(), "the update never showed as updating");
    sigkill(manager);
    api.server()
        .wait_daemon_pid("manager", Some(manager), Duration::from_secs(20));
    let updated = wait_record(&api, &id, "the update to v2", |r| {
        r["status"] == "running" && r["currentReleaseId"] == second_release.as_str()
    });
    assert_eq!(endpoint(&updated, "web"), url, "the address changed");
    wait_answer(&api, &url, &v2, Duration::from_secs(5));
    // Some answers after the switch, then stop.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    let answers = hammering.join().expect("the hammering thread");

    let failed: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    let bodies: Vec<&str> = answers.iter().filter_map(|a| a.as_deref().ok()).collect();
    let switched = bodies.iter().position(|b| *b == v2);
    eprintln!(
        "{} requests during the update: {} failed, v2 from request {switched:?}",
        answers.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(
        bodies.iter().all(|b| *b == v1 || *b == v2),
        "answers other than {v1} and {v2}: {bodies:?}"
    );
    let switched = switched.expect("v2 never answered the hammering client");
    assert!(
        bodies[switched..].iter().all(|b| *b == v2),
        "{v1} answered again after {v2} had"
    );
    let old_gone = wait_for(Duration::from_secs(40), || {
        web_processes(&v1).is_empty().then_some(())
    });
    assert!(
        old_gone.is_some(),
        "{v1} still runs: {:?}",
        web_processes(&v1)
    );
    assert_eq!(web_processes(&v2).len(), 1, "{:?}", web_processes(&v2));

    delete(&api, &id, &[&v1, &v2]);
}

#[test]
fn without_an_oci_runtime_containers_run_as_plain_processes_with_a_port_of_their_own() {
    let api = start(Options {
        run_as: RunAs::Unprivileged,
        ..Options::default()
    });
    let v1 = version("plain-v1");
    let v2 = version("plain-v2");
    let _cleanup = Cleanup {
        api: &api,
        versions: vec![v1.clone(), v2.clone()],
    };
    api.server()
        .wait_log_line(Duration::from_secs(30), |line| line.contains(FALLBACK));

    let (id, url) = deploy_web(&api, &v1);
    let process = web_process(&v1);
    let uid = if running_as_root() {
        UNPRIVILEGED_UID
    } else {
        nix::unistd::getuid().as_raw()
    };
    assert_eq!(process.uid, uid, "{process:?}");
    assert_eq!(
        process.ns_pids.len(),
        1,
        "the workload runs in a pid namespace of its own: {process:?}"
    );
    let port_of = |url: &str| -> String {
        let (status, body) = get(&format!("{url}/env")).expect("GET /env");
        assert_eq!(status, 200, "{body}");
        let env: Value = serde_json::from_str(&body).expect("env JSON");
        env["PORT"]
            .as_str()
            .unwrap_or_else(|| panic!("no PORT: {env}"))
            .to_owned()
    };
    let stable_port = url
        .rsplit(':')
        .next()
        .expect("a port in the URL")
        .to_owned();
    let first_port = port_of(&url);
    assert_ne!(
        first_port, stable_port,
        "the version listens on the stable port"
    );
    assert_ne!(first_port, "8080", "a plain process got the declared port");

    let second = e2e::workloads::push(&api, "alien-test-web", &v2, &[]);
    let second_release = release(&api, web_stack(&second));
    let updated = wait_record(&api, &id, "the update to v2", |r| {
        r["status"] == "running" && r["currentReleaseId"] == second_release.as_str()
    });
    assert_eq!(endpoint(&updated, "web"), url, "the address changed");
    wait_answer(&api, &url, &v2, Duration::from_secs(5));
    let second_port = port_of(&url);
    assert_ne!(second_port, first_port, "both versions got one port");
    assert_ne!(second_port, stable_port);

    let said = api
        .server()
        .stderr()
        .lines()
        .filter(|line| line.contains(FALLBACK))
        .count();
    assert_eq!(said, 1, "the fallback was logged {said} times");

    delete(&api, &id, &[&v1, &v2]);
}

/// Every path under `dir` whose file name is `name`.
fn find_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == name) {
                found.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found
}

#[test]
fn an_image_whose_layer_escapes_the_root_fails_provisioning_naming_the_entry() {
    let api = start(Options::default());
    expect_oci_when_root(&api);
    let tag = version("escape");
    // A runnable program would follow; the unpack must stop at the hostile entry first.
    let image = OciImage::build(
        &[Layer::new(
            Compression::Gzip,
            vec![
                Entry::dir("app", 0o755),
                Entry::file("../escape", "written outside the root\n", 0o644),
                Entry::file("app/run", "#!/bin/sh\nexec sleep 600\n", 0o755),
            ],
        )],
        &ImageConfig {
            cmd: vec!["/app/run".into()],
            ..ImageConfig::default()
        },
    );
    let oci = Oci::new(&api);
    let repo = format!("{REPOSITORY}/escape");
    let scratch = api.server().work_dir().join("images");
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    image.push(
        oci.host(),
        &repo,
        &tag,
        &format!("token:{}", api.admin_token()),
        &scratch,
    );
    release(&api, web_stack(&format!("{}/{repo}:{tag}", oci.host())));
    let id = onboard(&api);

    let failed = wait_status(&api, &id, "provisioning-failed");
    let message = failed["error"].to_string();
    assert!(
        message.contains("../escape"),
        "the error does not name the entry: {failed:#}"
    );
    // The entry would land beside the root it was unpacked into, inside the data directory.
    let written = find_named(api.server().work_dir(), "escape");
    assert!(written.is_empty(), "written outside the root: {written:?}");
    let cached = find_named(&api.server().data_dir().join("images"), "rootfs");
    assert!(cached.is_empty(), "the image was unpacked: {cached:?}");

    delete(&api, &id, &[]);
}
