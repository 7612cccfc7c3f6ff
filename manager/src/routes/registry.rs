//! The registry proxy (spec §3.14, protocols §4.4–4.5): `GET /v2` and `/v2/`, answered
//! here; every other `/v2/...` request, authorized and forwarded to registryd with its body
//! streamed both ways; and `POST /v1/registry/gc`, the admin's garbage collection (ours:
//! the public manager has none).
//!
//! Errors on `/v2` are the distribution spec's ([`OciError`]); registryd's own answers,
//! errors included, go back as registryd gave them.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use protocol::registryd::{GC_PATH, GcOptions, GcReport};
use tracing::warn;

use crate::auth::{Caller, Subject};
use crate::authz::{Op, Target, authorize};
use crate::error::{API_VERSION, API_VERSION_2, Error, OciError};
use crate::extract::OptionalJsonBody;
use crate::registry::Registry;
use crate::registry::access::{self, Need, Verdict};
use crate::registry::location::public_base;
use crate::registry::path::{Endpoint, Query, Resource};
use crate::registry::pulls::Pull;
use crate::registry::session;
use crate::registry::upstream::drop_hop_by_hop;
use crate::server::AppState;
use crate::wire::Platform;

/// The largest answer to a collection that is read: its report is a few numbers.
const GC_REPORT_LIMIT: usize = 64 * 1024;

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
    forward(&state, &caller, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn forward(
    state: &AppState,
    caller: &Caller,
    request: Request,
) -> Result<Response, OciError> {
    let registry = &state.registry;
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let query = Query::parse(parts.uri.query());
    let endpoint = Endpoint::parse(path);
    let mut keep_mount = true;
    match endpoint {
        // A signed upload session: the signature alone says the request may write there.
        Endpoint::In(repository, Resource::Upload(_))
            if matches!(parts.method, Method::PUT | Method::PATCH)
                && session::is_signed(&query) =>
        {
            registry
                .sessions
                .verify(path, repository, &query, unix_now())
                .map_err(|invalid| OciError::Denied(invalid.reason().into()))?;
            route(registry, repository)?;
        }
        Endpoint::Unknown => {
            caller.authenticate(&state.store).await?;
            return Err(OciError::Unsupported(path.to_owned()));
        }
        _ => {
            let subject = caller.authenticate(&state.store).await?;
            let need = access::need(&parts.method, endpoint);
            if let Need::Pull(repository) | Need::Push(repository) | Need::Delete(repository) = need
            {
                route(registry, repository)?;
            }
            permit(state, &subject, need).await?;
            if let Endpoint::In(_, Resource::UploadStart) = endpoint
                && let Some(from) = query.get("from")
            {
                keep_mount = may_mount_from(registry, &subject, &from);
            }
        }
    }
    let forwarded_query = query.without(|name| {
        session::is_session_param(name) || (!keep_mount && matches!(name, "mount" | "from"))
    });
    let target = match forwarded_query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let response = registry
        .upstream
        .send(parts.method, &target, &parts.headers, body)
        .await
        .map_err(|error| {
            warn!(%error, "registry request not forwarded");
            OciError::Unavailable
        })?;
    let base = public_base(&parts.headers, &state.base_url);
    Ok(answer(registry, response, &base))
}

/// 404 `NAME_UNKNOWN` unless `repository` is the embedded registry's. Routes to a cloud
/// registry exist for `GET /v1/build-config`; this manager does not proxy them.
fn route(registry: &Registry, repository: &str) -> Result<(), OciError> {
    match registry.routes.route(repository) {
        Some(Platform::Local) => Ok(()),
        Some(platform) => Err(OciError::NameUnknown(format!(
            "Repository '{repository}' is routed to the {platform} registry, which this manager does not proxy"
        ))),
        None => Err(OciError::NameUnknown(format!(
            "No registry is configured for repository '{repository}'"
        ))),
    }
}

/// Whether `subject` may do what the request needs; a deployment's release is read for it.
async fn permit(state: &AppState, subject: &Subject, need: Need<'_>) -> Result<(), OciError> {
    let (deployment_id, repository) = match access::verdict(subject, need) {
        Verdict::Allow => return Ok(()),
        Verdict::Deny(reason) => return Err(OciError::Denied(reason.into())),
        Verdict::IfReleaseReferences {
            deployment_id,
            repository,
        } => (deployment_id, repository),
    };
    match state
        .registry
        .pulls
        .check(&state.store, deployment_id, repository)
        .await?
    {
        Pull::Allowed => Ok(()),
        Pull::NotReferenced => Err(OciError::Denied(
            format!(
                "Deployment '{deployment_id}' may not pull '{repository}': its release does not reference it"
            )
            .into(),
        )),
        Pull::NoDeployment => Err(OciError::NameUnknown(format!(
            "Deployment '{deployment_id}' not found"
        ))),
        Pull::NoRelease => Err(OciError::NameUnknown(format!(
            "Deployment '{deployment_id}' has no release to pull from"
        ))),
    }
}

/// A cross-repository mount (`?mount=<digest>&from=<name>`) reads `from`: the caller must be
/// allowed to pull from it, or the mount is left out and registryd starts an ordinary upload,
/// which the client then fills, as the distribution spec lets a registry do.
fn may_mount_from(registry: &Registry, subject: &Subject, from: &str) -> bool {
    registry.routes.route(from) == Some(Platform::Local)
        && access::verdict(subject, Need::Pull(from)) == Verdict::Allow
}

/// registryd's answer, streamed, without its connection's headers and with its `Location`
/// made public.
fn answer(registry: &Registry, response: hyper::Response<Incoming>, base: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    drop_hop_by_hop(&mut parts.headers);
    let location = parts
        .headers
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(|location| registry.public_location(location, base, unix_now()));
    if let Some(value) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        parts.headers.insert(LOCATION, value);
    }
    Response::from_parts(parts, Body::new(body))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
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
    let mut headers = HeaderMap::new();
    let body = match body.value {
        Some(_) => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Body::from(body.bytes)
        }
        None => Body::empty(),
    };
    let response = state
        .registry
        .upstream
        .send(Method::POST, GC_PATH, &headers, body)
        .await
        .map_err(|error| {
            warn!(%error, "garbage collection not started");
            Error::RegistryUnavailable
        })?;
    let status = response.status();
    let bytes = axum::body::to_bytes(Body::new(response.into_body()), GC_REPORT_LIMIT)
        .await
        .map_err(|error| {
            warn!(%error, "garbage collection's answer cut off");
            Error::RegistryUnavailable
        })?;
    if status == StatusCode::OK {
        return Ok(Json(serde_json::from_slice(&bytes)?));
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if status.is_client_error() {
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|body| body["errors"][0]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        return Err(Error::RegistryRefused(message));
    }
    Err(Error::RegistryFailed { status, body: text })
}
