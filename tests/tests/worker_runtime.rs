//! The worker runtime (`alien worker-runtime`) with the test worker as its app: the proxy,
//! the app's environment, pushed commands and their answers, the stop, the state file.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::commands::{inline, unbase64};
use e2e::wait_for;
use e2e::worker_runtime::{DEPLOYMENT, MARKER, Runtime, Sink, TOKEN, WORKER, exchange, workload};
use serde_json::{Value, json};

const JSON: (&str, &str) = ("content-type", "application/json");

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

/// A valid push envelope for the runtime's worker, answered to `sink`.
fn envelope(sink: &Sink, id: &str, command: &str, params: &[u8]) -> Value {
    json!({
        "protocol": "arc.v1",
        "deploymentId": DEPLOYMENT,
        "target": {"resourceId": WORKER, "resourceType": "worker"},
        "commandId": id,
        "attempt": 1,
        "command": command,
        "params": inline(params),
        "responseHandling": {
            "maxInlineBytes": 150000,
            "submitResponseUrl": format!("{}/v1/commands/{id}/response?response_token=t&expires=1", sink.base),
            "storageUploadRequest": {
                "backend": {"type": "http", "url": format!("{}/upload/{id}", sink.base), "method": "PUT", "headers": {}},
                "expiration": "2099-01-01T00:00:00Z", "operation": "put", "path": format!("arc/commands/{id}/response")
            }
        }
    })
}

fn push(runtime: &Runtime, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    exchange(
        "POST",
        &runtime.url("/_alien/commands"),
        headers,
        body.to_vec(),
    )
    .0
}

fn push_envelope(runtime: &Runtime, envelope: &Value) -> u16 {
    let (name, value) = bearer(TOKEN);
    push(
        runtime,
        &[JSON, (name, &value)],
        envelope.to_string().as_bytes(),
    )
}

/// The response the runtime submitted, decoded.
fn submitted(sink: &Sink) -> (e2e::worker_runtime::Received, Value) {
    let request = sink
        .next(Duration::from_secs(30))
        .expect("the runtime submits a response");
    let body: Value = serde_json::from_slice(&request.body).expect("a JSON response");
    (request, body)
}

#[test]
fn the_proxy_reaches_the_registered_app_and_passes_redirects_back() {
    let runtime = Runtime::start_worker(None);
    let state = runtime.wait_ready();
    assert_eq!(state["grpcPort"], runtime.grpc_port);
    assert_eq!(state["transportPort"], runtime.transport_port);
    assert_eq!(state["pid"], runtime.child.id());
    assert!(state["childPid"].as_u64().is_some(), "{state}");

    let (status, _, body) = exchange("GET", &runtime.url("/anything?x=1"), &[], vec![]);
    assert_eq!((status, body.as_slice()), (200, b"v1".as_slice()));
    let (status, headers, _) = exchange("GET", &runtime.url("/redirect"), &[], vec![]);
    assert_eq!(
        status, 302,
        "the app's redirect is passed back, not followed"
    );
    assert_eq!(headers.get("location").map(String::as_str), Some("/"));
    assert!(
        runtime
            .app_stdout()
            .contains("alien-test-worker v1 listening"),
        "the app's stdout lands in its file: {:?}",
        runtime.app_stdout()
    );
}

#[test]
fn the_app_gets_the_protocol_variables_and_nothing_of_the_runtime() {
    let runtime = Runtime::start_worker(Some(TOKEN));
    runtime.wait_ready();
    let (status, _, body) = exchange("GET", &runtime.url("/env"), &[], vec![]);
    assert_eq!(status, 200);
    let env: BTreeMap<String, String> = serde_json::from_slice(&body).expect("env JSON");
    let address = format!("127.0.0.1:{}", runtime.grpc_port);
    let expected = BTreeMap::from([
        ("ALIEN_BINDINGS_GRPC_ADDRESS".to_owned(), address.clone()),
        ("ALIEN_TRANSPORT".to_owned(), "local".to_owned()),
        ("ALIEN_WORKER_GRPC_ADDRESS".to_owned(), address),
        ("FOO".to_owned(), "bar".to_owned()),
    ]);
    // Exactly the given variables minus the removed ones plus the protocol's: no
    // ALIEN_COMMANDS_TOKEN, ALIEN_RUNTIME_SECRETS or PORT, nothing of the runtime's own
    // environment (its marker, its PATH).
    assert_eq!(env, expected);
    assert!(!env.contains_key(MARKER.0));
}

