//! A client for the manager's HTTP API and the fixtures the API tests build on: deployment
//! groups, deployments and releases made through the API itself, as a user would make them.
//!
//! Every test starts its own [`Api`] (one `alien serve`): start-up takes milliseconds, and a
//! server kept in a `static` would outlive the test binary, since statics are never dropped.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{Options, Server};

/// How long the server may take to answer `/health` after it was started.
const HEALTHY: Duration = Duration::from_secs(30);

/// A request that takes longer than this is a hang, not a slow answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The synthetic ids the manager puts in deployment and deployment-group responses.
pub const PROJECT_ID: &str = "prj_standalone000000000000000000";
pub const WORKSPACE_ID: &str = "ws_standalone00000000000000";

/// Every deployment status.
pub const STATUSES: [&str; 19] = [
    "pending",
    "preflights-failed",
    "initial-setup",
    "initial-setup-failed",
    "provisioning",
    "waiting-for-machines",
    "provisioning-failed",
    "running",
    "refresh-failed",
    "update-pending",
    "updating",
    "update-failed",
    "delete-pending",
    "deleting",
    "delete-failed",
    "teardown-required",
    "teardown-failed",
    "deleted",
    "error",
];

/// A minimally realistic stack: one worker running an image from the manager's registry.
pub fn stack() -> Value {
    json!({
        "id": "my-app",
        "resources": {
            "api": {
                "config": {
                    "type": "worker",
                    "id": "api",
                    "permissions": "execution",
                    "code": {"type": "image", "image": "localhost:8080/artifacts/default:api-1"},
                    "links": [],
                    "triggers": []
                },
                "lifecycle": "live",
                "dependencies": []
            }
        },
        "permissions": {"profiles": {}}
    })
}

/// The body of `POST /v1/releases` with [`stack`] for each of `platforms`.
pub fn release_body(platforms: &[&str]) -> Value {
    let stacks: serde_json::Map<String, Value> = platforms
        .iter()
        .map(|platform| ((*platform).to_owned(), stack()))
        .collect();
    json!({"projectId": "default", "stack": stacks})
}

/// A `DeploymentState` with `status` on `platform`.
pub fn state(status: &str, platform: &str) -> Value {
    json!({"status": status, "platform": platform, "protocolVersion": 1})
}

/// A name no other call in this test binary got: `{prefix}-{n}`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The `Authorization` header of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Bearer(String),
    /// The header's whole value, as given (a malformed header, Basic auth).
    Header(String),
}

impl Auth {
    pub fn bearer(token: &str) -> Auth {
        Auth::Bearer(token.to_owned())
    }

    /// `Basic` with `credential` (`user:token`, or the token alone) base64-encoded.
    pub fn basic(credential: &str) -> Auth {
        Auth::Header(format!("Basic {}", base64(credential.as_bytes())))
    }

    fn header_value(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
            Auth::Header(value) => Some(value.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    None,
    Json(Value),
    /// Bytes sent as they are, with this `Content-Type` (none when `None`).
    Raw {
        content_type: Option<String>,
        bytes: Vec<u8>,
    },
}

/// One HTTP request to the manager.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub auth: Auth,
    pub body: Body,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Request {
        Request::new("GET", path, Body::None)
    }

    pub fn delete(path: impl Into<String>) -> Request {
        Request::new("DELETE", path, Body::None)
    }

    /// A POST with a JSON body.
    pub fn post(path: impl Into<String>, body: Value) -> Request {
        Request::new("POST", path, Body::Json(body))
    }

    /// A POST without a body, as the routes that take none are called.
    pub fn post_empty(path: impl Into<String>) -> Request {
        Request::new("POST", path, Body::None)
    }

    pub fn new(method: &'static str, path: impl Into<String>, body: Body) -> Request {
        Request {
            method,
            path: path.into(),
            auth: Auth::None,
            body,
        }
    }

    pub fn auth(mut self, auth: Auth) -> Request {
        self.auth = auth;
        self
    }

    pub fn bearer(self, token: &str) -> Request {
        self.auth(Auth::bearer(token))
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        match &self.body {
            Body::None => Ok(()),
            Body::Json(value) => {
                write!(f, " {}", shorten(&value.to_string(), 300))
            }
            Body::Raw {
                content_type,
                bytes,
            } => write!(f, " <{} bytes of {content_type:?}>", bytes.len()),
        }
    }
}

/// An answer of the manager.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub body: String,
}

