//! commandd's socket API (see `protocol::commandd` for what crosses it). Handlers only translate
//! between HTTP and [`Commands`]; errors become the envelope in [`crate::error`].

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};

use protocol::commandd::{Acquire, Create, MAX_WAIT_SECONDS, Owner, Submit, UploadComplete};
use protocol::commands::{
    BlobKind, CommandStatusResponse, CreateCommandResponse, LeaseResponse, PayloadResponse,
    StorePayloadRequest, UploadCompleteResponse,
};
use serde::Deserialize;

use crate::Error;
use crate::commands::Commands;

/// The JSON bodies the manager forwards, which it limits before that. Storage bodies are
/// streamed, not read whole, and counted against `STORAGE_BODY_LIMIT` as they come.
pub const BODY_LIMIT: usize = 64 * 1024 * 1024;

pub fn router(commands: Arc<Commands>) -> Router {
    Router::new()
        .route("/commands", post(create))
        .route("/commands/{id}", get(status))
        .route("/commands/{id}/owner", get(owner))
        .route("/commands/{id}/upload-complete", post(upload_complete))
        .route("/commands/{id}/response", put(submit))
        .route("/commands/{id}/payload", get(payload).put(store_payload))
        .route("/leases", post(acquire))
        .route("/leases/{id}/owner", get(lease_owner))
        .route("/leases/{id}/release", post(release))
        .route("/storage/{id}/{kind}", get(get_blob).put(put_blob))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(commands)
}

type Shared = State<Arc<Commands>>;

/// A wait as asked for, cut to [`MAX_WAIT_SECONDS`]; `None` (or 0) answers at once.
fn wait(seconds: Option<u64>) -> Option<Duration> {
    seconds
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s.min(MAX_WAIT_SECONDS)))
}

async fn create(
    State(commands): Shared,
    Json(body): Json<Create>,
) -> Result<Json<CreateCommandResponse>, Error> {
    Ok(Json(
        commands
            .create(&body.principal, &body.deployment, body.request)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WaitQuery {
    wait_seconds: Option<u64>,
}

async fn status(
    State(commands): Shared,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Json<CommandStatusResponse>, Error> {
    Ok(Json(commands.status(&id, wait(query.wait_seconds)).await?))
}

async fn owner(State(commands): Shared, Path(id): Path<String>) -> Result<Json<Owner>, Error> {
    Ok(Json(commands.owner(&id).await?))
}

async fn upload_complete(
    State(commands): Shared,
    Path(id): Path<String>,
    Json(body): Json<UploadComplete>,
) -> Result<Json<UploadCompleteResponse>, Error> {
    Ok(Json(
        commands
            .upload_complete(&id, &body.deployment, body.request.size)
            .await?,
    ))
}

async fn submit(
    State(commands): Shared,
    Path(id): Path<String>,
    Json(body): Json<Submit>,
) -> Result<StatusCode, Error> {
    commands.submit(&id, &body.principal, body.response).await?;
    Ok(StatusCode::OK)
}

async fn payload(
    State(commands): Shared,
    Path(id): Path<String>,
) -> Result<Json<PayloadResponse>, Error> {
    Ok(Json(commands.payload(&id).await?))
}

async fn store_payload(
    State(commands): Shared,
    Path(id): Path<String>,
    Json(body): Json<StorePayloadRequest>,
) -> Result<StatusCode, Error> {
    commands.store_payload(&id, body).await?;
    Ok(StatusCode::OK)
}

async fn acquire(
    State(commands): Shared,
    Json(body): Json<Acquire>,
) -> Result<Json<LeaseResponse>, Error> {
    Ok(Json(
        commands
            .acquire(&body.principal, &body.request, wait(body.wait_seconds))
            .await?,
    ))
}

async fn lease_owner(
    State(commands): Shared,
    Path(id): Path<String>,
) -> Result<Json<Owner>, Error> {
    Ok(Json(commands.lease_owner(&id).await?))
}

async fn release(State(commands): Shared, Path(id): Path<String>) -> Result<StatusCode, Error> {
    commands.release(&id).await?;
    Ok(StatusCode::OK)
}

/// The storage URL a `PUT` came to, by its signature, which the manager has verified.
#[derive(Debug, Deserialize)]
struct StorageUrl {
    signature: String,
}

async fn put_blob(
    State(commands): Shared,
    Path((id, kind)): Path<(String, BlobKind)>,
    Query(url): Query<StorageUrl>,
    body: Body,
) -> Result<StatusCode, Error> {
    commands.upload(&id, kind, url.signature, body).await?;
    Ok(StatusCode::OK)
}

async fn get_blob(
    State(commands): Shared,
    Path((id, kind)): Path<(String, BlobKind)>,
) -> Result<Response, Error> {
    let (length, body) = commands.download(&id, kind).await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
        ],
        body,
    )
        .into_response())
}