#[test]
fn the_transport_port_answers_503_until_the_app_registers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = workload("alien-test-worker");
    let script = format!("sleep 2; exec {} --version late", worker.display());
    let env = BTreeMap::from([("PATH", "/usr/bin:/bin")]);
    let app = Runtime::process_app(&["/bin/sh", "-c", &script], &env);
    let config = Runtime::config(dir.path(), app, None);
    let runtime = Runtime::start_in(dir, &config);
    let early = wait_for(Duration::from_secs(10), || {
        runtime.state()?;
        let url = runtime.url("/");
        std::net::TcpStream::connect(url.trim_start_matches("http://").trim_end_matches('/'))
            .ok()
            .map(|_| exchange("GET", &url, &[], vec![]))
    })
    .expect("the transport port is bound before the app starts");
    assert_eq!(
        (early.0, early.2.as_slice()),
        (503, b"No application registered".as_slice())
    );
    assert_eq!(runtime.state().expect("state")["ready"], false);
    runtime.wait_ready();
    let (status, _, body) = exchange("GET", &runtime.url("/"), &[], vec![]);
    assert_eq!((status, body.as_slice()), (200, b"late".as_slice()));
}

#[test]
fn pushes_are_refused_in_the_public_order() {
    let sink = Sink::start(Duration::ZERO);
    let runtime = Runtime::start_worker(Some(TOKEN));
    runtime.wait_ready();
    let good = envelope(&sink, "cmd_order", "echo", b"{}");
    let body = good.to_string();
    let (auth, token) = bearer(TOKEN);
    let (_, wrong) = bearer("not-the-token");
    let authorized = [JSON, (auth, token.as_str())];

    assert_eq!(push(&runtime, &[(auth, &token)], body.as_bytes()), 415);
    // The body is read before the bearer is looked at.
    assert_eq!(push(&runtime, &[JSON, (auth, &wrong)], b"{not json"), 400);
    assert_eq!(
        push(&runtime, &[JSON, (auth, &wrong)], b"{\"protocol\": 1}"),
        422
    );
    assert_eq!(
        push(&runtime, &[JSON, (auth, &wrong)], body.as_bytes()),
        401
    );
    assert_eq!(push(&runtime, &[JSON], body.as_bytes()), 401);
    let mut zero_attempt = good.clone();
    zero_attempt["attempt"] = json!(0);
    assert_eq!(push_envelope(&runtime, &zero_attempt), 400);
    let mut other_protocol = good.clone();
    other_protocol["protocol"] = json!("arc.v2");
    assert_eq!(push_envelope(&runtime, &other_protocol), 400);
    let mut other_deployment = good.clone();
    other_deployment["deploymentId"] = json!("dep_other");
    assert_eq!(push_envelope(&runtime, &other_deployment), 403);
    let mut other_worker = good.clone();
    other_worker["target"]["resourceId"] = json!("other");
    assert_eq!(push_envelope(&runtime, &other_worker), 403);
    let mut container = good.clone();
    container["target"]["resourceType"] = json!("container");
    assert_eq!(push_envelope(&runtime, &container), 403);
    let (status, _, _) = exchange("GET", &runtime.url("/_alien/commands"), &authorized, vec![]);
    assert_eq!(
        status, 405,
        "only POST is the runtime's; nothing else is proxied"
    );
    assert!(
        sink.next(Duration::from_millis(500)).is_none(),
        "no refused push is run"
    );

    let without_push = Runtime::start_worker(None);
    without_push.wait_ready();
    assert_eq!(push_envelope(&without_push, &good), 404);
}

