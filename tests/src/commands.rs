//! The commands protocol from both ends (docs/compatibility.md, Commands): fixtures that make
//! a deployment able to receive commands, an invoker's calls, and a deployment-side receiver
//! that behaves as the public agents do: it leases with the deployment token, resolves the
//! envelope's URLs against the lease URL it called, uploads large responses to the envelope's
//! storage request and submits with the signed URL and no bearer.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{Api, Deployment, Group, NewDeployment, Request, base64, string};

/// A stack whose resources are `(id, type, commandsEnabled)`, in that order. Only workers,
/// containers and daemons have commands: other types get no `commandsEnabled`.
pub fn stack_with(resources: &[(&str, &str, bool)]) -> Value {
    let resources: serde_json::Map<String, Value> = resources
        .iter()
        .map(|(id, kind, enabled)| {
            let mut config = json!({"type": kind, "id": id});
            let workload = matches!(*kind, "worker" | "container" | "daemon");
            if workload {
                config["permissions"] = json!("execution");
                config["links"] = json!([]);
                config["commandsEnabled"] = json!(enabled);
                config["code"] = json!({"type": "image", "image": "localhost/artifacts/default:x"});
            }
            if *kind == "worker" {
                config["triggers"] = json!([]);
            }
            if *kind == "container" {
                config["ports"] = json!([{"port": 8080}]);
                config["cpu"] = json!({"min": "0.1", "desired": "0.1"});
                config["memory"] = json!({"min": "64Mi", "desired": "64Mi"});
            }
            let lifecycle = if workload { "live" } else { "frozen" };
            (
                (*id).to_owned(),
                json!({"config": config, "lifecycle": lifecycle, "dependencies": []}),
            )
        })
        .collect();
    json!({"id": "app", "resources": resources, "permissions": {"profiles": {}}})
}

/// A deployment that can receive commands: a local deployment whose current release's stack
/// has `resources`, reported `status` by a reconcile (with `stack_state`, if given).
#[derive(Debug, Clone)]
pub struct Target {
    pub group: Group,
    pub deployment: Deployment,
    pub release_id: String,
    /// The state reported, which [`Target::report`] reports again.
    pub state: Value,
}

impl Target {
    pub fn new(api: &Api, new: NewDeployment, resources: &[(&str, &str, bool)]) -> Target {
        Target::with_state(api, new, resources, "running", None)
    }

    pub fn with_state(
        api: &Api,
        new: NewDeployment,
        resources: &[(&str, &str, bool)],
        status: &str,
        stack_state: Option<Value>,
    ) -> Target {
        let group = api.create_group();
        let stack = stack_with(resources);
        let platform = new.platform;
        let release = api.expect(
            &Request::post(
                "/v1/releases",
                json!({"projectId": "default", "stack": {platform: stack}}),
            )
            .auth(api.admin()),
            201,
        );
        let release_id = string(&release, "id");
        let deployment = api.create_deployment(&group, new);
        let mut state = json!({
            "status": status, "platform": platform, "protocolVersion": 1,
            "currentRelease": {"releaseId": release_id, "stack": stack},
        });
        if let Some(stack_state) = stack_state {
            state["stackState"] = stack_state;
        }
        api.reconcile_as("commands-fixture", &deployment, state.clone());
        Target {
            group,
            deployment,
            release_id,
            state,
        }
    }

    /// Reports the fixture's state again: a release made since moved every running
    /// deployment to `update-pending`.
    pub fn report(&self, api: &Api) {
        api.reconcile_as("commands-fixture", &self.deployment, self.state.clone());
    }
}

/// `POST /v1/commands` with `body`'s missing keys filled in (the deployment, the command
/// `run`, inline params `{}`), as the admin.
pub fn create_body(target: &Target, body: Value) -> Value {
    let mut full = json!({
        "deploymentId": target.deployment.id,
        "command": "run",
        "params": inline(b"{}"),
    });
    if let (Some(full), Some(extra)) = (full.as_object_mut(), body.as_object()) {
        for (key, value) in extra {
            full.insert(key.clone(), value.clone());
        }
    }
    full
}

pub fn inline(bytes: &[u8]) -> Value {
    json!({"mode": "inline", "inlineBase64": base64(bytes)})
}

