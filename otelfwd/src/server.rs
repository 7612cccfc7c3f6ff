//! otelfwd's routes on its socket: `POST /ingest/{signal}` and `GET /status` (`protocol::otelfwd`);
//! and the same ingest as a pull agent's OTLP/HTTP receiver ([`otlp_router`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State as Extract};
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use axum::routing::{get, post};
use plumbing::config::TelemetryConfig;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::decode::{self, Format, Limits};
use crate::error::IngestError;
use crate::queue::{Queue, QueueError};
use crate::stats::Counters;
use protocol::otelfwd::Signal;
use protocol::otelfwd::{Origin, STATUS_PATH, Status};

/// What a sender is told to wait before sending again into a full queue.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct State {
    queues: [Arc<Queue>; 3],
    counters: [Arc<Counters>; 3],
    limits: Limits,
    max_body: u64,
    forwarding: bool,
    queue_max_bytes_per_signal: u64,
    /// Bounds the requests being decoded at once, and so the memory they take.
    decoding: Arc<Semaphore>,
}

impl State {
    pub fn new(
        config: &TelemetryConfig,
        queues: [Arc<Queue>; 3],
        counters: [Arc<Counters>; 3],
    ) -> State {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        State {
            queues,
            counters,
            limits: Limits {
                max_decompressed: config.max_decompressed_bytes,
            },
            max_body: config.max_body_bytes,
            forwarding: config.otlp_endpoint.is_some(),
            queue_max_bytes_per_signal: config.queue_max_bytes / Signal::ALL.len() as u64,
            decoding: Arc::new(Semaphore::new(cpus * 2)),
        }
    }
}

pub fn router(state: State) -> Router {
    let body_limit = usize::try_from(state.max_body).unwrap_or(usize::MAX);
    Router::new()
        .route("/ingest/{signal}", post(ingest))
        .route(STATUS_PATH, get(status))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The OTLP/HTTP receiver of a pull agent, for the workloads on its machine: `POST
/// /v1/{logs,traces,metrics}` (protobuf or JSON, gzip or not), each request made durable in
/// the queue before `{"accepted":true}`, with the agent's deployment as its origin; `GET
/// /health`.
pub fn otlp_router(state: State, origin: Origin) -> Router {
    let body_limit = usize::try_from(state.max_body).unwrap_or(usize::MAX);
    let origin = Arc::new(origin);
    Router::new()
        .route(
            "/v1/{signal}",
            post(
                move |state: Extract<State>, signal: Path<String>, headers, body| {
                    let origin = Origin::clone(&origin);
                    async move { ingest(state, signal, Query(origin), headers, body).await }
                },
            ),
        )
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn ingest(
    Extract(state): Extract<State>,
    Path(signal): Path<String>,
    Query(origin): Query<Origin>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, IngestError> {
    let signal = Signal::from_name(&signal).ok_or(IngestError::UnknownSignal(signal))?;
    if origin.deployment_id.is_empty() {
        return Err(IngestError::InvalidOrigin("deployment_id is empty".into()));
    }
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let format = Format::from_content_type(header(CONTENT_TYPE))?;
    let gzip = decode::is_gzip(header(CONTENT_ENCODING))?;
    if body.len() as u64 > state.max_body {
        return Err(IngestError::TooLarge {
            limit: state.max_body,
        });
    }
    let decoded = {
        let _permit = state.decoding.acquire().await;
        let limits = state.limits;
        tokio::task::spawn_blocking(move || {
            decode::decode(signal, format, gzip, &body, limits, &origin)
        })
        .await??
    };
    let counters = &state.counters[signal.index()];
    if !decoded.empty {
        let pushed = state.queues[signal.index()]
            .push(decoded.payload, decoded.items)
            .await;
        match pushed {
            Ok(()) => {}
            Err(QueueError::Full { .. }) => {
                Counters::add(&counters.refused_full, 1);
                return Err(IngestError::QueueFull {
                    retry_after: FULL_RETRY_AFTER,
                });
            }
            // Only a request at the decompressed limit, grown by its attributes, can be larger
            // than a signal's whole queue (the configuration ensures the rest fit): waiting
            // would not help.
            Err(QueueError::TooLarge { .. }) => {
                return Err(IngestError::DecompressedTooLarge {
                    limit: state.limits.max_decompressed,
                });
            }
            Err(error) if error.is_disk_full() => return Err(IngestError::DiskFull(error)),
            Err(error) => return Err(IngestError::Queue(error)),
        }
    }
    Counters::add(&counters.accepted_records, 1);
    Counters::add(&counters.accepted_items, u64::from(decoded.items));
    Ok(Json(json!({ "accepted": true })))
}

async fn status(Extract(state): Extract<State>) -> Json<Status> {
    Json(Status {
        forwarding: state.forwarding,
        queue_max_bytes_per_signal: state.queue_max_bytes_per_signal,
        signals: Signal::ALL
            .into_iter()
            .map(|signal| {
                let queue = state.queues[signal.index()].stats();
                (signal, state.counters[signal.index()].status(queue))
            })
            .collect(),
    })
}
