//! registryd's one error type, and the one place it becomes an HTTP response: the
//! distribution spec's envelope `{"errors":[{"code","message","detail"}]}` with its status.
//!
//! A write that finds no room on the volume is `507 Insufficient Storage` with the code the
//! distribution registry gives any storage failure (`UNKNOWN`) and a message that says what
//! happened; nothing of it is kept, and an upload session stays where it was acknowledged.

use std::path::PathBuf;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tracing::{debug, error};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // What a client did wrong, each with its distribution-spec code.
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(String),
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    #[error("manifest references a blob unknown to this repository: {0}")]
    ManifestBlobUnknown(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest of {size} bytes exceeds the limit of {limit}")]
    ManifestTooLarge { size: u64, limit: u64 },
    #[error("manifest unknown to registry")]
    ManifestUnknown,
    #[error("invalid repository name: {0:?}")]
    NameInvalid(String),
    #[error("repository name not known to registry")]
    NameUnknown,
    #[error("size invalid: {0}")]
    SizeInvalid(String),
    #[error("invalid tag: {0:?}")]
    TagInvalid(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("{0} is not allowed here")]
    MethodNotAllowed(http::Method),
    /// A chunk that does not start where the upload stands (or an unreadable Content-Range):
    /// 416 with the upload's location and range, so that the client can resume.
    #[error("chunk does not start at the upload's offset {offset}")]
    ChunkOutOfOrder { location: String, offset: u64 },
    /// A blob `Range` request outside the blob.
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("request body: {0}")]
    Body(String),
    #[error("bad GC request: {0}")]
    GcRequest(String),
    #[error("bad query parameter: {0}")]
    BadQuery(String),

    // Our own failures: logged, and answered as 500 UNKNOWN without the cause.
    #[error("SQLite: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sqlite(#[from] plumbing::sqlite::SqliteError),
    #[error("a blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("cannot draw a random upload id: {0}")]
    Random(getrandom::Error),
    #[error("inconsistent registry metadata: {0}")]
    Inconsistent(String),
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

    pub fn status(&self) -> StatusCode {
        self.wire().0
    }

    /// A write that found no room on the volume: a file's, or SQLite's.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => plumbing::disk::is_full(source),
            Error::Db(error) => plumbing::disk::sqlite_is_full(error),
            _ => false,
        }
    }

    /// Status, distribution-spec code and detail: the whole mapping to the wire, in one table.
    fn wire(&self) -> (StatusCode, &'static str, Value) {
        use StatusCode as S;
        match self {
            Error::BlobUnknown(d) => (S::NOT_FOUND, "BLOB_UNKNOWN", json!({"digest": d})),
            Error::BlobUploadInvalid(_) | Error::Body(_) => {
                (S::BAD_REQUEST, "BLOB_UPLOAD_INVALID", Value::Null)
            }
            Error::BlobUploadUnknown => (S::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", Value::Null),
            Error::DigestInvalid(_) => (S::BAD_REQUEST, "DIGEST_INVALID", Value::Null),
            Error::ManifestBlobUnknown(d) => (
                S::BAD_REQUEST,
                "MANIFEST_BLOB_UNKNOWN",
                json!({"digest": d}),
            ),
            Error::ManifestInvalid(_) | Error::TagInvalid(_) => {
                (S::BAD_REQUEST, "MANIFEST_INVALID", Value::Null)
            }
            Error::ManifestTooLarge { limit, .. } => (
                S::PAYLOAD_TOO_LARGE,
                "MANIFEST_INVALID",
                json!({"limit": limit}),
            ),
            Error::ManifestUnknown => (S::NOT_FOUND, "MANIFEST_UNKNOWN", Value::Null),
            Error::NameInvalid(_) => (S::BAD_REQUEST, "NAME_INVALID", Value::Null),
            Error::NameUnknown => (S::NOT_FOUND, "NAME_UNKNOWN", Value::Null),
            Error::SizeInvalid(_) => (S::BAD_REQUEST, "SIZE_INVALID", Value::Null),
            Error::Unsupported(_) => (S::NOT_FOUND, "UNSUPPORTED", Value::Null),
            Error::MethodNotAllowed(_) => (S::METHOD_NOT_ALLOWED, "UNSUPPORTED", Value::Null),
            Error::ChunkOutOfOrder { .. } => {
                (S::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID", Value::Null)
            }
            Error::RangeNotSatisfiable { .. } => {
                (S::RANGE_NOT_SATISFIABLE, "BLOB_UNKNOWN", Value::Null)
            }
            Error::GcRequest(_) | Error::BadQuery(_) => {
                (S::BAD_REQUEST, "UNSUPPORTED", Value::Null)
            }
            full if full.is_disk_full() => (S::INSUFFICIENT_STORAGE, "UNKNOWN", Value::Null),
            Error::Db(_)
            | Error::Io { .. }
            | Error::Sqlite(_)
            | Error::Join(_)
            | Error::Random(_)
            | Error::Inconsistent(_)
            | Error::Socket(_) => (S::INTERNAL_SERVER_ERROR, "UNKNOWN", Value::Null),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code, detail) = self.wire();
        let message = if status == StatusCode::INSUFFICIENT_STORAGE {
            // The manager logs the volume's state once; a line per refused request would
            // flood the log of a full disk.
            debug!(error = %self, "request refused: no room on the volume");
            plumbing::disk::FULL_MESSAGE.to_owned()
        } else if status.is_server_error() {
            error!(error = %self, "request failed");
            "internal error; see registryd's log".to_owned()
        } else {
            self.to_string()
        };
        let body = json!({"errors": [{"code": code, "message": message, "detail": detail}]});
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match &self {
            Error::ChunkOutOfOrder { location, offset } => {
                if let Ok(value) = HeaderValue::from_str(location) {
                    headers.insert(header::LOCATION, value);
                }
                headers.insert(header::RANGE, crate::headers::upload_range(*offset));
            }
            Error::RangeNotSatisfiable { size } => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: Error) -> (StatusCode, Value) {
        let response = error.into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, serde_json::from_slice(&body).expect("JSON"))
    }

    #[tokio::test]
    async fn a_full_volume_is_507_with_a_message_that_says_so() {
        let write =
            |kind: std::io::ErrorKind| Error::io("write", "/data/registry/uploads/x")(kind.into());
        let sqlite_full = Error::Db(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        for full in [
            write(std::io::ErrorKind::StorageFull),
            write(std::io::ErrorKind::QuotaExceeded),
            sqlite_full,
        ] {
            let (status, body) = answer(full).await;
            assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
            assert_eq!(
                body,
                json!({"errors": [{
                    "code": "UNKNOWN",
                    "message": plumbing::disk::FULL_MESSAGE,
                    "detail": null,
                }]})
            );
        }
        let (status, body) = answer(write(std::io::ErrorKind::PermissionDenied)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body["errors"][0]["message"],
            "internal error; see registryd's log"
        );
    }
}
