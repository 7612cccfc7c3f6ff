//! A command invoked on a deployment and waited for: created with its params inline, then
//! its status asked for until it ends (held at our manager with `waitSeconds`; a manager that
//! answers at once is asked again after a pause that grows from 0.5 s to 5 s), and its
//! answer decoded.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::api::Manager;
use crate::error::ClientError;

const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);
/// How long one status request may be held at the manager.
const HOLD_SECONDS: u64 = 20;

/// What to invoke.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    pub deployment_id: &'a str,
    pub command: &'a str,
    pub params: &'a [u8],
    pub target: Option<&'a str>,
    pub timeout: Duration,
}

/// How a command ended, with its last status as the manager answered it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Value,
    /// The decoded answer of a command that succeeded.
    pub response: Option<Vec<u8>>,
}

pub fn invoke(manager: &Manager, invocation: &Invocation<'_>) -> Result<Outcome, ClientError> {
    let mut body = json!({
        "deploymentId": invocation.deployment_id,
        "command": invocation.command,
        "params": {"mode": "inline", "inlineBase64": STANDARD.encode(invocation.params)},
    });
    if let Some(target) = invocation.target {
        body["targetResourceId"] = json!(target);
    }
    let created = manager.post("/v1/commands", &body)?;
    let id = created["commandId"]
        .as_str()
        .ok_or_else(|| ClientError::Answer {
            path: "/v1/commands".into(),
            reason: format!("no commandId in {created}"),
        })?
        .to_owned();
    let status = wait(manager, &id, invocation.timeout)?;
    let response = match status["state"].as_str() {
        Some("SUCCEEDED") => Some(response_bytes(manager, &status)?),
        _ => None,
    };
    Ok(Outcome { status, response })
}

/// The command's status once it ended (SUCCEEDED, FAILED or EXPIRED); `Failed` once
/// `timeout` is over first.
pub fn wait(manager: &Manager, id: &str, timeout: Duration) -> Result<Value, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let hold = left.as_secs().min(HOLD_SECONDS);
        let asked = Instant::now();
        let status = manager.get(&format!("/v1/commands/{id}?waitSeconds={hold}"))?;
        if matches!(
            status["state"].as_str(),
            Some("SUCCEEDED" | "FAILED" | "EXPIRED")
        ) {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            return Err(ClientError::Failed(format!(
                "command {id} did not finish within {}s (it is {}); `alien commands invoke --timeout` waits longer",
                timeout.as_secs(),
                status["state"].as_str().unwrap_or("in an unknown state")
            )));
        }
        // A manager that held the request has waited already.
        let waited = asked.elapsed();
        if waited < pause {
            std::thread::sleep(
                (pause - waited).min(deadline.saturating_duration_since(Instant::now())),
            );
        }
        pause = (pause.mul_f64(1.5)).min(LONGEST_PAUSE);
    }
}

/// The answer of a command that succeeded: inline, or downloaded from where the manager
/// stored it.
fn response_bytes(manager: &Manager, status: &Value) -> Result<Vec<u8>, ClientError> {
    let body = &status["response"]["response"];
    let unreadable = |reason: String| ClientError::Answer {
        path: format!(
            "/v1/commands/{}",
            status["commandId"].as_str().unwrap_or_default()
        ),
        reason,
    };
    match body["mode"].as_str() {
        Some("inline") => STANDARD
            .decode(body["inlineBase64"].as_str().unwrap_or_default())
            .map_err(|e| unreadable(format!("the inline answer is not base64: {e}"))),
        Some("storage") => {
            let request = &body["storageGetRequest"];
            let url = request["backend"]["url"]
                .as_str()
                .ok_or_else(|| unreadable("the stored answer has no URL".into()))?;
            manager.download(url, request["backend"]["headers"].as_object())
        }
        other => Err(unreadable(format!("an answer of mode {other:?}"))),
    }
}
