//! commandd's one error type, and the one place it becomes a wire response: the public
//! manager's error envelope with the public manager's commands codes, each with its status
//! in one table below. The manager passes these answers on to the client as they are. A
//! write that finds no room on the volume (a payload file, or SQLite's) is `507` with
//! `INSUFFICIENT_STORAGE`: the command is as it was before the request.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use plumbing::envelope::ErrorEnvelope;
use serde_json::json;
use tracing::{debug, error};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Answers to the client, each with its code and status.
    #[error("Invalid command: {0}")]
    InvalidCommand(String),

    #[error("Command '{0}' not found")]
    CommandNotFound(String),

    #[error("Command target '{resource_id}' not found in deployment '{deployment_id}'")]
    TargetNotFound {
        resource_id: String,
        deployment_id: String,
    },

    #[error("Deployment '{0}' has multiple command-capable targets; specify targetResourceId")]
    TargetAmbiguous(String),

    #[error("Deployment '{0}' has no command-capable targets")]
    NoTargets(String),

    #[error(
        "Command target id '{0}' is invalid: ids must match [A-Za-z0-9-_] and cannot contain ':'"
    )]
    TargetIdInvalid(String),

    #[error("Invalid state transition from '{from}' to '{to}'")]
    InvalidStateTransition {
        from: &'static str,
        to: &'static str,
    },

    #[error("Lease '{0}' not found")]
    LeaseNotFound(String),

    #[error("Storage object {0} not found")]
    BlobNotFound(String),

    /// A storage URL writes once: this one already has.
    #[error(
        "This storage URL has already written the {body} of command '{command_id}'; a storage URL writes once"
    )]
    StorageUrlUsed {
        command_id: String,
        body: &'static str,
    },

    /// A storage URL writes only while its command waits for that body: params while
    /// `PENDING_UPLOAD`, a response while `DISPATCHED`.
    #[error("Command '{command_id}' is {state} and takes no {body} upload")]
    StorageUploadNotExpected {
        command_id: String,
        body: &'static str,
        state: &'static str,
    },

    #[error("Request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },

    /// A body that broke off before its end: nothing of it is kept.
    #[error("The request body could not be read: {0}")]
    UnreadableBody(String),

    /// A request commandd cannot read: a bad body or query from the manager.
    #[error("{0}")]
    BadRequest(String),

    // Our own failures: logged, answered as GENERIC_ERROR/500.
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),

    #[error("database worker: {0}")]
    Join(#[from] tokio::task::JoinError),

    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(transparent)]
    Sqlite(#[from] plumbing::sqlite::SqliteError),

    #[error("stored JSON of {what}: {source}")]
    CorruptJson {
        what: String,
        source: serde_json::Error,
    },

    #[error("stored record: {0}")]
    Corrupt(String),

    #[error(transparent)]
    Key(#[from] crate::key::KeyError),

    #[error("random number generator: {0}")]
    Random(getrandom::Error),

    #[error(transparent)]
    Socket(#[from] plumbing::uds::UdsError),
}

impl Error {
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    /// A write that found no room on the volume: a file's, or SQLite's.
    fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => plumbing::disk::is_full(source),
            Error::Database(error) => plumbing::disk::sqlite_is_full(error),
            _ => false,
        }
    }

    /// The envelope of an answer to the client; `None` for an internal failure.
    fn envelope(&self) -> Option<ErrorEnvelope> {
        use StatusCode as S;
        let message = self.to_string();
        let (status, code, context) = match self {
            Error::InvalidCommand(reason) => (
                S::BAD_REQUEST,
                "INVALID_COMMAND",
                json!({"message": reason}),
            ),
            Error::CommandNotFound(id) => {
                (S::NOT_FOUND, "COMMAND_NOT_FOUND", json!({"command_id": id}))
            }
            Error::TargetNotFound {
                resource_id,
                deployment_id,
            } => (
                S::NOT_FOUND,
                "COMMAND_TARGET_NOT_FOUND",
                json!({"resource_id": resource_id, "deployment_id": deployment_id}),
            ),
            Error::TargetAmbiguous(deployment_id) => (
                S::CONFLICT,
                "COMMAND_TARGET_AMBIGUOUS",
                json!({"deployment_id": deployment_id}),
            ),
            Error::NoTargets(deployment_id) => (
                S::UNPROCESSABLE_ENTITY,
                "NO_COMMAND_TARGETS",
                json!({"deployment_id": deployment_id}),
            ),
            Error::TargetIdInvalid(resource_id) => (
                S::BAD_REQUEST,
                "COMMAND_TARGET_ID_INVALID",
                json!({"resource_id": resource_id}),
            ),
            Error::InvalidStateTransition { from, to } => (
                S::BAD_REQUEST,
                "INVALID_STATE_TRANSITION",
                json!({"from": from, "to": to}),
            ),
            Error::LeaseNotFound(id) => (S::NOT_FOUND, "LEASE_NOT_FOUND", json!({"lease_id": id})),
            Error::BlobNotFound(path) => (
                S::NOT_FOUND,
                "STORAGE_OBJECT_NOT_FOUND",
                json!({"path": path}),
            ),
            Error::StorageUrlUsed { command_id, body } => (
                S::CONFLICT,
                "STORAGE_URL_USED",
                json!({"command_id": command_id, "body": body}),
            ),
            Error::StorageUploadNotExpected {
                command_id,
                body,
                state,
            } => (
                S::CONFLICT,
                "STORAGE_UPLOAD_NOT_EXPECTED",
                json!({"command_id": command_id, "body": body, "state": state}),
            ),
            Error::PayloadTooLarge { limit } => (
                S::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                json!({"limit_bytes": limit}),
            ),
            Error::UnreadableBody(reason) => {
                (S::BAD_REQUEST, "BAD_REQUEST", json!({"reason": reason}))
            }
            Error::BadRequest(reason) => (S::BAD_REQUEST, "BAD_REQUEST", json!({"reason": reason})),
            full if full.is_disk_full() => {
                // The manager logs the volume's state once; a line per refused request
                // would flood the log of a full disk.
                debug!(error = %self, "request refused: no room on the volume");
                return Some(ErrorEnvelope::insufficient_storage());
            }
            _ => return None,
        };
        Some(ErrorEnvelope::new(status, code, message).with_context(context))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self.envelope() {
            Some(envelope) => envelope.into_response(),
            None => {
                error!(error = %self, "request failed");
                ErrorEnvelope::internal().into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_code_has_its_status() {
        let cases = [
            (Error::InvalidCommand("x".into()), 400, "INVALID_COMMAND"),
            (
                Error::CommandNotFound("cmd_1".into()),
                404,
                "COMMAND_NOT_FOUND",
            ),
            (
                Error::TargetNotFound {
                    resource_id: "a".into(),
                    deployment_id: "d".into(),
                },
                404,
                "COMMAND_TARGET_NOT_FOUND",
            ),
            (
                Error::TargetAmbiguous("d".into()),
                409,
                "COMMAND_TARGET_AMBIGUOUS",
            ),
            (Error::NoTargets("d".into()), 422, "NO_COMMAND_TARGETS"),
            (
                Error::TargetIdInvalid("a:b".into()),
                400,
                "COMMAND_TARGET_ID_INVALID",
            ),
            (
                Error::InvalidStateTransition {
                    from: "PENDING",
                    to: "SUCCEEDED",
                },
                400,
                "INVALID_STATE_TRANSITION",
            ),
            (
                Error::LeaseNotFound("lease_1".into()),
                404,
                "LEASE_NOT_FOUND",
            ),
            (
                Error::StorageUrlUsed {
                    command_id: "cmd_1".into(),
                    body: "params",
                },
                409,
                "STORAGE_URL_USED",
            ),
            (
                Error::StorageUploadNotExpected {
                    command_id: "cmd_1".into(),
                    body: "response",
                    state: "SUCCEEDED",
                },
                409,
                "STORAGE_UPLOAD_NOT_EXPECTED",
            ),
            (
                Error::PayloadTooLarge { limit: 1 },
                413,
                "PAYLOAD_TOO_LARGE",
            ),
            (Error::Corrupt("x".into()), 500, "GENERIC_ERROR"),
            (
                Error::io("write", "/data/commands/tmp/x")(std::io::Error::from(
                    std::io::ErrorKind::StorageFull,
                )),
                507,
                "INSUFFICIENT_STORAGE",
            ),
            (
                Error::Database(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                    None,
                )),
                507,
                "INSUFFICIENT_STORAGE",
            ),
            (
                Error::io("write", "/data/commands/tmp/x")(std::io::Error::from(
                    std::io::ErrorKind::PermissionDenied,
                )),
                500,
                "GENERIC_ERROR",
            ),
        ];
        for (error, status, code) in cases {
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status, "{code}");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(body["code"], code);
            assert_eq!(body["httpStatusCode"], status);
        }
    }
}
