//! What a request can fail with, and the one place it becomes a wire response. Why the
//! manager could not start is [`crate::StartError`].

use std::borrow::Cow;
use std::path::PathBuf;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use plumbing::Daemon;
use plumbing::envelope::ErrorEnvelope;
use serde_json::json;

use crate::daemons::DaemonError;
use tracing::{error, warn};

/// What a handler can fail with. The variants up to [`Error::PlainText`] are answers to the
/// client, each with the public manager's code, status and context keys
/// (docs/compatibility.md, Conventions and Input errors); the rest are internal failures,
/// logged and answered as `GENERIC_ERROR`/500.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request carries no credential we accept. The reason is the public manager's 401
    /// message (docs/compatibility.md, Conventions).
    #[error("{0}")]
    Unauthorized(&'static str),

    #[error("{0}")]
    Forbidden(Cow<'static, str>),

    #[error("{0}")]
    BadRequest(String),

    #[error("Deployment '{deployment_id}' not found")]
    DeploymentNotFound { deployment_id: String },

    #[error("Deployment group '{deployment_group_id}' not found")]
    DeploymentGroupNotFound { deployment_group_id: String },

    #[error("Release '{release_id}' not found")]
    ReleaseNotFound { release_id: String },

    /// A reported state names a release the manager does not have. The public manager
    /// records any id; ours would then let the deployment pull what it names.
    #[error("Release '{release_id}' does not exist")]
    UnknownRelease { release_id: String },

    /// The public manager answers this with a 500; an unknown id is the client's mistake, so
    /// ours is a 404.
    #[error("Token {token_id} not found")]
    TokenNotFound { token_id: String },

    #[error("Deployment name '{name}' already exists in deployment group '{deployment_group_id}'")]
    DeploymentNameConflict {
        name: String,
        deployment_group_id: String,
    },

    #[error(
        "Deployment group '{deployment_group_id}' has reached maximum deployments ({max_deployments})"
    )]
    MaxDeploymentsReached {
        deployment_group_id: String,
        max_deployments: i64,
    },

    /// A lease is no longer the caller's. The public manager reports no holder.
    #[error("Deployment '{deployment_id}' is locked")]
    DeploymentLocked { deployment_id: String },

    #[error("Deployment '{deployment_id}' is already in status '{status}'")]
    DeploymentAlreadyDeleting {
        deployment_id: String,
        status: String,
    },

    #[error(
        "Setup import format version {found} is not supported by this manager, which accepts versions {minimum} to {current}"
    )]
    IncompatibleSetupImport {
        found: serde_json::Value,
        minimum: u64,
        current: u64,
    },

    #[error("Expected request with `Content-Type: application/json`")]
    UnsupportedMediaType,

    #[error("Failed to parse the request body as JSON: {0}")]
    MalformedJson(String),

    /// The body is JSON but not of the expected shape; `field` is the path to the offending
    /// value (`.` for the body itself).
    #[error("Failed to deserialize the JSON body into the target type: {field}: {reason}")]
    InvalidBody { field: String, reason: String },

    #[error("Request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },

    #[error("Failed to read the request body: {0}")]
    UnreadableBody(String),

    /// A daemon the request needs is down or restarting (or, for
    /// [`DaemonError::Target`], we built a request it cannot take).
    #[error("{}", unavailable_message(.0.daemon()))]
    Daemon(#[from] DaemonError),

    /// registryd refused a request the manager passed on as the client sent it.
    #[error("{0}")]
    RegistryRefused(String),

    /// A telemetry body whose `Content-Type` or `Content-Encoding` is not OTLP/HTTP's.
    #[error("{0}")]
    TelemetryMediaType(String),

    /// A gzip-encoded telemetry body that inflates past `[telemetry] max-decompressed-bytes`.
    #[error("Request body inflates to more than the limit of {limit} bytes")]
    DecompressedTooLarge { limit: u64 },

    /// A sidecar cannot take the request now (otelfwd's queue is full, or it is not
    /// running); the client should send it again after `Retry-After`.
    #[error("{reason}")]
    ServiceUnavailable {
        reason: String,
        retry_after_secs: u64,
    },

    /// A volume the request had to write to is full (the database's SQLite said
    /// `SQLITE_FULL`, or a sidecar found no room on the data volume); nothing was written.
    /// A sender that retries by itself (telemetry) is told to with `Retry-After`.
    #[error("{}", plumbing::disk::FULL_MESSAGE)]
    StorageFull {
        volume: StorageVolume,
        retry_after_secs: Option<u64>,
    },

    /// The few answers the public manager gives as `text/plain` (`GET /v1/build-config`'s).
    #[error("{message}")]
    PlainText { status: StatusCode, message: String },

    #[error("cannot open database {}: {source}", path.display())]
    OpenDatabase {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error(transparent)]
    Sqlite(#[from] plumbing::sqlite::SqliteError),

    #[error("database: {0}")]
    Database(rusqlite::Error),

    #[error("database worker: {0}")]
    DatabaseWorker(#[from] tokio::task::JoinError),

    #[error("the database's reading connections are closed")]
    ReadersClosed,

    #[error("the database write was abandoned: it panicked, or the writer stopped")]
    WriteAbandoned,

    #[error("database write: {0}")]
    Write(String),

    #[error("{table} {id}: column {column} holds invalid JSON: {source}")]
    CorruptRecord {
        table: &'static str,
        id: String,
        column: &'static str,
        source: serde_json::Error,
    },

    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error(
        "deployment {deployment_id} has platform {platform:?}, which this manager does not know"
    )]
    UnknownPlatform {
        deployment_id: String,
        platform: String,
    },

    #[error("token {id} has type {kind:?}, which this manager does not know")]
    UnknownTokenType { id: String, kind: String },

    #[error("random number generator: {0}")]
    Random(getrandom::Error),

    /// The running executable, served to the machines that install the agent, cannot be
    /// read.
    #[error("the running executable: {0}")]
    Executable(std::io::Error),

    #[error("registryd answered {status}: {body}")]
    RegistryFailed { status: StatusCode, body: String },
}

/// Which volume a [`Error::StorageFull`] found full. The manager's `/health` reports it; a
/// response carries it as an extension so that the layer that watches for full volumes
/// learns of it (`crate::volumes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageVolume {
    /// The data directory: the sidecars' files, and the database unless `[database] path`
    /// moves it.
    Data,
    /// The database's directory.
    Database,
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Error {
        if plumbing::disk::sqlite_is_full(&error) {
            Error::database_full()
        } else {
            Error::Database(error)
        }
    }
}

