//! Telemetry (docs/compatibility.md, Telemetry): `POST /v1/logs`, `/v1/traces`, `/v1/metrics`,
//! and the admin's `GET /v1/telemetry/status`.
//!
//! The manager reads the body (capped at `[telemetry] max-body-bytes`), authenticates the
//! sender, which must be a deployment, looks up where the data comes from, and hands body
//! and origin to otelfwd over its socket (`protocol::otelfwd`). otelfwd decodes, enriches and
//! queues it durably; the sender's `{"accepted":true}` is otelfwd's. When otelfwd cannot
//! take it (queue full, data volume full, not running), the sender gets 503 with
//! `Retry-After`, never a 500 and never an acceptance: OTLP exporters retry a 503, and would
//! drop the data on a 507.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use plumbing::Daemon;
use plumbing::envelope::ErrorEnvelope;
use protocol::otelfwd::{self, Origin, Signal, Status};
use serde_json::{Value, json};
use tracing::error;

use crate::Error;
use crate::auth::{Caller, Scope, Subject};
use crate::authz::{Op, Target, authorize};
use crate::daemons::{Call, DaemonError};
use crate::error::{DAEMON_RETRY_AFTER_SECS, StorageVolume};
use crate::state::AppState;
use crate::store::deployments;

/// The largest answer of otelfwd's that is read: an acceptance, an error envelope, or its
/// counters.
const ANSWER_LIMIT: usize = 64 * 1024;

pub async fn logs(
    state: State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Error> {
    ingest(state, Signal::Logs, caller, headers, body).await
}

pub async fn traces(
    state: State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Error> {
    ingest(state, Signal::Traces, caller, headers, body).await
}

pub async fn metrics(
    state: State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Error> {
    ingest(state, Signal::Metrics, caller, headers, body).await
}

/// The body first, then the token, then who may send (deployments only), as in the public
/// manager.
async fn ingest(
    State(state): State<AppState>,
    signal: Signal,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Error> {
    let limit = state.telemetry_max_body_bytes;
    let bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                Error::PayloadTooLarge { limit }
            } else {
                Error::UnreadableBody(e.to_string())
            }
        })?
        .to_bytes();
    let subject = caller.authenticate(&state.store).await?;
    let origin = origin(&state, &subject).await?;
    let query = serde_urlencoded::to_string(&origin).map_err(|e| DaemonError::Target {
        daemon: Daemon::Otelfwd,
        target: format!("the origin {origin:?}: {e}"),
    })?;
    let call = Call::post(format!("{}?{query}", otelfwd::ingest_path(signal)))
        .headers_from(&headers, &[CONTENT_TYPE, CONTENT_ENCODING])
        .bytes(bytes);
    let otelfwd = &state.daemons.otelfwd;
    let response = otelfwd.send(call).await?;
    let status = response.status();
    let retry_after = response.headers().get(RETRY_AFTER).cloned();
    let body = otelfwd.read(response, ANSWER_LIMIT).await?;
    if status == StatusCode::OK {
        return Ok(Json(json!({ "accepted": true })));
    }
    Err(refusal(status, retry_after.as_ref(), &body))
}

/// The deployment a token stands for, and where it is: its group and current release.
async fn origin(state: &AppState, subject: &Subject) -> Result<Origin, Error> {
    authorize(subject, Op::IngestTelemetry, Target::Nothing)?;
    let Scope::Deployment { deployment_id, .. } = &subject.scope else {
        return Err(Error::forbidden(Op::IngestTelemetry.reason()));
    };
    let id = deployment_id.clone();
    let found = state
        .store
        .read(move |conn| deployments::origin(conn, &id))
        .await?;
    let mut origin = Origin {
        deployment_id: deployment_id.clone(),
        ..Origin::default()
    };
    if let Some(found) = found {
        origin.deployment_name = Some(found.name);
        origin.deployment_group_id = Some(found.deployment_group_id);
        origin.deployment_group_name = found.group_name;
        origin.release_id = found.current_release_id;
    }
    Ok(origin)
}

/// otelfwd's refusal as the manager's error: its 4xx keep their status and reason; anything
/// else means it cannot take data now, which the sender should retry (a full volume too, which
/// `/health` then reports).
fn refusal(status: StatusCode, retry_after: Option<&HeaderValue>, body: &[u8]) -> Error {
    let envelope: Option<ErrorEnvelope> = serde_json::from_slice(body).ok();
    let message = envelope.as_ref().map(|e| e.message.clone());
    match (status, message) {
        (StatusCode::BAD_REQUEST, Some(message)) => Error::BadRequest(message),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some(message)) => Error::TelemetryMediaType(message),
        (StatusCode::PAYLOAD_TOO_LARGE, _) => Error::DecompressedTooLarge {
            limit: envelope
                .and_then(|e| e.context)
                .and_then(|c| c.get("limit_bytes").and_then(Value::as_u64))
                .unwrap_or_default(),
        },
        (StatusCode::INSUFFICIENT_STORAGE, _) => Error::StorageFull {
            volume: StorageVolume::Data,
            retry_after_secs: Some(DAEMON_RETRY_AFTER_SECS),
        },
        (StatusCode::SERVICE_UNAVAILABLE, message) => Error::ServiceUnavailable {
            reason: message.unwrap_or_else(|| "The telemetry queue is full".into()),
            retry_after_secs: retry_after
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(DAEMON_RETRY_AFTER_SECS),
        },
        (status, _) => {
            error!(%status, body = %String::from_utf8_lossy(body), "otelfwd failed to queue telemetry");
            unavailable("The telemetry queue cannot take data now")
        }
    }
}

