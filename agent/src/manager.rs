//! The agent's client of the manager's agent protocol: `POST /v1/initialize` on the first
//! start, then `POST /v1/sync`, each with the agent's bearer token. Paths are always joined
//! to the base URL without its trailing `/`, whatever the URL's own path is.

use std::time::Duration;

use bytes::Bytes;
use deployer::config::DeploymentConfig;
use deployer::state::{DeploymentState, ReleaseInfo};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Config, InitialRelease};

const USER_AGENT: &str = concat!("alien-agent/", env!("CARGO_PKG_VERSION"));
/// An answer is a deployment's state and its release's stack: small, but not tiny.
const ANSWER_LIMIT: usize = 32 << 20;
/// How long an answer may take beyond the wait the request asked for.
const ANSWER_GRACE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("cannot reach the manager at {url}: {reason} (is it running, and is SYNC_URL right?)")]
    Unreachable { url: String, reason: String },
    #[error("the manager refused {path} with {status}: {code}: {message}")]
    Refused {
        path: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("the manager's answer to {path} is not understood: {reason}")]
    Answer { path: String, reason: String },
}

impl ManagerError {
    /// Whether trying again later may succeed (the manager restarts, or is overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            ManagerError::Unreachable { .. } => true,
            ManagerError::Refused { status, .. } => *status == 429 || *status >= 500,
            ManagerError::Answer { .. } => false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Initialized {
    pub deployment_id: String,
    /// The deployment's own token, when the manager minted one for this agent.
    #[serde(default)]
    pub token: Option<String>,
}

/// What a sync reports.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport<'a> {
    pub deployment_id: &'a str,
    pub current_state: &'a DeploymentState,
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    pub resource_heartbeats: &'a [Value],
    pub operator_version: &'static str,
    /// Our long-poll: hold the answer until there is news for this deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub release_info: ReleaseInfo,
    pub config: DeploymentConfig,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncAnswer {
    /// The manager's record, when it knows better than the report (a delete or a retry was
    /// asked for, or the report was stale).
    #[serde(default)]
    pub current_state: Option<DeploymentState>,
    #[serde(default)]
    pub target: Option<Target>,
}

#[derive(Debug, Clone)]
pub struct Manager {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Manager {
    pub fn new(config: &Config) -> Manager {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        Manager {
            base: config.base_url().to_owned(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn initialize(
        &self,
        token: &str,
        name: &str,
        initial: InitialRelease,
    ) -> Result<Initialized, ManagerError> {
        let body = serde_json::json!({
            "name": name,
            "platform": "local",
            "initialDesiredRelease": initial.as_str(),
        });
        self.call("/v1/initialize", token, &body, Duration::ZERO)
            .await
    }

    pub async fn sync(
        &self,
        token: &str,
        report: &SyncReport<'_>,
    ) -> Result<SyncAnswer, ManagerError> {
        let wait = Duration::from_secs(report.wait_seconds.unwrap_or(0));
        self.call("/v1/sync", token, report, wait).await
    }

    /// Sends OTLP/protobuf logs as the deployment; `Ok` only once the manager answered
    /// that it accepted them.
    pub async fn send_logs(&self, token: &str, body: Vec<u8>) -> Result<(), ManagerError> {
        #[derive(Deserialize)]
        struct Accepted {
            accepted: bool,
        }
        let path = "/v1/logs";
        let answer: Accepted = self
            .post(path, token, "application/x-protobuf", body, Duration::ZERO)
            .await?;
        if answer.accepted {
            Ok(())
        } else {
            Err(ManagerError::Answer {
                path: path.into(),
                reason: "the logs were not accepted".into(),
            })
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        body: &impl Serialize,
        wait: Duration,
    ) -> Result<T, ManagerError> {
        let body = serde_json::to_vec(body).map_err(|e| ManagerError::Answer {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.post(path, token, "application/json", body, wait).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
        wait: Duration,
    ) -> Result<T, ManagerError> {
        let answer_error = |reason: String| ManagerError::Answer {
            path: path.to_owned(),
            reason,
        };
        let url = format!("{}{path}", self.base);
        let request = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, content_type)
            .header(header::USER_AGENT, USER_AGENT)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| answer_error(e.to_string()))?;
        let unreachable = |reason: String| ManagerError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), ANSWER_LIMIT)
                .collect()
                .await
                .map_err(|e| unreachable(format!("the answer broke off: {e}")))?
                .to_bytes();
            Ok::<_, ManagerError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(wait + ANSWER_GRACE, exchange)
            .await
            .map_err(|_| unreachable("no answer in time".into()))??;
        if status != StatusCode::OK && status != StatusCode::CREATED {
            let envelope: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let text = |key: &str| envelope[key].as_str().unwrap_or_default().to_owned();
            return Err(ManagerError::Refused {
                path: path.to_owned(),
                status: status.as_u16(),
                code: text("code"),
                message: text("message"),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| answer_error(e.to_string()))
    }
}

/// An error and its causes on one line: hyper's own message alone says little.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
