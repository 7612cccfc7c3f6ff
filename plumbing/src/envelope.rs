//! The public manager's error body (`AlienError` JSON). Each daemon maps its typed error to
//! this once; handlers never build error responses by hand.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The code of [`ErrorEnvelope::insufficient_storage`].
pub const INSUFFICIENT_STORAGE: &str = "INSUFFICIENT_STORAGE";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorEnvelope {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub retryable: bool,
    pub internal: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status_code: Option<u16>,
}

impl ErrorEnvelope {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ErrorEnvelope {
            code: code.to_owned(),
            message: message.into(),
            context: None,
            hint: None,
            retryable: false,
            internal: false,
            http_status_code: Some(status.as_u16()),
        }
    }

    pub fn with_context(mut self, context: serde_json::Value) -> Self {
        self.context = Some(context);
        self
    }

    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// What a client sees of an internal failure: nothing of its cause, which goes to the log.
    pub fn internal() -> Self {
        ErrorEnvelope::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "GENERIC_ERROR",
            "Internal server error",
        )
    }

    /// A write refused because the server's volume is full: `507 Insufficient Storage`,
    /// which the client may send again once space is freed. It says nothing of where the
    /// server keeps its data; the operator reads that in the log and in `/health`.
    pub fn insufficient_storage() -> Self {
        ErrorEnvelope::new(
            StatusCode::INSUFFICIENT_STORAGE,
            INSUFFICIENT_STORAGE,
            crate::disk::FULL_MESSAGE,
        )
        .retryable()
    }

    fn status(&self) -> StatusCode {
        self.http_status_code
            .and_then(|code| StatusCode::from_u16(code).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ErrorEnvelope {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(self)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_keys_are_omitted_and_the_status_matches() {
        let envelope =
            ErrorEnvelope::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "Invalid token")
                .with_context(serde_json::json!({"reason": "Invalid token"}));
        let json = serde_json::to_value(&envelope).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "code": "UNAUTHORIZED",
                "message": "Invalid token",
                "context": {"reason": "Invalid token"},
                "retryable": false,
                "internal": false,
                "httpStatusCode": 401
            })
        );
        assert_eq!(envelope.into_response().status(), StatusCode::UNAUTHORIZED);
    }
}