fn unavailable(reason: &str) -> Error {
    Error::ServiceUnavailable {
        reason: reason.to_owned(),
        retry_after_secs: DAEMON_RETRY_AFTER_SECS,
    }
}

/// `GET /v1/telemetry/status` (ours, admin only): otelfwd's queue and forwarding counters.
pub async fn status(
    State(state): State<AppState>,
    subject: Subject,
) -> Result<Json<Status>, Error> {
    authorize(&subject, Op::ReadTelemetryStatus, Target::Nothing)?;
    let otelfwd = &state.daemons.otelfwd;
    let response = otelfwd.send(Call::get(otelfwd::STATUS_PATH)).await?;
    let status = response.status();
    let body = otelfwd.read(response, ANSWER_LIMIT).await?;
    if status != StatusCode::OK {
        error!(%status, "otelfwd's status failed");
        return Err(unavailable(
            "The telemetry forwarder's status cannot be read",
        ));
    }
    serde_json::from_slice(&body).map(Json).map_err(|e| {
        error!(error = %e, "otelfwd's status is not what the manager expects");
        unavailable("The telemetry forwarder's status cannot be read")
    })
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;

    fn envelope(status: StatusCode, code: &str, message: &str, context: Value) -> Vec<u8> {
        serde_json::to_vec(&ErrorEnvelope::new(status, code, message).with_context(context))
            .expect("JSON")
    }

    /// otelfwd's status, Retry-After and body; the manager's status, code and Retry-After.
    type Case<'a> = (
        StatusCode,
        Option<&'a HeaderValue>,
        Vec<u8>,
        u16,
        &'a str,
        Option<&'a str>,
    );

    /// otelfwd's answers become the manager's, and only its 4xx keep their status.
    #[tokio::test]
    async fn otelfwd_refusals_map_to_the_wire() {
        let retry = HeaderValue::from_static("7");
        let cases: Vec<Case<'_>> = vec![
            (
                StatusCode::BAD_REQUEST,
                None,
                envelope(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    "Invalid OTLP",
                    json!({}),
                ),
                400,
                "BAD_REQUEST",
                None,
            ),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                envelope(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_MEDIA_TYPE",
                    "text/plain",
                    json!({}),
                ),
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                None,
            ),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                envelope(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    "big",
                    json!({"limit_bytes": 16}),
                ),
                413,
                "PAYLOAD_TOO_LARGE",
                None,
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&retry),
                envelope(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVICE_UNAVAILABLE",
                    "full",
                    json!({}),
                ),
                503,
                "SERVICE_UNAVAILABLE",
                Some("7"),
            ),
            (
                StatusCode::INSUFFICIENT_STORAGE,
                None,
                serde_json::to_vec(&ErrorEnvelope::insufficient_storage()).expect("JSON"),
                503,
                "SERVICE_UNAVAILABLE",
                Some("5"),
            ),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                b"{}".to_vec(),
                503,
                "SERVICE_UNAVAILABLE",
                Some("5"),
            ),
            (
                StatusCode::NOT_FOUND,
                None,
                Vec::new(),
                503,
                "SERVICE_UNAVAILABLE",
                Some("5"),
            ),
        ];
        for (status, retry_after, body, want, code, want_retry) in cases {
            let response = refusal(status, retry_after, &body).into_response();
            assert_eq!(response.status().as_u16(), want, "{status}");
            assert_eq!(
                response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()),
                want_retry,
                "{status}"
            );
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            let body: Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(body["code"], code, "{status}: {body}");
            assert_eq!(body["httpStatusCode"], want, "{status}: {body}");
        }
    }
}