/// What a client is told to wait before trying again when a daemon is down: the supervisor
/// restarts a daemon within a second or two, later ones after a longer backoff.
pub const DAEMON_RETRY_AFTER_SECS: u64 = 5;

/// The message of a 503 for `daemon`, naming what the client knows, not our process names.
fn unavailable_message(daemon: Daemon) -> String {
    let service = match daemon {
        Daemon::Registryd => "registry",
        Daemon::Commandd => "commands service",
        Daemon::Otelfwd => "telemetry forwarder",
        Daemon::Manager => "manager",
        Daemon::Deployd => "deployment service",
    };
    format!("The {service} is unavailable; try again shortly")
}

impl Error {
    pub fn forbidden(reason: &'static str) -> Error {
        Error::Forbidden(Cow::Borrowed(reason))
    }

    /// One of the answers the public manager gives as `text/plain`.
    pub fn plain(status: StatusCode, message: impl Into<String>) -> Error {
        Error::PlainText {
            status,
            message: message.into(),
        }
    }

    /// A batch of the writer that could not begin or commit (the error stays with it).
    pub fn write_failed(error: &rusqlite::Error) -> Error {
        if plumbing::disk::sqlite_is_full(error) {
            Error::database_full()
        } else {
            Error::Write(error.to_string())
        }
    }

    fn database_full() -> Error {
        Error::StorageFull {
            volume: StorageVolume::Database,
            retry_after_secs: None,
        }
    }

    pub fn deployment_not_found(id: &str) -> Error {
        Error::DeploymentNotFound {
            deployment_id: id.to_owned(),
        }
    }