/// Standard base64 with padding, decoded; `None` when it is not base64.
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|a| *a == byte)? as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// `reference` resolved against `base` (RFC 3986 §5.2 for the references the manager
/// writes: absolute URLs, and relative paths with `..` segments and a query).
pub fn resolve(base: &str, reference: &str) -> String {
    if reference.contains("://") {
        return reference.to_owned();
    }
    let (origin, path) = match base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
    {
        Some(at) => (&base[..at], &base[at..]),
        None => (base, "/"),
    };
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let mut segments: Vec<&str> = path.split('/').collect();
    segments.pop(); // the last segment is replaced
    let (ref_path, query) = match reference.find('?') {
        Some(at) => (&reference[..at], &reference[at..]),
        None => (reference, ""),
    };
    for segment in ref_path.split('/') {
        match segment {
            ".." => {
                if segments.len() > 1 {
                    segments.pop();
                }
            }
            "." => {}
            other => segments.push(other),
        }
    }
    format!("{origin}{}{query}", segments.join("/"))
}

/// One HTTP exchange with any URL, no authorization unless given.
pub fn http(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    if let Some(token) = bearer {
        builder = builder.header("Authorization", format!("Bearer {token}"));
    }
    if let Some(content_type) = content_type {
        builder = builder.header("Content-Type", content_type);
    }
    let request = builder.body(body).expect("request");
    let response = agent
        .run(request)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_vec()
        .expect("body");
    (status, body)
}

/// A presigned request (a storage URL of an envelope or an upload answer) carried out with
/// `body`, its URL resolved against `base`.
pub fn presigned(request: &Value, base: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let backend = &request["backend"];
    assert_eq!(backend["type"], "http", "{request}");
    let url = resolve(base, backend["url"].as_str().expect("url"));
    let method = backend["method"].as_str().expect("method");
    http(method, &url, None, None, body)
}

/// A deployment-side receiver of one target, as `alien-commands::receiver` behaves.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub base_url: String,
    pub token: String,
    pub deployment_id: String,
    pub target: Value,
}

/// One leased command.
#[derive(Debug, Clone)]
pub struct Lease {
    pub lease_id: String,
    pub command_id: String,
    pub attempt: u64,
    /// `leaseExpiresAt`, as answered (RFC 3339).
    pub expires_at: String,
    pub envelope: Value,
    /// The URL the lease was got from, which the envelope's references are relative to.
    pub from: String,
}

impl Lease {
    /// One of the `leases` answered by the lease request to `from`.
    pub fn answered(lease: &Value, from: String) -> Lease {
        Lease {
            lease_id: string(lease, "leaseId"),
            command_id: string(lease, "commandId"),
            attempt: lease["attempt"].as_u64().expect("attempt"),
            expires_at: string(lease, "leaseExpiresAt"),
            envelope: lease["envelope"].clone(),
            from,
        }
    }

    /// The params' bytes: inline, or downloaded with their storage request.
    pub fn params(&self) -> Vec<u8> {
        let params = &self.envelope["params"];
        match params["mode"].as_str() {
            Some("inline") => unbase64(params["inlineBase64"].as_str().expect("base64"))
                .expect("inline params are base64"),
            Some("storage") => {
                let (status, body) =
                    presigned(&params["storageGetRequest"], &self.from, Vec::new());
                assert_eq!(status, 200, "params download");
                body
            }
            other => panic!("params mode {other:?}"),
        }
    }

    pub fn submit_url(&self) -> String {
        resolve(
            &self.from,
            self.envelope["responseHandling"]["submitResponseUrl"]
                .as_str()
                .expect("submitResponseUrl"),
        )
    }
}

impl Receiver {
    pub fn new(api: &Api, target: &Target, resource_id: &str, resource_type: &str) -> Receiver {
        Receiver {
            base_url: api.base_url(),
            token: target.deployment.token.clone(),
            deployment_id: target.deployment.id.clone(),
            target: json!({"resourceId": resource_id, "resourceType": resource_type}),
        }
    }

    pub fn leases_url(&self) -> String {
        format!("{}/v1/commands/leases", self.base_url)
    }

