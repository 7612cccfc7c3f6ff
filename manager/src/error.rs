//! The manager's one error type, and the one place it becomes a wire response.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use plumbing::envelope::ErrorEnvelope;
use tracing::error;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request carries no credential we accept. The reason is the wire message of spec §1.5.
    #[error("{0}")]
    Unauthorized(&'static str),

    #[error(transparent)]
    Socket(#[from] plumbing::uds::UdsError),

    #[error(transparent)]
    Lock(#[from] plumbing::lock::LockError),

    #[error("cannot create {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },

    #[error("cannot open database {}: {source}", path.display())]
    OpenDatabase {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error(
        "database {} has schema version {found}, but this manager knows versions up to {supported}; refusing to start (run the alien-manager that wrote it, or restore a backup)",
        path.display()
    )]
    UnknownSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),

    #[error("database worker: {0}")]
    DatabaseWorker(#[from] tokio::task::JoinError),

    #[error("the database's reading connections are closed")]
    ReadersClosed,

    #[error("token {id} has type {kind:?}, which this manager does not know")]
    UnknownTokenType { id: String, kind: String },

    #[error("random number generator: {0}")]
    Random(getrandom::Error),

    #[error("legacy admin token file {}: {source}", path.display())]
    LegacyAdminToken { path: PathBuf, source: io::Error },

    #[error("cannot print the admin token on stdout: {0}")]
    AnnounceToken(io::Error),

    #[error(
        "cannot listen on {addr}: the port is in use by another process (choose another with [server] port or PORT)"
    )]
    PortInUse { addr: SocketAddr },

    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },

    #[error("serving HTTP: {0}")]
    Serve(io::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let envelope = match self {
            Error::Unauthorized(reason) => {
                ErrorEnvelope::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", reason)
                    .with_context(serde_json::json!({ "reason": reason }))
            }
            // A client learns nothing of an internal failure; the operator reads it in the log.
            internal => {
                error!(error = %internal, "request failed");
                ErrorEnvelope::internal()
            }
        };
        envelope.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_failures_are_sanitized() {
        let response = Error::Database(rusqlite::Error::InvalidQuery).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            body,
            serde_json::json!({
                "code": "GENERIC_ERROR",
                "message": "Internal server error",
                "retryable": false,
                "internal": false,
                "httpStatusCode": 500
            })
        );
    }
}
