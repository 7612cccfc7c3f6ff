//! deployd's client of the manager: the lock protocol and the plan, over the manager's own
//! socket, where deployd acts as the system (no token).

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use deployer::config::DeploymentConfig;
use deployer::state::DeploymentState;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A request that takes longer than this is abandoned (the manager answers in milliseconds;
/// only a hung manager is slower).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("the manager is unreachable: {0}")]
    Unreachable(String),
    #[error("the manager answered {status} to {path}: {body}")]
    Refused {
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("the manager's answer to {path} is not understood: {error}")]
    Answer { path: String, error: String },
}

impl ManagerError {
    /// Worth trying again shortly: the manager is restarting or overloaded.
    pub fn is_transient(&self) -> bool {
        match self {
            ManagerError::Unreachable(_) => true,
            ManagerError::Refused { status, .. } => status.is_server_error(),
            ManagerError::Answer { .. } => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Manager {
    socket: PathBuf,
}

/// A deployment the lock was taken on.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Acquired {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub retry_requested: bool,
    #[serde(default)]
    pub stack_settings: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct Plan {
    pub state: DeploymentState,
    pub config: DeploymentConfig,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Reconcile<'a> {
    deployment_id: &'a str,
    session: &'a str,
    state: &'a DeploymentState,
    update_heartbeat: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    suggested_delay_ms: Option<u64>,
}

impl Manager {
    pub fn new(socket: PathBuf) -> Manager {
        Manager { socket }
    }

    /// Locks up to `limit` push deployments on `local` in `statuses` for `session`: the
    /// platform deployd has a driver for.
    pub async fn acquire(
        &self,
        session: &str,
        statuses: &[&str],
        limit: u32,
    ) -> Result<Vec<Acquired>, ManagerError> {
        #[derive(Deserialize)]
        struct Answer {
            deployments: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            deployment: Acquired,
        }
        let answer: Answer = self
            .call(
                Method::POST,
                "/v1/sync/acquire",
                Some(json!({
                    "session": session,
                    "deploymentModel": "push",
                    "platforms": ["local"],
                    "statuses": statuses,
                    "limit": limit,
                })),
            )
            .await?;
        Ok(answer
            .deployments
            .into_iter()
            .map(|e| e.deployment)
            .collect())
    }

    pub async fn plan(&self, id: &str) -> Result<Plan, ManagerError> {
        self.call(
            Method::GET,
            &format!("/internal/v1/deployments/{id}/plan"),
            None,
        )
        .await
    }

    /// Persists `state`; answers the state to go on from (a delete requested meanwhile wins
    /// over the report).
    pub async fn reconcile(
        &self,
        id: &str,
        session: &str,
        state: &DeploymentState,
        update_heartbeat: bool,
        suggested_delay_ms: Option<u64>,
    ) -> Result<DeploymentState, ManagerError> {
        #[derive(Deserialize)]
        struct Answer {
            current: DeploymentState,
        }
        let body = serde_json::to_value(Reconcile {
            deployment_id: id,
            session,
            state,
            update_heartbeat,
            suggested_delay_ms,
        })
        .map_err(|e| ManagerError::Answer {
            path: "/v1/sync/reconcile".into(),
            error: e.to_string(),
        })?;
        let answer: Answer = self
            .call(Method::POST, "/v1/sync/reconcile", Some(body))
            .await?;
        Ok(answer.current)
    }

    pub async fn renew(&self, id: &str, session: &str) -> Result<(), ManagerError> {
        self.call::<Value>(
            Method::POST,
            "/v1/sync/renew",
            Some(json!({"deploymentId": id, "session": session})),
        )
        .await
        .map(drop)
    }

    pub async fn release(&self, id: &str, session: &str) -> Result<(), ManagerError> {
        self.call::<Value>(
            Method::POST,
            "/v1/sync/release",
            Some(json!({"deploymentId": id, "session": session})),
        )
        .await
        .map(drop)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ManagerError> {
        let exchange = async {
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, "localhost");
            let body = match body {
                Some(body) => {
                    request = request.header(http::header::CONTENT_TYPE, "application/json");
                    Body::from(body.to_string())
                }
                None => Body::empty(),
            };
            let request = request
                .body(body)
                .map_err(|e| ManagerError::Unreachable(e.to_string()))?;
            let response = plumbing::uds::send(&self.socket, request)
                .await
                .map_err(|e| ManagerError::Unreachable(e.to_string()))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ManagerError::Unreachable(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(ManagerError::Refused {
                    path: path.to_owned(),
                    status,
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                });
            }
            serde_json::from_slice(&bytes).map_err(|e| ManagerError::Answer {
                path: path.to_owned(),
                error: e.to_string(),
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(ManagerError::Unreachable(format!(
                    "no answer to {path} within {REQUEST_TIMEOUT:?}"
                )))
            })
    }
}

/// A fresh lock session name.
pub fn session() -> String {
    let mut random = [0u8; 16];
    // A failure of the system's random source leaves zeros: sessions are names, not secrets,
    // and the time part keeps them apart.
    let _ = getrandom::fill(&mut random);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("deployd-{nanos:x}-{}", hex::encode(random))
}