#[test]
fn a_pushed_command_runs_once_and_its_answer_is_submitted_with_the_token() {
    // The sink holds each answer a while, so the command is still in flight for the
    // duplicate.
    let sink = Sink::start(Duration::from_millis(1500));
    let runtime = Runtime::start_worker(Some(TOKEN));
    runtime.wait_ready();
    let command = envelope(&sink, "cmd_echo", "echo", br#"{"a":1}"#);
    assert_eq!(push_envelope(&runtime, &command), 202);
    assert_eq!(
        push_envelope(&runtime, &command),
        202,
        "a duplicate in flight"
    );

    let (request, body) = submitted(&sink);
    assert_eq!(request.method, "PUT");
    assert_eq!(
        request.path,
        "/v1/commands/cmd_echo/response?response_token=t&expires=1"
    );
    assert_eq!(
        request.headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["response"]["mode"], "inline", "{body}");
    let answer =
        unbase64(body["response"]["inlineBase64"].as_str().expect("base64")).expect("valid base64");
    let answer: Value = serde_json::from_slice(&answer).expect("the app's JSON");
    assert_eq!(answer, json!({"echo": {"a": 1}, "version": "v1"}));
    assert!(
        sink.next(Duration::from_secs(3)).is_none(),
        "the duplicate was not run a second time"
    );
}

#[test]
fn failures_expiry_and_large_answers_are_submitted_as_the_protocol_says() {
    let sink = Sink::start(Duration::ZERO);
    let runtime = Runtime::start_worker(Some(TOKEN));
    runtime.wait_ready();

    assert_eq!(
        push_envelope(&runtime, &envelope(&sink, "cmd_fail", "fail", b"{}")),
        202
    );
    let (_, body) = submitted(&sink);
    assert_eq!(
        body,
        json!({"status": "error", "code": "COMMAND_ERROR", "message": "the command fail always fails"})
    );

    let mut late = envelope(&sink, "cmd_late", "echo", b"{}");
    late["deadline"] = json!("2020-01-01T00:00:00Z");
    assert_eq!(push_envelope(&runtime, &late), 202);
    let (_, body) = submitted(&sink);
    assert_eq!(body["status"], "error");
    assert_eq!(body["code"], "COMMAND_EXPIRED", "{body}");

    let mut large = envelope(
        &sink,
        "cmd_large",
        "echo",
        br#"{"text":"more than ten bytes"}"#,
    );
    large["responseHandling"]["maxInlineBytes"] = json!(10);
    assert_eq!(push_envelope(&runtime, &large), 202);
    let upload = sink.next(Duration::from_secs(30)).expect("the upload");
    assert_eq!(
        (upload.method.as_str(), upload.path.as_str()),
        ("PUT", "/upload/cmd_large")
    );
    let uploaded: Value = serde_json::from_slice(&upload.body).expect("the app's JSON");
    assert_eq!(uploaded["echo"]["text"], "more than ten bytes");
    let (_, body) = submitted(&sink);
    assert_eq!(
        body,
        json!({"status": "success", "response": {
            "mode": "storage", "size": upload.body.len(), "storagePutUsed": true
        }})
    );
}

#[test]
fn sigterm_stops_the_app_with_sigterm_and_the_runtime_exits_0() {
    let mut runtime = Runtime::start_worker(Some(TOKEN));
    let state = runtime.wait_ready();
    let app = nix::unistd::Pid::from_raw(state["childPid"].as_i64().expect("childPid") as i32);
    let started = Instant::now();
    assert_eq!(runtime.terminate(Duration::from_secs(10)), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the app stopped on SIGTERM, before the grace ran out: {:?}",
        started.elapsed()
    );
    assert!(
        runtime
            .app_stdout()
            .contains("stopping on a signal: finishing the requests in flight"),
        "the app got SIGTERM: {:?}",
        runtime.app_stdout()
    );
    assert!(
        nix::sys::signal::kill(app, None).is_err(),
        "the app is gone"
    );
}

#[test]
fn an_app_that_exits_by_itself_ends_the_runtime_with_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = workload("alien-test-worker");
    let app = Runtime::process_app(
        &[worker.to_str().expect("utf-8"), "--exit-at-start"],
        &BTreeMap::new(),
    );
    let config = Runtime::config(dir.path(), app, None);
    let mut runtime = Runtime::start_in(dir, &config);
    assert_eq!(runtime.exit_within(Duration::from_secs(10)), Some(1));
}