    /// How long a client should wait before sending the request again, for the answers
    /// that say so (a `503`).
    fn retry_after(&self) -> Option<u64> {
        match self {
            Error::ServiceUnavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Error::StorageFull {
                retry_after_secs, ..
            } => *retry_after_secs,
            Error::Daemon(error) if error.is_unavailable() => Some(DAEMON_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The envelope of an answer to the client; `None` for an internal failure.
    fn envelope(&self) -> Option<ErrorEnvelope> {
        let message = self.to_string();
        let (status, code, context) = match self {
            Error::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                json!({ "reason": message }),
            ),
            Error::Forbidden(_) => (
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                json!({ "reason": message }),
            ),
            Error::BadRequest(_)
            | Error::MalformedJson(_)
            | Error::UnreadableBody(_)
            | Error::RegistryRefused(_) => (
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                json!({ "reason": message }),
            ),
            Error::DeploymentNotFound { deployment_id } => (
                StatusCode::NOT_FOUND,
                "DEPLOYMENT_NOT_FOUND",
                json!({ "deployment_id": deployment_id }),
            ),
            Error::DeploymentGroupNotFound {
                deployment_group_id,
            } => (
                StatusCode::NOT_FOUND,
                "DEPLOYMENT_GROUP_NOT_FOUND",
                json!({ "deployment_group_id": deployment_group_id }),
            ),
            Error::ReleaseNotFound { release_id } => (
                StatusCode::NOT_FOUND,
                "RELEASE_NOT_FOUND",
                json!({ "release_id": release_id }),
            ),
            Error::UnknownRelease { release_id } => (
                StatusCode::BAD_REQUEST,
                "UNKNOWN_RELEASE",
                json!({ "release_id": release_id }),
            ),
            Error::TokenNotFound { token_id } => (
                StatusCode::NOT_FOUND,
                "TOKEN_NOT_FOUND",
                json!({ "token_id": token_id }),
            ),
            Error::DeploymentNameConflict {
                name,
                deployment_group_id,
            } => (
                StatusCode::CONFLICT,
                "DEPLOYMENT_NAME_CONFLICT",
                json!({ "name": name, "deployment_group_id": deployment_group_id }),
            ),
            Error::MaxDeploymentsReached {
                deployment_group_id,
                max_deployments,
            } => (
                StatusCode::BAD_REQUEST,
                "MAX_DEPLOYMENTS_REACHED",
                json!({
                    "deployment_group_id": deployment_group_id,
                    "max_deployments": max_deployments,
                }),
            ),
            Error::DeploymentLocked { deployment_id } => (
                StatusCode::CONFLICT,
                "DEPLOYMENT_LOCKED",
                json!({ "deployment_id": deployment_id, "locked_by": null }),
            ),
            Error::DeploymentAlreadyDeleting {
                deployment_id,
                status,
            } => (
                StatusCode::CONFLICT,
                "DEPLOYMENT_ALREADY_DELETING",
                json!({ "deployment_id": deployment_id, "status": status }),
            ),
            Error::IncompatibleSetupImport {
                found,
                minimum,
                current,
            } => (
                StatusCode::BAD_REQUEST,
                "INCOMPATIBLE_SETUP_IMPORT",
                json!({
                    "found_version": found,
                    "minimum_supported_version": minimum,
                    "current_version": current,
                }),
            ),
            Error::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                json!({ "reason": message }),
            ),
            Error::InvalidBody { field, reason } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_ERROR",
                json!({ "field": field, "reason": reason }),
            ),
            Error::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                json!({ "limit_bytes": limit }),
            ),
            Error::TelemetryMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                json!({ "reason": message }),
            ),
            Error::DecompressedTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                json!({ "limit_bytes": limit }),
            ),
            Error::StorageFull {
                retry_after_secs: None,
                ..
            } => return Some(ErrorEnvelope::insufficient_storage()),
            Error::ServiceUnavailable { .. } | Error::Daemon(_) | Error::StorageFull { .. }
                if self.retry_after().is_some() =>
            {
                return Some(
                    ErrorEnvelope::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "SERVICE_UNAVAILABLE",
                        &message,
                    )
                    .with_context(json!({ "reason": message }))
                    .retryable(),
                );
            }
            _ => return None,
        };
        Some(ErrorEnvelope::new(status, code, message).with_context(context))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::PlainText { status, message } = self {
            return (status, message).into_response();
        }
        if let Error::Daemon(error) = &self
            && error.is_unavailable()
        {
            warn!(%error, "request refused: a daemon is unavailable");
        }
        let retry_after = self.retry_after();
        match self.envelope() {
            Some(envelope) => {
                let mut response = envelope.into_response();
                if let Some(secs) = retry_after {
                    response
                        .headers_mut()
                        .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
                }
                if let Error::StorageFull { volume, .. } = self {
                    response.extensions_mut().insert(volume);
                }
                response
            }
            // A client learns nothing of an internal failure; the operator reads it in the log.
            None => {
                error!(error = %self, "request failed");
                ErrorEnvelope::internal().into_response()
            }
        }
    }
}

