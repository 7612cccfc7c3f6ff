//! The manager's side of the commands protocol: the facts commandd needs about a deployment,
//! read from our records, and the forwarding of an authorized request over commandd's
//! socket. What crosses it is defined once, in `protocol::commandd`.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use plumbing::config::Secret;
use plumbing::uds::{self, UdsError};
use protocol::commandd::{DeploymentFacts, WorkerFacts};
use protocol::commands::{CommandTarget, DeliveryMode, TargetType};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::routes::deployments::stored_model;
use crate::store::deployments::Deployment;
use crate::store::{Store, deployments, releases};
use crate::wire::DeploymentModel;

/// How long a request waits for commandd to come back (a restart after a crash takes a
/// fraction of a second) before failing. Nothing has reached commandd while it cannot be
/// connected to, so trying again is safe.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);

/// commandd's socket, and the key the manager checks signed command URLs with.
#[derive(Debug, Clone)]
pub struct Forwarder {
    socket: PathBuf,
    key: [u8; 32],
    shutdown: CancellationToken,
}

/// A call that did not succeed: a failure of ours, or commandd's answer, which is passed on
/// as it is (it is already the public error envelope).
#[derive(Debug)]
pub enum Failure {
    Manager(Error),
    Sidecar(Response),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Manager(error)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Manager(error) => error.into_response(),
            Failure::Sidecar(response) => response,
        }
    }
}

impl Forwarder {
    pub fn new(socket: PathBuf, key: &[u8; 32], shutdown: CancellationToken) -> Forwarder {
        Forwarder {
            socket,
            key: *key,
            shutdown,
        }
    }

    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// Sends one request without a body, or with a JSON one, to commandd and hands back its
    /// answer as it is.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response, Error> {
        self.exchange(method, path, body, "application/json").await
    }

    /// [`Forwarder::send`] of bytes as they are (a storage body).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response, Error> {
        self.exchange(method, path, body, "application/octet-stream")
            .await
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        content_type: &'static str,
    ) -> Result<Response, Error> {
        let mut waited = Duration::ZERO;
        loop {
            let mut request = Request::new(body.clone().map_or_else(Body::empty, Body::from));
            *request.method_mut() = method.clone();
            *request.uri_mut() = path
                .parse()
                .map_err(|e| Error::BadRequest(format!("Invalid path: {e}")))?;
            let headers = request.headers_mut();
            headers.insert(header::HOST, header::HeaderValue::from_static("commandd"));
            if body.is_some() {
                headers.insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(content_type),
                );
            }
            match uds::send(&self.socket, request).await {
                Ok(response) => {
                    let (parts, incoming) = response.into_parts();
                    return Ok(Response::from_parts(parts, Body::new(incoming)));
                }
                Err(UdsError::Connect { .. }) if waited < CONNECT_PATIENCE => {
                    let pause = Duration::from_millis(50);
                    tokio::time::sleep(pause).await;
                    waited += pause;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// [`Forwarder::send`] of a JSON body.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<Response, Error> {
        let bytes = serde_json::to_vec(body)?;
        self.send(method, path, Some(Bytes::from(bytes))).await
    }

    /// A long poll: answered by commandd when it has something, or, when the manager stops
    /// first, by `now` (the same call without waiting).
    pub async fn send_waiting(
        &self,
        waiting: impl Future<Output = Result<Response, Error>>,
        now: impl Future<Output = Result<Response, Error>>,
    ) -> Result<Response, Error> {
        tokio::select! {
            answer = waiting => answer,
            () = self.shutdown.cancelled() => now.await,
        }
    }

    /// commandd's JSON answer of type `T`, or its error answer to pass on.
    pub async fn read<T: DeserializeOwned>(&self, response: Response) -> Result<T, Failure> {
        if response.status() != StatusCode::OK {
            return Err(Failure::Sidecar(response));
        }
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::Write(format!("reading commandd's answer: {e}")))?
            .to_bytes();
        Ok(serde_json::from_slice(&bytes).map_err(Error::from)?)
    }
}

