//! `POST /gc` (not under `/v2`): runs a collection and answers what it freed.
//!
//! The body is empty or a JSON object `{"gracePeriodSecs", "deleteUntagged",
//! "uploadTtlSecs"}` (all optional); the answer is `200` with the `protocol::registryd::GcReport` as
//! JSON. A second request while one runs waits for it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::json_response;
use crate::error::Error;
use protocol::registryd::GcOptions;

use crate::gc;
use crate::state::Registry;

pub async fn collect(State(registry): State<Arc<Registry>>, body: Bytes) -> Response {
    let run = async {
        let options: GcOptions = if body.iter().all(u8::is_ascii_whitespace) {
            GcOptions::default()
        } else {
            serde_json::from_slice(&body).map_err(|e| Error::GcRequest(e.to_string()))?
        };
        let report = gc::collect(&registry, options).await?;
        let body =
            serde_json::to_string(&report).map_err(|e| Error::Inconsistent(e.to_string()))?;
        Ok::<_, Error>(json_response(StatusCode::OK, "application/json", body))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}