#[test]
fn a_taken_port_is_its_own_exit_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut config = Runtime::config(dir.path(), Runtime::worker_app("v1"), None);
    config["transportPort"] = json!(taken.local_addr().expect("address").port());
    let mut runtime = Runtime::start_in(dir, &config);
    assert_eq!(runtime.exit_within(Duration::from_secs(10)), Some(3));
    assert!(
        runtime.stderr.contains("transport"),
        "{}",
        runtime.stderr.text()
    );
}

#[test]
fn a_worker_in_an_oci_bundle_is_served_and_stopped() {
    assert!(
        e2e::server::running_as_root(),
        "runc runs containers as root here: run the suite as root, as CI does"
    );
    assert!(
        std::path::Path::new(e2e::worker_runtime::RUNC).exists(),
        "runc is missing: install it as tests/run does"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = e2e::worker_runtime::oci_bundle(
        dir.path(),
        &workload("alien-test-worker"),
        &["--version", "oci"],
        &["FOO=bar", "ALIEN_COMMANDS_TOKEN=must-not-reach-the-app"],
    );
    let id = format!("alien-test-{}", std::process::id());
    let app = json!({"ociBundle": {
        "runtime": e2e::worker_runtime::RUNC, "bundle": bundle, "containerId": id
    }});
    let config = Runtime::config(dir.path(), app, Some(TOKEN));
    let mut runtime = Runtime::start_in(dir, &config);
    runtime.wait_ready();

    let (status, _, body) = exchange("GET", &runtime.url("/"), &[], vec![]);
    assert_eq!((status, body.as_slice()), (200, b"oci".as_slice()));
    let (_, _, env) = exchange("GET", &runtime.url("/env"), &[], vec![]);
    let env: BTreeMap<String, String> = serde_json::from_slice(&env).expect("env JSON");
    let address = format!("127.0.0.1:{}", runtime.grpc_port);
    assert_eq!(env.get("ALIEN_WORKER_GRPC_ADDRESS"), Some(&address));
    assert_eq!(env.get("FOO").map(String::as_str), Some("bar"));
    assert!(!env.contains_key("ALIEN_COMMANDS_TOKEN"), "{env:?}");
    assert!(!env.contains_key(MARKER.0), "{env:?}");

    let sink = Sink::start(Duration::ZERO);
    assert_eq!(
        push_envelope(&runtime, &envelope(&sink, "cmd_oci", "echo", b"[1]")),
        202
    );
    let (_, body) = submitted(&sink);
    assert_eq!(body["status"], "success", "{body}");

    assert_eq!(runtime.terminate(Duration::from_secs(15)), Some(0));
    assert!(
        runtime
            .app_stdout()
            .contains("stopping on a signal: finishing the requests in flight"),
        "the container got SIGTERM: {:?}",
        runtime.app_stdout()
    );
    let state = std::process::Command::new(e2e::worker_runtime::RUNC)
        .args(["state", &id])
        .output()
        .expect("runc state");
    assert!(!state.status.success(), "the container was deleted");
}
