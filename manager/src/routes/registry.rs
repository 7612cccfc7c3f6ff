//! The registry's routes: `GET /v2` and `/v2/`, answered here; every other `/v2/...`
//! request, handed to the registry proxy ([`crate::registry::Proxy`]); and
//! `POST /v1/registry/gc`, the admin's garbage collection (ours: the public manager has
//! none).
//!
//! Errors on `/v2` are the distribution spec's ([`OciError`]); registryd's own answers,
//! errors included, go back as registryd gave them.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use protocol::registryd::{GcOptions, GcReport};

use crate::auth::Caller;
use crate::authz::{Op, Target, authorize};
use crate::error::{API_VERSION, API_VERSION_2, Error, OciError};
use crate::extract::OptionalJsonBody;
use crate::state::AppState;

/// `GET /v2` and `GET /v2/`: any valid token gets `{}`, as the public manager answers it
/// (`text/plain`); without one, the challenge.
pub async fn version_check(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, OciError> {
    caller.authenticate(&state.store).await?;
    Ok((
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (API_VERSION, API_VERSION_2),
        ],
        "{}",
    ))
}

/// Every other `/v2/...` request.
pub async fn proxy(State(state): State<AppState>, caller: Caller, request: Request) -> Response {
    state
        .registry
        .forward(&state.store, &state.base_url, &caller, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/registry/gc` (admin): runs registryd's garbage collection with the options in
/// the body (`{"gracePeriodSecs"?, "deleteUntagged"?, "uploadTtlSecs"?}`, or none) and
/// answers its report. A collection already running is waited for.
pub async fn collect_garbage(
    State(state): State<AppState>,
    caller: Caller,
    body: OptionalJsonBody<GcOptions>,
) -> Result<Json<GcReport>, Error> {
    let subject = caller.authenticate(&state.store).await?;
    authorize(&subject, Op::CollectRegistryGarbage, Target::Nothing)?;
    let report = state.registry.collect_garbage(body.value.as_ref()).await?;
    Ok(Json(report))
}
