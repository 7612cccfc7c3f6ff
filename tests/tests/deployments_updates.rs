//! Updates of a container on `local` as the customers of a vendor see them, through its
//! stable address: releases in a row without one failed request, a broken release that
//! leaves the previous version serving, retry and redeploy from there, and a delete that
//! leaves no process, port or directory behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use e2e::api::{Api, Request};
use e2e::deployments::{LOOPS, delete, endpoint, onboard, release, web_stack};
use e2e::procfs::{ProcInfo, live_processes};
use e2e::server::Options;
use e2e::wait_for;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// How long one release, update, retry or delete may take.
const SETTLE: Duration = Duration::from_secs(60);
/// How long one request of a client may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a client hammers, whatever the test does.
const HAMMER_LIMIT: Duration = Duration::from_secs(900);
/// The pause between two requests of one client: enough load to cross every switch, little
/// enough to leave the two cores to the update itself.
const HAMMER_PAUSE: Duration = Duration::from_millis(10);

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

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// One `GET /` on `reader`'s connection: the status, the body, and whether the connection
/// can carry another request.
fn exchange(
    reader: &mut BufReader<TcpStream>,
    port: u16,
    close: bool,
) -> Result<(u16, String, bool), String> {
    let connection = if close { "close" } else { "keep-alive" };
    let request =
        format!("GET / HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: {connection}\r\n\r\n");
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("status line: {e}"))?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {line:?}"))?;
    let mut length = None;
    let mut closes = close;
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("headers: {e}"))?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(format!("bad header {header:?}"));
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse::<usize>().ok(),
            "connection" if value.trim().eq_ignore_ascii_case("close") => closes = true,
            _ => {}
        }
    }
    let length = length.ok_or_else(|| format!("{status} without a Content-Length"))?;
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("body: {e}"))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned(), !closes))
}

fn connect(port: u16) -> Result<BufReader<TcpStream>, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| format!("timeouts: {e}"))?;
    Ok(BufReader::new(stream))
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    requests: u64,
    /// Connections it opened.
    connections: u64,
    /// Each version that answered, in the order they first did.
    versions: Vec<String>,
    /// What went wrong, with when (since the client started).
    failures: Vec<String>,
}

/// Clients sending `GET /` to the stable address in a loop until stopped, each answer
/// checked: 200, one of `versions`, and never older than one the same client saw before
/// (the gateway switches between requests, so a client's next request cannot go back).
struct Hammer {
    stop: Arc<AtomicBool>,
    clients: Vec<(&'static str, JoinHandle<Seen>)>,
}

impl Hammer {
    /// One client on one kept-alive connection, one opening a connection per request.
    fn start(port: u16, versions: &[String]) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = [("kept-alive", false), ("connection per request", true)]
            .into_iter()
            .map(|(name, close)| {
                let stop = stop.clone();
                let versions = versions.to_vec();
                let thread = std::thread::spawn(move || client(port, close, &versions, &stop));
                (name, thread)
            })
            .collect();
        Hammer { stop, clients }
    }

    /// Stops the clients; panics if any request failed. Returns what each saw.
    fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Release);
        let mut seen = Vec::new();
        for (name, thread) in self.clients {
            let client = thread.join().expect("a client thread panicked");
            assert!(
                client.failures.is_empty(),
                "the {name} client had {} failed requests of {}; the first: {:#?}",
                client.failures.len(),
                client.requests,
                &client.failures[..client.failures.len().min(10)]
            );
            seen.push(client);
        }
        seen
    }
}

fn client(port: u16, close: bool, versions: &[String], stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    let started = Instant::now();
    let mut kept: Option<BufReader<TcpStream>> = None;
    let mut newest = 0;
    while !stop.load(Ordering::Acquire) && started.elapsed() < HAMMER_LIMIT {
        seen.requests += 1;
        let reader = match kept.take() {
            Some(reader) => Ok(reader),
            None => {
                seen.connections += 1;
                connect(port)
            }
        };
        let outcome = reader.and_then(|mut reader| {
            let answer = exchange(&mut reader, port, close)?;
            if answer.2 && !close {
                kept = Some(reader);
            }
            Ok(answer)
        });
        let at = started.elapsed();
        match outcome {
            Ok((200, body, _)) => match versions.iter().position(|v| *v == body) {
                Some(index) if index >= newest => {
                    if !seen.versions.contains(&body) {
                        seen.versions.push(body);
                    }
                    newest = index;
                }
                Some(_) => seen.failures.push(format!(
                    "{at:?}: {body} answered after {}",
                    versions[newest]
                )),
                None => seen.failures.push(format!("{at:?}: 200 {body:?}")),
            },
            Ok((status, body, _)) => seen.failures.push(format!("{at:?}: {status} {body:?}")),
            Err(error) => seen.failures.push(format!("{at:?}: {error}")),
        }
        std::thread::sleep(HAMMER_PAUSE);
    }
    seen
}

/// One `GET /` on a connection of its own.
fn get(url: &str) -> Result<(u16, String), String> {
    let port = port_of(url);
    let mut reader = connect(port)?;
    exchange(&mut reader, port, true).map(|(status, body, _)| (status, body))
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