    /// `POST {ALIEN_COMMANDS_URL}/commands/leases`; `(status, body)`.
    pub fn try_lease(&self, max: u32, seconds: u64, wait: Option<u64>) -> (u16, Value) {
        let body = json!({
            "deploymentId": self.deployment_id, "target": self.target,
            "maxLeases": max, "leaseSeconds": seconds,
        });
        let url = match wait {
            Some(wait) => format!("{}?waitSeconds={wait}", self.leases_url()),
            None => self.leases_url(),
        };
        let (status, bytes) = http(
            "POST",
            &url,
            Some(&self.token),
            Some("application/json"),
            body.to_string().into_bytes(),
        );
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub fn lease(&self, max: u32, seconds: u64, wait: Option<u64>) -> Vec<Lease> {
        let (status, body) = self.try_lease(max, seconds, wait);
        assert_eq!(status, 200, "lease: {body}");
        body["leases"]
            .as_array()
            .unwrap_or_else(|| panic!("no leases array: {body}"))
            .iter()
            .map(|lease| Lease::answered(lease, self.leases_url()))
            .collect()
    }

    /// Answers `lease` with `bytes`: inline up to `maxInlineBytes`, else uploaded to the
    /// envelope's storage request first; submitted to the signed URL without a bearer.
    /// Returns the submit's status.
    pub fn respond(&self, lease: &Lease, bytes: &[u8]) -> u16 {
        let handling = &lease.envelope["responseHandling"];
        let max = handling["maxInlineBytes"].as_u64().expect("maxInlineBytes");
        let response = if bytes.len() as u64 > max {
            let (status, _) = presigned(
                &handling["storageUploadRequest"],
                &lease.from,
                bytes.to_vec(),
            );
            assert_eq!(status, 200, "response upload");
            json!({"status": "success", "response": {"mode": "storage", "size": bytes.len(), "storagePutUsed": true}})
        } else {
            json!({"status": "success", "response": inline(bytes)})
        };
        self.submit(lease, &response)
    }

    pub fn submit(&self, lease: &Lease, response: &Value) -> u16 {
        http(
            "PUT",
            &lease.submit_url(),
            None,
            Some("application/json"),
            response.to_string().into_bytes(),
        )
        .0
    }

    pub fn release(&self, lease_id: &str) -> u16 {
        http(
            "POST",
            &format!("{}/{lease_id}/release", self.leases_url()),
            Some(&self.token),
            Some("application/json"),
            json!({"leaseId": lease_id}).to_string().into_bytes(),
        )
        .0
    }
}

/// The invoker's view: `GET /v1/commands/{id}` as the admin until the state is terminal.
pub fn wait_terminal(api: &Api, id: &str, timeout: Duration) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let status = api.expect(
            &Request::get(format!("/v1/commands/{id}?waitSeconds=5")).auth(api.admin()),
            200,
        );
        if matches!(
            status["state"].as_str(),
            Some("SUCCEEDED" | "FAILED" | "EXPIRED")
        ) {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "command {id} not finished within {timeout:?}: {status}"
        );
    }
}

/// The bytes of a terminal status's success response: inline, or downloaded.
/// `POST /v1/commands` of `echo` with `params` to `target`, awaited: it must succeed; the
/// terminal status and the JSON answer.
pub fn echo(
    api: &Api,
    deployment_id: &str,
    target: &str,
    params: &Value,
    timeout: Duration,
) -> (Value, Value) {
    let created = api.expect(
        &Request::post(
            "/v1/commands",
            json!({
                "deploymentId": deployment_id, "command": "echo", "targetResourceId": target,
                "params": inline(params.to_string().as_bytes()),
            }),
        )
        .auth(api.admin()),
        200,
    );
    let status = wait_terminal(api, &string(&created, "commandId"), timeout);
    assert_eq!(status["state"], "SUCCEEDED", "{status:#}");
    let answer = serde_json::from_slice(&response_bytes(api, &status))
        .unwrap_or_else(|e| panic!("the answer is not JSON ({e}): {status:#}"));
    (status, answer)
}

pub fn response_bytes(api: &Api, status: &Value) -> Vec<u8> {
    let body = &status["response"]["response"];
    match body["mode"].as_str() {
        Some("inline") => unbase64(body["inlineBase64"].as_str().expect("base64")).expect("base64"),
        Some("storage") => {
            let (code, bytes) = presigned(&body["storageGetRequest"], &api.base_url(), Vec::new());
            assert_eq!(code, 200, "response download");
            bytes
        }
        other => panic!("response mode {other:?} in {status}"),
    }
}

/// A TCP listener on a loopback port that counts every connection made to it and closes
/// each at once: put where a client-written state names a push target, it shows whether
/// anything connected there.
#[derive(Debug)]
pub struct ConnectionTrap {
    pub url: String,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl ConnectionTrap {
    pub fn start() -> ConnectionTrap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!(
            "http://{}/_alien/commands",
            listener.local_addr().expect("address")
        );
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, stopped) = (Arc::clone(&connections), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok(_) => {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ConnectionTrap {
            url,
            connections,
            stop,
        }
    }

    /// The connections made so far, once one was made or `wait` is over.
    pub fn connections_within(&self, wait: Duration) -> usize {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let seen = self.connections.load(Ordering::SeqCst);
            if seen > 0 || std::time::Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ConnectionTrap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
