//! A daemon that stays down longer than the manager waits for it: every route that needs it
//! answers `503` with `Retry-After` and a retryable error body (the distribution spec's on
//! `/v2`), never a `500`, a `502` or a hang; and the same routes answer again once the
//! daemon is back, without a restart of the manager.

use std::time::{Duration, Instant};

use e2e::api::{Api, NewDeployment};
use e2e::registry::{Cred, Oci, OciReply};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

/// The manager waits 5 s for a daemon to come back; the answer must not take much longer.
const PATIENCE: Duration = Duration::from_secs(5);

/// Resumes the supervisor even when an assertion fails, so that the server stops cleanly.
struct Held(Pid);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

struct Case {
    what: &'static str,
    method: &'static str,
    target: String,
    cred: Cred,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    /// The error code of the body: the envelope's `code`, or the first OCI error's.
    code: &'static str,
}

impl Case {
    fn send(&self, oci: &Oci) -> OciReply {
        oci.call(
            self.method,
            &self.target,
            &self.cred,
            &self.headers,
            self.body.clone(),
        )
    }
}

#[test]
fn routes_answer_503_with_retry_after_while_their_daemon_is_down_and_recover() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let digest = format!("sha256:{}", "ab".repeat(32));
    let cases = [
        Case {
            what: "a command's status (commandd)",
            method: "GET",
            target: "/v1/commands/cmd_unknown".into(),
            cred: admin.clone(),
            headers: vec![],
            body: vec![],
            code: "SERVICE_UNAVAILABLE",
        },
        Case {
            what: "a lease (commandd)",
            method: "POST",
            target: "/v1/commands/leases".into(),
            cred: admin.clone(),
            headers: vec![("content-type", "application/json")],
            body: json!({
                "deploymentId": deployment.id,
                "target": {"resourceId": "jobs", "resourceType": "container"}
            })
            .to_string()
            .into_bytes(),
            code: "SERVICE_UNAVAILABLE",
        },
        Case {
            what: "telemetry ingest (otelfwd)",
            method: "POST",
            target: "/v1/logs".into(),
            cred: Cred::bearer(&deployment.token),
            headers: vec![("content-type", "application/json")],
            body: br#"{"resourceLogs":[]}"#.to_vec(),
            code: "SERVICE_UNAVAILABLE",
        },
        Case {
            what: "the telemetry status (otelfwd)",
            method: "GET",
            target: "/v1/telemetry/status".into(),
            cred: admin.clone(),
            headers: vec![],
            body: vec![],
            code: "SERVICE_UNAVAILABLE",
        },
        Case {
            what: "a collection (registryd)",
            method: "POST",
            target: "/v1/registry/gc".into(),
            cred: admin.clone(),
            headers: vec![],
            body: vec![],
            code: "SERVICE_UNAVAILABLE",
        },
        Case {
            what: "a blob (registryd, through /v2)",
            method: "GET",
            target: format!("/v2/artifacts/default/app/blobs/{digest}"),
            cred: admin.clone(),
            headers: vec![],
            body: vec![],
            code: "UNAVAILABLE",
        },
        Case {
            what: "an upload (registryd, through /v2, streamed)",
            method: "POST",
            target: "/v2/artifacts/default/app/blobs/uploads/".into(),
            cred: admin.clone(),
            headers: vec![],
            body: vec![],
            code: "UNAVAILABLE",
        },
    ];

    let server = api.server();
    let supervisor = Pid::from_raw(server.supervisor_pid());
    kill(supervisor, Signal::SIGSTOP).expect("hold the supervisor");
    let held = Held(supervisor);
    for name in ["registryd", "commandd", "otelfwd"] {
        let pid = server.daemon_pid(name).expect("the daemon runs");
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9");
    }

    let replies: Vec<(Duration, OciReply)> = std::thread::scope(|scope| {
        let running: Vec<_> = cases
            .iter()
            .map(|case| {
                let oci = oci.clone();
                scope.spawn(move || {
                    let started = Instant::now();
                    let reply = case.send(&oci);
                    (started.elapsed(), reply)
                })
            })
            .collect();
        running
            .into_iter()
            .map(|thread| thread.join().expect("joined"))
            .collect()
    });
    for (case, (took, reply)) in cases.iter().zip(&replies) {
        assert_eq!(reply.status, 503, "{}: {}", case.what, reply.summary());
        assert_eq!(
            reply.header("retry-after"),
            Some("5"),
            "{}: {}",
            case.what,
            reply.summary()
        );
        let body = reply.json();
        let code = body["code"]
            .as_str()
            .or_else(|| body["errors"][0]["code"].as_str());
        assert_eq!(code, Some(case.code), "{}: {}", case.what, reply.summary());
        if case.code == "SERVICE_UNAVAILABLE" {
            assert_eq!(body["retryable"], true, "{}: {body}", case.what);
        }
        assert!(
            *took < PATIENCE + Duration::from_secs(5),
            "{} took {took:?}",
            case.what
        );
    }
    let health = oci.call("GET", "/health", &Cred::none(), &[], Vec::new());
    assert_eq!(health.status, 503, "{}", health.summary());

    drop(held);
    e2e::wait_for(Duration::from_secs(30), || {
        let health = oci.try_call("GET", "/health", &Cred::none(), &[], Vec::new());
        health.ok().filter(|reply| reply.status == 200)
    })
    .expect("healthy again once the supervisor restarted the daemons");
    for case in &cases {
        let reply = case.send(&oci);
        assert!(
            reply.status != 503 && reply.status < 500,
            "{} once back: {}",
            case.what,
            reply.summary()
        );
    }
}