impl Reply {
    /// The body as JSON, or `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The `code` of an error envelope, if the body is one.
    pub fn code(&self) -> Option<String> {
        self.json()
            .get("code")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The `message` of an error envelope, if the body is one.
    pub fn message(&self) -> Option<String> {
        self.json()
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Short, for assertion messages.
    pub fn summary(&self) -> String {
        format!("{} {}", self.status, shorten(&self.body, 400))
    }
}

/// `Some(problem)` when `value` is not an error envelope (docs/compatibility.md, Conventions)
/// with this HTTP status.
pub fn envelope_problem(value: &Value, status: u16) -> Option<String> {
    let Some(object) = value.as_object() else {
        return Some("body is not a JSON object".into());
    };
    let problems: Vec<String> = [
        ("code", object.get("code").is_some_and(Value::is_string)),
        (
            "message",
            object.get("message").is_some_and(Value::is_string),
        ),
        (
            "retryable",
            object.get("retryable").is_some_and(Value::is_boolean),
        ),
        (
            "internal",
            object.get("internal").is_some_and(Value::is_boolean),
        ),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(key, _)| format!("`{key}` missing or of the wrong type"))
    .chain(
        object
            .get("httpStatusCode")
            .filter(|code| code.as_u64() != Some(u64::from(status)))
            .map(|code| format!("httpStatusCode {code} but HTTP status {status}")),
    )
    .collect();
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// A deployment group and a deployment-group token of it.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub token: String,
}

/// A deployment and the deployment token its creation returned.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: String,
    pub name: String,
    pub group_id: String,
    pub platform: String,
    pub token: String,
}

/// What `POST /v1/deployments` is asked for; see [`NewDeployment::pull`].
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub platform: &'static str,
    pub stack_settings: Option<Value>,
}

impl NewDeployment {
    /// A local deployment in the pull model: the manager's own deployment loop never touches
    /// it, so only the test moves it from status to status.
    pub fn pull() -> NewDeployment {
        NewDeployment {
            platform: "local",
            stack_settings: Some(json!({"deploymentModel": "pull"})),
        }
    }

    pub fn on(platform: &'static str) -> NewDeployment {
        NewDeployment {
            platform,
            stack_settings: None,
        }
    }
}

/// One running manager (`alien serve`) and its admin token.
#[derive(Debug)]
pub struct Api {
    server: Server,
    admin: String,
    http: ureq::Agent,
}