/// What commandd needs to know of `deployment` (see `protocol::commandd::DeploymentFacts`).
pub async fn facts(store: &Store, deployment: &Deployment) -> Result<DeploymentFacts, Error> {
    let targets = match &deployment.current_release_id {
        Some(release) => {
            let (release, platform) = (release.clone(), deployment.platform.clone());
            let stack = store
                .read(move |conn| releases::platform_stack(conn, &release, &platform))
                .await?
                .flatten();
            match stack {
                Some(stack) => command_targets(stack.get())?,
                None => Vec::new(),
            }
        }
        None => Vec::new(),
    };
    let workers = match &deployment.stack_state {
        Some(state) => workers(&serde_json::from_str(state.get())?),
        None => Default::default(),
    };
    let id = deployment.id.clone();
    let push_token = store
        .read(move |conn| deployments::workload_token(conn, &id))
        .await?
        .map(Secret::new);
    Ok(DeploymentFacts {
        id: deployment.id.clone(),
        status: deployment.status.clone(),
        platform: deployment.platform.clone(),
        deployment_model: match stored_model(&deployment.stack_settings) {
            DeploymentModel::Push => DeliveryMode::Push,
            DeploymentModel::Pull => DeliveryMode::Pull,
        },
        targets,
        workers,
        push_token,
    })
}

/// The stack's workers, containers and daemons with `commandsEnabled`, in declaration order
/// (spec §1.3). The stack is read as the client sent it, so that order is the text's.
fn command_targets(stack: &str) -> Result<Vec<CommandTarget>, Error> {
    #[derive(Deserialize)]
    struct Stack {
        #[serde(default, deserialize_with = "in_order")]
        resources: Vec<(String, Resource)>,
    }
    #[derive(Deserialize)]
    struct Resource {
        config: Config,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Config {
        #[serde(rename = "type")]
        kind: String,
        id: Option<String>,
        commands_enabled: Option<Value>,
    }
    let stack: Stack = serde_json::from_str(stack)?;
    Ok(stack
        .resources
        .into_iter()
        .filter(|(_, r)| r.config.commands_enabled == Some(Value::Bool(true)))
        .filter_map(|(key, r)| {
            Some(CommandTarget {
                resource_type: TargetType::parse(&r.config.kind)?,
                resource_id: r.config.id.unwrap_or(key),
            })
        })
        .collect())
}

/// A JSON object's entries in the order of the text.
fn in_order<'de, D, V>(deserializer: D) -> Result<Vec<(String, V)>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Entries<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Entries<V> {
        type Value = Vec<(String, V)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::new();
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }
    deserializer.deserialize_map(Entries(std::marker::PhantomData))
}

/// What the stack state says of each worker: its status and push target (spec §1.8).
fn workers(stack_state: &Value) -> std::collections::BTreeMap<String, WorkerFacts> {
    let Some(resources) = stack_state.get("resources").and_then(Value::as_object) else {
        return Default::default();
    };
    resources
        .iter()
        .filter(|(_, r)| r.get("type").and_then(Value::as_str) == Some("worker"))
        .map(|(id, r)| {
            let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
            (
                id.clone(),
                WorkerFacts {
                    status: text(r.get("status")),
                    push_target: text(r.pointer("/outputs/commandsPushTarget")),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn targets_in_declaration_order() {
        let stack = r#"{"resources": {
            "zeta": {"config": {"type": "container", "id": "zeta", "commandsEnabled": true}},
            "files": {"config": {"type": "storage", "id": "files", "commandsEnabled": true}},
            "alpha": {"config": {"type": "worker", "id": "alpha", "commandsEnabled": true}},
            "quiet": {"config": {"type": "daemon", "id": "quiet"}},
            "off": {"config": {"type": "daemon", "id": "off", "commandsEnabled": false}},
            "d": {"config": {"type": "daemon", "id": "d", "commandsEnabled": true}}
        }}"#;
        let ids: Vec<(String, &str)> = command_targets(stack)
            .expect("targets")
            .into_iter()
            .map(|t| (t.resource_id, t.resource_type.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("zeta".to_owned(), "container"),
                ("alpha".to_owned(), "worker"),
                ("d".to_owned(), "daemon")
            ]
        );
        assert!(command_targets(r#"{"id": "x"}"#).expect("none").is_empty());
    }

    #[test]
    fn workers_of_a_stack_state() {
        let state = json!({"resources": {
            "api": {"type": "worker", "status": "running",
                    "outputs": {"commandsPushTarget": "http://127.0.0.1:1/_alien/commands"}},
            "jobs": {"type": "container", "status": "running"},
            "new": {"type": "worker"}
        }});
        let workers = workers(&state);
        assert_eq!(workers.len(), 2);
        assert_eq!(workers["api"].status.as_deref(), Some("running"));
        assert_eq!(
            workers["api"].push_target.as_deref(),
            Some("http://127.0.0.1:1/_alien/commands")
        );
        assert_eq!(workers["new"].push_target, None);
    }
}