/// What `/v2` answers when the manager answers itself rather than registryd:
/// the distribution spec's body `{"errors":[{"code","message","detail":null}]}`, not the
/// envelope, with `WWW-Authenticate: Basic realm="alien-manager"` on a 401 so that a registry
/// client knows to send its credentials.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("UNAUTHORIZED: {0}")]
    Unauthorized(&'static str),

    #[error("{0}")]
    Denied(Cow<'static, str>),

    /// No registry this manager serves holds the repository (or, for a deployment token,
    /// there is no release to pull from).
    #[error("{0}")]
    NameUnknown(String),

    /// A `/v2` path that names no endpoint of the distribution spec.
    #[error("no such endpoint: {0}")]
    Unsupported(String),

    /// registryd is down or restarting; the cause is logged.
    #[error("{}", unavailable_message(Daemon::Registryd))]
    Unavailable(DaemonError),

    #[error(transparent)]
    Internal(Error),
}

/// `Docker-Distribution-API-Version: registry/2.0`, on every `/v2` answer as registries send
/// it.
pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
pub const API_VERSION_2: HeaderValue = HeaderValue::from_static("registry/2.0");

impl From<Error> for OciError {
    fn from(error: Error) -> OciError {
        match error {
            Error::Unauthorized(reason) => OciError::Unauthorized(reason),
            Error::Forbidden(reason) => OciError::Denied(reason),
            Error::Daemon(error) => OciError::from(error),
            other => OciError::Internal(other),
        }
    }
}

impl From<DaemonError> for OciError {
    fn from(error: DaemonError) -> OciError {
        if error.is_unavailable() {
            OciError::Unavailable(error)
        } else {
            OciError::Internal(Error::Daemon(error))
        }
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            OciError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            OciError::Denied(_) => (StatusCode::FORBIDDEN, "DENIED"),
            OciError::NameUnknown(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            OciError::Unsupported(_) => (StatusCode::NOT_FOUND, "UNSUPPORTED"),
            OciError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            OciError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        };
        let message = match &self {
            OciError::Internal(error) => {
                error!(%error, "registry request failed");
                "Internal server error".to_owned()
            }
            OciError::Unavailable(error) => {
                warn!(%error, "registry request refused with 503");
                self.to_string()
            }
            other => other.to_string(),
        };
        let body = json!({"errors": [{"code": code, "message": message, "detail": null}]});
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(API_VERSION, API_VERSION_2);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(DAEMON_RETRY_AFTER_SECS),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"alien-manager\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn wire(error: Error) -> (StatusCode, Option<String>, Vec<u8>) {
        let response = error.into_response();
        let status = response.status();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, content_type, body.to_vec())
    }

    #[tokio::test]
    async fn each_code_has_its_status_message_and_context() {
        let id = || "dep_1".to_owned();
        // (error, status, code, message, context)
        let cases = [
            (
                Error::Unauthorized("Invalid token"),
                401,
                "UNAUTHORIZED",
                "Invalid token",
                json!({"reason": "Invalid token"}),
            ),
            (
                Error::forbidden("Access denied"),
                403,
                "FORBIDDEN",
                "Access denied",
                json!({"reason": "Access denied"}),
            ),
            (
                Error::BadRequest("No platform stack provided".into()),
                400,
                "BAD_REQUEST",
                "No platform stack provided",
                json!({"reason": "No platform stack provided"}),
            ),
            (
                Error::deployment_not_found("dep_1"),
                404,
                "DEPLOYMENT_NOT_FOUND",
                "Deployment 'dep_1' not found",
                json!({"deployment_id": "dep_1"}),
            ),
            (
                Error::DeploymentGroupNotFound {
                    deployment_group_id: "dg_1".into(),
                },
                404,
                "DEPLOYMENT_GROUP_NOT_FOUND",
                "Deployment group 'dg_1' not found",
                json!({"deployment_group_id": "dg_1"}),
            ),
            (
                Error::ReleaseNotFound {
                    release_id: "latest".into(),
                },
                404,
                "RELEASE_NOT_FOUND",
                "Release 'latest' not found",
                json!({"release_id": "latest"}),
            ),
            (
                Error::UnknownRelease {
                    release_id: "rel_x".into(),
                },
                400,
                "UNKNOWN_RELEASE",
                "Release 'rel_x' does not exist",
                json!({"release_id": "rel_x"}),
            ),
            (
                Error::TokenNotFound {
                    token_id: "tok_1".into(),
                },
                404,
                "TOKEN_NOT_FOUND",
                "Token tok_1 not found",
                json!({"token_id": "tok_1"}),
            ),
            (
                Error::DeploymentNameConflict {
                    name: "web".into(),
                    deployment_group_id: "dg_1".into(),
                },
                409,
                "DEPLOYMENT_NAME_CONFLICT",
                "Deployment name 'web' already exists in deployment group 'dg_1'",
                json!({"name": "web", "deployment_group_id": "dg_1"}),
            ),
            (
                Error::MaxDeploymentsReached {
                    deployment_group_id: "dg_1".into(),
                    max_deployments: 2,
                },
                400,
                "MAX_DEPLOYMENTS_REACHED",
                "Deployment group 'dg_1' has reached maximum deployments (2)",
                json!({"deployment_group_id": "dg_1", "max_deployments": 2}),
            ),
            (
                Error::DeploymentLocked {
                    deployment_id: id(),
                },
                409,
                "DEPLOYMENT_LOCKED",
                "Deployment 'dep_1' is locked",
                json!({"deployment_id": "dep_1", "locked_by": null}),
            ),
            (
                Error::DeploymentAlreadyDeleting {
                    deployment_id: id(),
                    status: "deleting".into(),
                },
                409,
                "DEPLOYMENT_ALREADY_DELETING",
                "Deployment 'dep_1' is already in status 'deleting'",
                json!({"deployment_id": "dep_1", "status": "deleting"}),
            ),
            (
                Error::IncompatibleSetupImport {
                    found: json!(2),
                    minimum: 1,
                    current: 1,
                },
                400,
                "INCOMPATIBLE_SETUP_IMPORT",
                "Setup import format version 2 is not supported by this manager, which accepts versions 1 to 1",
                json!({"found_version": 2, "minimum_supported_version": 1, "current_version": 1}),
            ),
            (
                Error::UnsupportedMediaType,
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                "Expected request with `Content-Type: application/json`",
                json!({"reason": "Expected request with `Content-Type: application/json`"}),
            ),
            (
                Error::MalformedJson("EOF".into()),
                400,
                "BAD_REQUEST",
                "Failed to parse the request body as JSON: EOF",
                json!({"reason": "Failed to parse the request body as JSON: EOF"}),
            ),
            (
                Error::InvalidBody {
                    field: "name".into(),
                    reason: "invalid type".into(),
                },
                422,
                "VALIDATION_ERROR",
                "Failed to deserialize the JSON body into the target type: name: invalid type",
                json!({"field": "name", "reason": "invalid type"}),
            ),
            (
                Error::PayloadTooLarge { limit: 10 },
                413,
                "PAYLOAD_TOO_LARGE",
                "Request body is larger than the limit of 10 bytes",
                json!({"limit_bytes": 10}),
            ),
        ];
        for (error, status, code, message, context) in cases {
            let (got_status, content_type, body) = wire(error).await;
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(got_status.as_u16(), status, "{code}");
            assert_eq!(content_type.as_deref(), Some("application/json"), "{code}");
            assert_eq!(
                body,
                json!({
                    "code": code,
                    "message": message,
                    "context": context,
                    "retryable": false,
                    "internal": false,
                    "httpStatusCode": status,
                }),
                "{code}"
            );
        }
    }

    #[tokio::test]
    async fn plain_text_answers_stay_plain_text() {
        let (status, content_type, body) = wire(Error::PlainText {
            status: StatusCode::NOT_FOUND,
            message: "No artifact registries configured".into(),
        })
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(content_type.is_some_and(|t| t.starts_with("text/plain")));
        assert_eq!(body, b"No artifact registries configured");
    }

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

    #[tokio::test]
    async fn registry_errors_have_the_distribution_specs_body() {
        // (error, status, code, message, challenge)
        let cases = [
            (
                OciError::from(Error::Unauthorized("Invalid token")),
                401,
                "UNAUTHORIZED",
                "UNAUTHORIZED: Invalid token",
                true,
            ),
            (
                OciError::from(Error::forbidden("Access denied")),
                403,
                "DENIED",
                "Access denied",
                false,
            ),
            (
                OciError::NameUnknown("Repository 'x' is not served here".into()),
                404,
                "NAME_UNKNOWN",
                "Repository 'x' is not served here",
                false,
            ),
            (
                OciError::Unsupported("/v2/a".into()),
                404,
                "UNSUPPORTED",
                "no such endpoint: /v2/a",
                false,
            ),
            (
                OciError::Unavailable(down(Daemon::Registryd)),
                503,
                "UNAVAILABLE",
                "The registry is unavailable; try again shortly",
                false,
            ),
            (
                OciError::from(Error::Database(rusqlite::Error::InvalidQuery)),
                500,
                "UNKNOWN",
                "Internal server error",
                false,
            ),
        ];
        for (error, status, code, message, challenge) in cases {
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status, "{code}");
            let headers = response.headers().clone();
            assert_eq!(
                headers
                    .get("www-authenticate")
                    .map(|v| v.to_str().expect("ascii")),
                challenge.then_some("Basic realm=\"alien-manager\""),
                "{code}"
            );
            assert_eq!(headers["docker-distribution-api-version"], "registry/2.0");
            assert_eq!(headers["content-type"], "application/json");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(
                body,
                json!({"errors": [{"code": code, "message": message, "detail": null}]}),
                "{code}"
            );
        }
    }

    #[tokio::test]
    async fn a_full_volume_is_507_or_for_a_sender_that_retries_503_with_retry_after() {
        let full = || {
            Error::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("database or disk is full".into()),
            ))
        };
        let response = full().into_response();
        assert!(response.headers().get(http::header::RETRY_AFTER).is_none());
        assert_eq!(
            response.extensions().get::<StorageVolume>(),
            Some(&StorageVolume::Database)
        );
        let (status, _, body) = wire(full()).await;
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            body,
            json!({
                "code": "INSUFFICIENT_STORAGE",
                "message": plumbing::disk::FULL_MESSAGE,
                "retryable": true,
                "internal": false,
                "httpStatusCode": 507,
            })
        );

        let telemetry = Error::StorageFull {
            volume: StorageVolume::Data,
            retry_after_secs: Some(5),
        }
        .into_response();
        assert_eq!(telemetry.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(telemetry.headers()[http::header::RETRY_AFTER], "5");
        assert_eq!(
            telemetry.extensions().get::<StorageVolume>(),
            Some(&StorageVolume::Data)
        );

        // Anything else SQLite fails with is still ours, and a 500.
        let other = Error::from(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
            None,
        ));
        let (status, _, _) = wire(other).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    fn down(daemon: Daemon) -> DaemonError {
        DaemonError::Timeout {
            daemon,
            timeout: std::time::Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn a_daemon_that_is_down_is_a_retryable_503_with_retry_after() {
        for (daemon, service) in [
            (Daemon::Registryd, "registry"),
            (Daemon::Commandd, "commands service"),
            (Daemon::Otelfwd, "telemetry forwarder"),
        ] {
            let response = Error::Daemon(down(daemon)).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[http::header::RETRY_AFTER], "5");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            let message = format!("The {service} is unavailable; try again shortly");
            assert_eq!(
                body,
                json!({
                    "code": "SERVICE_UNAVAILABLE",
                    "message": message,
                    "context": {"reason": message},
                    "retryable": true,
                    "internal": false,
                    "httpStatusCode": 503,
                })
            );
        }
        let response = OciError::from(Error::Daemon(down(Daemon::Registryd))).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "5");

        // A request we could not build is our failure, not a reason to come back later.
        let ours = DaemonError::Target {
            daemon: Daemon::Commandd,
            target: "/bad path".into(),
        };
        let (status, _, _) = wire(Error::Daemon(ours)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