impl Api {
    /// Starts a server with the default configuration on a fresh data directory and waits
    /// until it is healthy.
    pub fn start() -> Api {
        Api::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Api {
        let mut server = Server::start(options);
        server.wait_healthy(HEALTHY);
        let admin = server.admin_token();
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        Api {
            server,
            admin,
            http,
        }
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    pub fn admin_token(&self) -> &str {
        &self.admin
    }

    pub fn admin(&self) -> Auth {
        Auth::bearer(&self.admin)
    }

    /// Sends `request`; fails the test if no HTTP answer comes back.
    pub fn send(&self, request: &Request) -> Reply {
        self.try_send(request).unwrap_or_else(|e| {
            panic!(
                "{request}: no answer: {e}\nserver stderr:\n{}",
                self.server.stderr()
            )
        })
    }

    pub fn try_send(&self, request: &Request) -> Result<Reply, ureq::Error> {
        let mut builder = ureq::http::Request::builder()
            .method(request.method)
            .uri(format!("{}{}", self.base_url(), request.path));
        if let Some(value) = request.auth.header_value() {
            builder = builder.header("Authorization", value);
        }
        let bytes = match &request.body {
            Body::None => Vec::new(),
            Body::Json(value) => {
                builder = builder.header("Content-Type", "application/json");
                value.to_string().into_bytes()
            }
            Body::Raw {
                content_type,
                bytes,
            } => {
                if let Some(content_type) = content_type {
                    builder = builder.header("Content-Type", content_type);
                }
                bytes.clone()
            }
        };
        let http_request = builder.body(bytes)?;
        let response = self.http.run(http_request)?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = response.status().as_u16();
        let content_type = header("content-type");
        let cache_control = header("cache-control");
        let body = response
            .into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()?;
        Ok(Reply {
            status,
            content_type,
            cache_control,
            body,
        })
    }

    /// Sends `request` and returns its JSON body, failing the test unless the status is
    /// `status`.
    pub fn expect(&self, request: &Request, status: u16) -> Value {
        let reply = self.send(request);
        if reply.status != status {
            panic!(
                "{request}\nwant {status}, answered {}\nserver stderr (tail):\n{}",
                reply.summary(),
                tail(&self.server.stderr(), 20)
            );
        }
        reply.json()
    }

    /// Sends `request` and checks that it failed with `status` and an error envelope with
    /// `code`; returns the envelope.
    pub fn expect_error(&self, request: &Request, status: u16, code: &str) -> Value {
        let body = self.expect(request, status);
        if let Some(problem) = envelope_problem(&body, status) {
            panic!("{request}: not an error envelope ({problem}): {body}");
        }
        assert_eq!(body["code"], code, "{request}: {body}");
        body
    }

    // ---- fixtures, all made through the API as the admin ----

    /// `POST /v1/deployment-groups`, then a deployment-group token for it.
    pub fn create_group(&self) -> Group {
        self.create_group_with(json!({"name": unique("group")}))
    }

    pub fn create_group_with(&self, body: Value) -> Group {
        let group = self.expect(
            &Request::post("/v1/deployment-groups", body).auth(self.admin()),
            200,
        );
        let id = string(&group, "id");
        let token = self.group_token(&id);
        Group {
            id,
            name: string(&group, "name"),
            token,
        }
    }

    /// A new deployment-group token of group `id`.
    pub fn group_token(&self, id: &str) -> String {
        let minted = self.expect(
            &Request::post_empty(format!("/v1/deployment-groups/{id}/tokens")).auth(self.admin()),
            200,
        );
        string(&minted, "token")
    }

    /// `POST /v1/deployments` in `group` (as the admin).
    pub fn create_deployment(&self, group: &Group, new: NewDeployment) -> Deployment {
        let mut body = json!({
            "name": unique("dep"),
            "platform": new.platform,
            "deploymentGroupId": group.id,
        });
        if let Some(settings) = new.stack_settings {
            body["stackSettings"] = settings;
        }
        let created = self.expect(
            &Request::post("/v1/deployments", body).auth(self.admin()),
            201,
        );
        let deployment = &created["deployment"];
        Deployment {
            id: string(deployment, "id"),
            name: string(deployment, "name"),
            group_id: string(deployment, "deploymentGroupId"),
            platform: new.platform.to_owned(),
            token: string(&created, "token"),
        }
    }

    /// `POST /v1/releases` with [`stack`] for each of `platforms`; returns the release.
    pub fn create_release(&self, platforms: &[&str]) -> Value {
        self.expect(
            &Request::post("/v1/releases", release_body(platforms)).auth(self.admin()),
            201,
        )
    }

    /// `GET /v1/deployments/{id}` as the admin.
    pub fn deployment(&self, id: &str) -> Value {
        self.expect(
            &Request::get(format!("/v1/deployments/{id}")).auth(self.admin()),
            200,
        )
    }

    pub fn status_of(&self, id: &str) -> String {
        string(&self.deployment(id), "status")
    }

    /// `POST /v1/sync/reconcile` of `state` as the admin, with session `session`; returns
    /// the reconciled state (`current`).
    pub fn reconcile_as(&self, session: &str, deployment: &Deployment, state: Value) -> Value {
        let reply = self.expect(
            &Request::post(
                "/v1/sync/reconcile",
                json!({"deploymentId": deployment.id, "session": session, "state": state}),
            )
            .auth(self.admin()),
            200,
        );
        reply["current"].clone()
    }

    /// Puts `deployment` in `status` the way an agent would: a reconcile of that status.
    pub fn set_status(&self, deployment: &Deployment, status: &str) {
        self.reconcile_as(
            "test-fixture",
            deployment,
            state(status, &deployment.platform),
        );
    }

    /// `POST /v1/sync/acquire` of `deployment` by the admin under `session`; returns the ids
    /// acquired.
    pub fn acquire(&self, session: &str, deployment: &Deployment, model: &str) -> Vec<String> {
        let reply = self.expect(
            &Request::post(
                "/v1/sync/acquire",
                json!({"session": session, "deploymentModel": model, "deploymentIds": [deployment.id]}),
            )
            .auth(self.admin()),
            200,
        );
        acquired_ids(&reply)
    }

    /// The token record of `raw` in `GET /v1/tokens`, found by its key prefix (the first 12
    /// characters, all that is stored of a token besides its hash).
    pub fn token_record(&self, raw: &str) -> Value {
        let prefix: String = raw.chars().take(12).collect();
        let tokens = self.expect(&Request::get("/v1/tokens").auth(self.admin()), 200);
        let mut matching = tokens["items"]
            .as_array()
            .unwrap_or_else(|| panic!("GET /v1/tokens: no items: {tokens}"))
            .iter()
            .filter(|t| t["keyPrefix"] == prefix.as_str());
        let found = matching
            .next()
            .unwrap_or_else(|| panic!("no token with prefix {prefix} in {tokens}"))
            .clone();
        assert!(
            matching.next().is_none(),
            "two tokens with prefix {prefix}: {tokens}"
        );
        found
    }

    /// Revokes `raw` with `DELETE /v1/tokens/{id}`.
    pub fn revoke(&self, raw: &str) {
        let id = string(&self.token_record(raw), "id");
        self.expect(
            &Request::delete(format!("/v1/tokens/{id}")).auth(self.admin()),
            204,
        );
    }
}

/// The deployment ids of an acquire response.
pub fn acquired_ids(reply: &Value) -> Vec<String> {
    reply["deployments"]
        .as_array()
        .unwrap_or_else(|| panic!("acquire: no deployments array: {reply}"))
        .iter()
        .map(|d| string(&d["deployment"], "id"))
        .collect()
}

/// `value[key]` as a string; fails the test otherwise.
pub fn string(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{key}` in {value}"))
        .to_owned()
}

/// The keys of a JSON object, sorted (none when it is not an object).
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// `id` is `{prefix}` and 28 characters of `[0-9a-z]`, as the manager's nanoids are.
pub fn is_lowercase_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 28
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    })
}

/// The ids of the `items` of a list response, in order.
pub fn item_ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items array: {list}"))
        .iter()
        .map(|item| string(item, "id"))
        .collect()
}

/// Standard base64 with padding; the tests need it only for `Basic` headers.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `text`, cut after `max` characters.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
