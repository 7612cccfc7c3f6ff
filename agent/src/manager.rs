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
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Config, InitialRelease};
use crate::connect::Connector;

const USER_AGENT: &str = concat!("alien-agent/", env!("CARGO_PKG_VERSION"));
/// An answer is a deployment's state and its release's stack: small, but not tiny.
const ANSWER_LIMIT: usize = 32 << 20;
/// How long an answer may take beyond the wait the request asked for.
const ANSWER_GRACE: Duration = Duration::from_secs(30);
pub const LEASES_PATH: &str = "/v1/commands/leases";

/// One leased command.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub lease_id: String,
    pub command_id: String,
    pub envelope: Value,
}

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
    /// `push` or `pull`.
    #[serde(default)]
    pub deployment_model: Option<String>,
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
    /// The relay's base URL, where the workloads reach the manager (see `relay`).
    local_base: String,
    client: Client<Connector, Full<Bytes>>,
}

impl Manager {
    pub fn new(config: &Config, connector: Connector, relay: std::net::SocketAddr) -> Manager {
        Manager {
            base: config.base_url().to_owned(),
            local_base: format!("http://{relay}"),
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
        // A pull deployment: its commands for workers come through the agent, and deployd
        // leaves it alone.
        let body = serde_json::json!({
            "name": name,
            "platform": "local",
            "initialDesiredRelease": initial.as_str(),
            "stackSettings": {"deploymentModel": "pull"},
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
        let url = format!("{}{path}", self.base);
        let (status, bytes) = self
            .exchange(&url, path, token, content_type, body, wait)
            .await?;
        if status != StatusCode::OK && status != StatusCode::CREATED {
            return Err(refused(path, status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ManagerError::Answer {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// One `POST` of `body` to `url` with the bearer `token`: the status and the answer.
    async fn exchange(
        &self,
        url: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
        wait: Duration,
    ) -> Result<(StatusCode, Bytes), ManagerError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, content_type)
            .header(header::USER_AGENT, USER_AGENT)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ManagerError::Answer {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        let unreachable = |reason: String| ManagerError::Unreachable {
            url: url.to_owned(),
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
        tokio::time::timeout(wait + ANSWER_GRACE, exchange)
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
    }

    /// Leases commands (`body` names the target), waiting up to `wait_seconds` for one.
    pub async fn lease(
        &self,
        token: &str,
        body: &Value,
        wait_seconds: u64,
    ) -> Result<Vec<Lease>, ManagerError> {
        #[derive(Deserialize)]
        struct Leases {
            leases: Vec<Lease>,
        }
        let answer: Leases = self
            .call(LEASES_PATH, token, body, Duration::from_secs(wait_seconds))
            .await?;
        Ok(answer.leases)
    }

    /// Gives a lease back, so that its command is leased again at once.
    pub async fn release_lease(&self, token: &str, lease_id: &str) -> Result<(), ManagerError> {
        let path = format!("{LEASES_PATH}/{lease_id}/release");
        let url = format!("{}{path}", self.base);
        let (status, bytes) = self
            .exchange(
                &url,
                &path,
                token,
                "application/json",
                b"{}".to_vec(),
                Duration::ZERO,
            )
            .await?;
        // Gone or already answered: nothing is left to give back.
        if status.is_success() || status == StatusCode::CONFLICT || status == StatusCode::GONE {
            Ok(())
        } else {
            Err(refused(&path, status, &bytes))
        }
    }

    /// The URL at which the workloads on this machine reach the manager.
    pub fn local_base_url(&self) -> &str {
        &self.local_base
    }

    /// A leased envelope with its URLs made absolute and the manager's own ones pointed at
    /// the relay: the manager sends the ones on its origin relative to the lease URL, and
    /// the worker's runtime calls them as they are, in plain HTTP.
    pub fn absolute_envelope(&self, mut envelope: Value) -> Result<Value, ManagerError> {
        let base = format!("{}{LEASES_PATH}", self.base);
        let base = url::Url::parse(&base).map_err(|e| ManagerError::Answer {
            path: LEASES_PATH.into(),
            reason: format!("{base}: {e}"),
        })?;
        for pointer in [
            "/responseHandling/submitResponseUrl",
            "/responseHandling/storageUploadRequest/backend/url",
            "/params/storageGetRequest/backend/url",
        ] {
            if let Some(slot) = envelope.pointer_mut(pointer)
                && let Some(reference) = slot.as_str()
            {
                let absolute = base.join(reference).map_err(|e| ManagerError::Answer {
                    path: LEASES_PATH.into(),
                    reason: format!("the envelope's {pointer} {reference:?}: {e}"),
                })?;
                let absolute = String::from(absolute);
                let local = absolute
                    .strip_prefix(self.base.as_str())
                    .filter(|rest| rest.starts_with('/'))
                    .map(|rest| format!("{}{rest}", self.local_base));
                *slot = Value::String(local.unwrap_or(absolute));
            }
        }
        Ok(envelope)
    }

    /// Pushes an envelope into a worker's runtime on this machine, as the manager does for a
    /// push deployment; `Ok` once the runtime took it (202).
    pub async fn push_command(
        &self,
        target: &str,
        token: &str,
        envelope: &Value,
    ) -> Result<(), ManagerError> {
        let body = serde_json::to_vec(envelope).map_err(|e| ManagerError::Answer {
            path: target.to_owned(),
            reason: e.to_string(),
        })?;
        let (status, bytes) = self
            .exchange(
                target,
                target,
                token,
                "application/json",
                body,
                Duration::ZERO,
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(refused(target, status, &bytes))
        }
    }
}

/// A refusal, with the error envelope's code and message when the answer has one.
fn refused(path: &str, status: StatusCode, bytes: &[u8]) -> ManagerError {
    let envelope: Value = serde_json::from_slice(bytes).unwrap_or_default();
    let text = |key: &str| envelope[key].as_str().unwrap_or_default().to_owned();
    ManagerError::Refused {
        path: path.to_owned(),
        status: status.as_u16(),
        code: text("code"),
        message: text("message"),
    }
}

/// An error and its causes on one line: hyper's own message alone says little.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn manager(url: &str) -> Manager {
        let config = crate::config::tests::config(url);
        let connector = crate::connect::connector(None).expect("connector");
        Manager::new(
            &config,
            connector,
            "127.0.0.1:7000".parse().expect("address"),
        )
    }

    #[tokio::test]
    async fn a_leased_envelope_s_relative_urls_resolve_against_the_lease_url() {
        let envelope = json!({
            "commandId": "cmd_1",
            "params": {"mode": "storage", "storageGetRequest": {"backend": {"url": "../storage/p?sig=a%2Fb"}}},
            "responseHandling": {
                "submitResponseUrl": "cmd_1/response?response_token=ab&expires=9",
                "storageUploadRequest": {"backend": {"url": "https://bucket.example/put?x=1"}}
            }
        });
        let absolute = manager("https://10.0.0.1:8080/prefix/")
            .absolute_envelope(envelope)
            .expect("resolved");
        assert_eq!(
            absolute["responseHandling"]["submitResponseUrl"],
            "http://127.0.0.1:7000/v1/commands/cmd_1/response?response_token=ab&expires=9",
            "the manager's own URLs go through the relay, which adds the base's path"
        );
        assert_eq!(
            absolute["params"]["storageGetRequest"]["backend"]["url"],
            "http://127.0.0.1:7000/v1/storage/p?sig=a%2Fb"
        );
        assert_eq!(
            absolute["responseHandling"]["storageUploadRequest"]["backend"]["url"],
            "https://bucket.example/put?x=1",
            "an absolute URL stays as it is"
        );
    }
}
