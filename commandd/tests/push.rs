//! Push delivery (docs/compatibility.md, Commands), against the real commandd in-process on a
//! data directory, driven over its Unix socket as the manager drives it, pushing to a real
//! listener on a loopback port: `DISPATCHED` before the send, only a `202` delivers, a definite
//! rejection fails the command with `DELIVERY_FAILED`, an ambiguous failure leaves it
//! `DISPATCHED`. The push target is one the request's deployment facts carry: the manager's
//! own knowledge of the worker's runtime (it sends none today, which the last case covers).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use plumbing::config::Secret;
use plumbing::{Daemon, DaemonContext, DataDir};
use protocol::commandd::{Create, DeploymentFacts, Principal, Submit, WorkerFacts};
use protocol::commands::{
    BodySpec, CommandResponse, CommandTarget, CreateCommandRequest, DeliveryMode, TargetType,
    signing,
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "ax_deploy_0123456789abcdef0123456789abcdef01234567";

struct Commandd {
    ctx: DaemonContext,
    task: JoinHandle<Result<(), commandd::Error>>,
}

impl Commandd {
    /// Starts commandd on `root`, with the signing key the manager would have made.
    async fn start(root: &Path) -> Commandd {
        std::fs::write(root.join(signing::KEY_FILE), [7u8; 32]).expect("signing key");
        let ctx = DaemonContext {
            config: Default::default(),
            data: DataDir::new(root),
            shutdown: CancellationToken::new(),
        };
        let task = tokio::spawn(commandd::run(ctx.clone()));
        let commandd = Commandd { ctx, task };
        for _ in 0..250 {
            if let Ok((StatusCode::OK, _)) =
                plumbing::uds::get(&commandd.socket(), "/health", Duration::from_secs(1)).await
            {
                return commandd;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("commandd did not become ready");
    }

    fn socket(&self) -> PathBuf {
        self.ctx.data.socket(Daemon::Commandd)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "commandd");
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = plumbing::uds::send(&self.socket(), request.body(body).expect("request"))
            .await
            .expect("send");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Creates a command to the worker `api` of a running local push deployment whose worker
    /// runtimes are `workers`; answers the create's body.
    async fn create(&self, workers: BTreeMap<String, WorkerFacts>) -> Value {
        let create = Create {
            principal: Principal::Token {
                token_id: "tok_admin".into(),
                role: "workspace.admin".into(),
            },
            deployment: DeploymentFacts {
                id: "dep_1".into(),
                status: "running".into(),
                platform: "local".into(),
                deployment_model: DeliveryMode::Push,
                targets: vec![CommandTarget {
                    resource_id: "api".into(),
                    resource_type: TargetType::Worker,
                }],
                workers,
                push_token: Some(Secret::new(TOKEN)),
            },
            request: CreateCommandRequest {
                deployment_id: "dep_1".into(),
                command: "run".into(),
                params: BodySpec::Inline {
                    inline_base64: "e30=".into(),
                },
                deadline: None,
                idempotency_key: None,
                target_resource_id: None,
            },
        };
        let body = serde_json::to_value(&create).expect("create");
        let (status, created) = self.call("POST", "/commands", Some(body)).await;
        assert_eq!(status, 200, "{created}");
        created
    }

    async fn status(&self, id: &str) -> Value {
        let (status, body) = self.call("GET", &format!("/commands/{id}"), None).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

impl Drop for Commandd {
    fn drop(&mut self) {
        self.ctx.shutdown.cancel();
        self.task.abort();
    }
}

fn api_worker(status: Option<&str>, push_target: Option<&str>) -> BTreeMap<String, WorkerFacts> {
    BTreeMap::from([(
        "api".to_owned(),
        WorkerFacts {
            status: status.map(str::to_owned),
            push_target: push_target.map(str::to_owned),
        },
    )])
}

/// A pushed envelope and the `Authorization` header it came with.
type Push = (Option<String>, Value);

/// A worker runtime's `/_alien/commands` on a loopback port: it counts connections, records
/// each envelope pushed with its `Authorization` header, and answers `status`.
struct PushEndpoint {
    url: String,
    connections: Arc<AtomicUsize>,
    pushes: Arc<Mutex<Vec<Push>>>,
    stop: Arc<AtomicBool>,
}

impl PushEndpoint {
    fn start(status: u16) -> PushEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!(
            "http://{}/_alien/commands",
            listener.local_addr().expect("address")
        );
        let connections = Arc::new(AtomicUsize::new(0));
        let pushes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, seen, stopped) = (
            Arc::clone(&connections),
            Arc::clone(&pushes),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                stream.set_nonblocking(false).expect("blocking");
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let mut reader = BufReader::new(stream);
                let (mut length, mut authorization) = (0usize, None);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        } else if name.eq_ignore_ascii_case("authorization") {
                            authorization = Some(value.trim().to_owned());
                        }
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                if let Ok(envelope) = serde_json::from_slice(&body) {
                    seen.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((authorization, envelope));
                }
                let _ = write!(
                    reader.into_inner(),
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        PushEndpoint {
            url,
            connections,
            pushes,
            stop,
        }
    }

    fn pushes(&self) -> Vec<Push> {
        self.pushes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for PushEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn a_202_delivers_with_the_deployment_token_and_the_worker_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let commandd = Commandd::start(dir.path()).await;
    let endpoint = PushEndpoint::start(202);
    let created = commandd
        .create(api_worker(Some("running"), Some(&endpoint.url)))
        .await;
    assert_eq!(created["state"], "DISPATCHED", "{created}");
    let id = created["commandId"].as_str().expect("commandId").to_owned();
    let pushes = endpoint.pushes();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let (authorization, envelope) = &pushes[0];
    // The local runtime accepts a push only with the deployment's own token.
    assert_eq!(
        authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(envelope["commandId"], id.as_str());
    let submit = envelope["responseHandling"]["submitResponseUrl"]
        .as_str()
        .expect("submitResponseUrl");
    assert!(
        submit.starts_with(&format!(
            "http://localhost:8080/v1/commands/{id}/response?response_token="
        )),
        "absolute, on the manager's base URL: {submit}"
    );
    let answer = Submit {
        principal: Principal::ResponseToken,
        response: CommandResponse::Success {
            response: BodySpec::Inline {
                inline_base64: "b2s=".into(),
            },
        },
    };
    let (status, body) = commandd
        .call(
            "PUT",
            &format!("/commands/{id}/response"),
            Some(serde_json::to_value(&answer).expect("submit")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let done = commandd.status(&id).await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    assert_eq!(
        done["response"],
        json!({"status": "success", "response": {"mode": "inline", "inlineBase64": "b2s="}})
    );
}

#[tokio::test]
async fn definite_rejections_fail_and_ambiguous_failures_stay_dispatched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let commandd = Commandd::start(dir.path()).await;
    let refused = PushEndpoint::start(400);
    let broken = PushEndpoint::start(500);
    let idle = PushEndpoint::start(202);
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!(
            "http://{}/_alien/commands",
            listener.local_addr().expect("address")
        )
    };
    // (what the manager knows of the worker's runtime, state answered)
    let cases = [
        (api_worker(Some("running"), Some(&refused.url)), "FAILED"),
        (api_worker(Some("running"), Some(&closed)), "FAILED"),
        (
            api_worker(Some("running"), Some("https://127.0.0.1:1/x")),
            "FAILED",
        ),
        (api_worker(Some("running"), None), "FAILED"),
        (api_worker(Some("provisioning"), Some(&idle.url)), "FAILED"),
        (api_worker(None, Some(&idle.url)), "FAILED"),
        // What the manager sends today: it knows no worker runtime.
        (BTreeMap::new(), "FAILED"),
        (api_worker(Some("running"), Some(&broken.url)), "DISPATCHED"),
    ];
    for (workers, expected) in cases {
        let case = format!("{workers:?}");
        let created = commandd.create(workers).await;
        assert_eq!(created["state"], expected, "{case}: {created}");
        let id = created["commandId"].as_str().expect("commandId");
        let status = commandd.status(id).await;
        assert_eq!(status["state"], expected, "{case}: {status}");
        if expected == "FAILED" {
            assert_eq!(
                status["response"],
                json!({"status": "error", "code": "DELIVERY_FAILED", "message": "Worker runtime did not accept command delivery"}),
                "{case}"
            );
        }
    }
    assert_eq!(refused.pushes().len(), 1);
    assert_eq!(broken.pushes().len(), 1);
    assert_eq!(
        idle.connections(),
        0,
        "nothing is sent to a worker that is not running"
    );
}