/// Checks the answer to a request that was in flight when its daemon went away: `503`,
/// `Retry-After` and a retryable envelope, within the manager's patience of the kill.
fn assert_unavailable(what: &str, took: Duration, reply: &OciReply) {
    assert_eq!(reply.status, 503, "{what}: {}", reply.summary());
    assert_eq!(
        reply.header("retry-after"),
        Some("5"),
        "{what}: {}",
        reply.summary()
    );
    let body = reply.json();
    assert_eq!(body["code"], "SERVICE_UNAVAILABLE", "{what}: {body}");
    assert_eq!(body["retryable"], true, "{what}: {body}");
    assert!(
        took < PATIENCE + Duration::from_secs(5),
        "{what} took {took:?}: {}",
        reply.summary()
    );
}

/// Long polls that commandd holds when it is killed, so that the manager's exchange with it
/// breaks off half way: each is answered as the daemon being unavailable, not as a failure
/// of ours. With the supervisor held, commandd stays down and the answer must be a `503`;
/// with it running, commandd comes back, and the answer is a `503` or, for a read sent again,
/// the answer of the new commandd, but never a `500`.
#[test]
fn requests_in_flight_when_commandd_dies_answer_503_not_500() {
    use e2e::commands::{Target, create_body};

    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let target = Target::new(
        &api,
        NewDeployment::pull(),
        &[("jobs", "container", true), ("idle", "container", true)],
    );
    target.report(&api);
    let server = api.server();
    let supervisor = Pid::from_raw(server.supervisor_pid());

    for restarting in [false, true] {
        let created = api.expect(
            &e2e::api::Request::post(
                "/v1/commands",
                create_body(&target, json!({"targetResourceId": "jobs"})),
            )
            .auth(api.admin()),
            200,
        );
        let command = created["commandId"].as_str().expect("commandId").to_owned();
        let status = format!("/v1/commands/{command}?waitSeconds=20");
        // Nothing is ever sent to `idle`: the lease waits.
        let lease = json!({
            "deploymentId": target.deployment.id,
            "target": {"resourceId": "idle", "resourceType": "container"},
            "waitSeconds": 20,
        })
        .to_string()
        .into_bytes();
        let deployment = Cred::bearer(&target.deployment.token);
        let held = (!restarting).then(|| {
            kill(supervisor, Signal::SIGSTOP).expect("hold the supervisor");
            Held(supervisor)
        });
        let replies: Vec<(&str, Duration, OciReply)> = std::thread::scope(|scope| {
            let polls = [
                (
                    "a command's status, waiting",
                    "GET",
                    status.as_str(),
                    &admin,
                    Vec::new(),
                ),
                (
                    "a lease, waiting",
                    "POST",
                    "/v1/commands/leases",
                    &deployment,
                    lease,
                ),
            ]
            .map(|(what, method, path, cred, body)| {
                let oci = oci.clone();
                scope.spawn(move || {
                    let headers = [("content-type", "application/json")];
                    let reply = oci.call(method, path, cred, &headers, body);
                    (what, Instant::now(), reply)
                })
            });
            // Both polls are held by commandd by now.
            std::thread::sleep(Duration::from_millis(700));
            let pid = server.daemon_pid("commandd").expect("commandd runs");
            let killed = Instant::now();
            kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 commandd");
            polls
                .map(|poll| {
                    let (what, answered, reply) = poll.join().expect("joined");
                    (what, answered.saturating_duration_since(killed), reply)
                })
                .into()
        });
        for (what, took, reply) in &replies {
            if restarting && reply.status == 200 {
                continue;
            }
            let what = format!("{what} (commandd restarting: {restarting})");
            assert_unavailable(&what, *took, reply);
        }
        drop(held);
        e2e::wait_for(Duration::from_secs(30), || {
            let health = oci.try_call("GET", "/health", &Cred::none(), &[], Vec::new());
            health.ok().filter(|reply| reply.status == 200)
        })
        .expect("healthy again once commandd is back");
    }
}

/// A body that sends `first` bytes, then waits for `go_on` (or 10 s) and ends.
struct HeldBody {
    first: usize,
    go_on: std::sync::mpsc::Receiver<()>,
}

impl std::io::Read for HeldBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.first == 0 {
            let _ = self.go_on.recv_timeout(Duration::from_secs(10));
            return Ok(0);
        }
        let n = buf.len().min(self.first);
        buf[..n].fill(b'x');
        self.first -= n;
        Ok(n)
    }
}

/// A push streaming into registryd when it is killed: the manager's exchange breaks with
/// the body half sent, and the client is told `503 UNAVAILABLE` to come back, not a `500`.
#[test]
fn a_push_streaming_when_registryd_dies_answers_503_unavailable() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let session = oci.start_upload("artifacts/default/inflight", &admin);
    let (go_on, held) = std::sync::mpsc::channel();
    let reply = std::thread::scope(|scope| {
        let push = scope.spawn(|| {
            let body = HeldBody {
                first: 1 << 20,
                go_on: held,
            };
            let headers = [("content-type", "application/octet-stream")];
            oci.call_streaming("PATCH", &session, &admin, &headers, body)
        });
        // The first mebibyte is with registryd by now.
        std::thread::sleep(Duration::from_millis(700));
        let pid = api
            .server()
            .daemon_pid("registryd")
            .expect("registryd runs");
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 registryd");
        std::thread::sleep(Duration::from_millis(300));
        let _ = go_on.send(());
        push.join().expect("joined")
    });
    let reply = reply.expect("an answer to the push");
    assert_eq!(reply.status, 503, "{}", reply.summary());
    assert_eq!(
        reply.header("retry-after"),
        Some("5"),
        "{}",
        reply.summary()
    );
    assert_eq!(
        reply.json()["errors"][0]["code"],
        "UNAVAILABLE",
        "{}",
        reply.summary()
    );
}
