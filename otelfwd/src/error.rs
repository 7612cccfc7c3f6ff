//! otelfwd's errors: [`Error`] stops the daemon; [`IngestError`] answers one ingest call,
//! mapped to the wire once, in its `IntoResponse`. A full volume is `507` on the socket; the
//! manager answers the sender `503` with `Retry-After`, which OTLP exporters retry.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plumbing::envelope::ErrorEnvelope;
use serde_json::json;
use tracing::{debug, error};

use crate::queue::QueueError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Socket(#[from] plumbing::uds::UdsError),
    #[error("telemetry queue: {0}")]
    Queue(#[from] QueueError),
    #[error("opening the telemetry queues: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("cannot start the {signal} forwarder: {source}")]
    Thread {
        signal: protocol::otelfwd::Signal,
        source: std::io::Error,
    },
}

/// What an ingest call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Malformed(String),
    #[error("The request body inflates to more than the limit of {limit} bytes")]
    DecompressedTooLarge { limit: u64 },
    #[error("The request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("The telemetry queue is full; retry after {} s", retry_after.as_secs())]
    QueueFull { retry_after: Duration },
    #[error("unknown signal {0:?}")]
    UnknownSignal(String),
    #[error("invalid origin: {0}")]
    InvalidOrigin(String),
    /// The volume has no room for the record; nothing was queued.
    #[error("telemetry queue: {0}")]
    DiskFull(QueueError),
    #[error("telemetry queue: {0}")]
    Queue(QueueError),
    #[error("decoding worker: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let reason = || json!({ "reason": message });
        let envelope = match &self {
            IngestError::UnsupportedMediaType(_) => ErrorEnvelope::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                &message,
            )
            .with_context(reason()),
            IngestError::Malformed(_) => {
                ErrorEnvelope::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message)
                    .with_context(reason())
            }
            IngestError::DecompressedTooLarge { limit } | IngestError::TooLarge { limit } => {
                ErrorEnvelope::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", &message)
                    .with_context(json!({ "limit_bytes": limit }))
            }
            IngestError::QueueFull { retry_after } => {
                let envelope = ErrorEnvelope::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVICE_UNAVAILABLE",
                    &message,
                )
                .with_context(reason())
                .retryable();
                let mut response = envelope.into_response();
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
                return response;
            }
            IngestError::UnknownSignal(_) => {
                ErrorEnvelope::new(StatusCode::NOT_FOUND, "NOT_FOUND", &message)
            }
            IngestError::InvalidOrigin(_) => {
                ErrorEnvelope::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message)
            }
            // The manager logs the volume's state once; a line per refused request would
            // flood the log of a full disk.
            IngestError::DiskFull(_) => {
                debug!(error = %self, "ingest refused: no room on the volume");
                ErrorEnvelope::insufficient_storage()
            }
            IngestError::Queue(_) | IngestError::Worker(_) => {
                error!(error = %self, "ingest failed");
                ErrorEnvelope::internal()
            }
        };
        envelope.into_response()
    }
}
