//! `POST /_alien/commands`: a pushed command envelope, checked in the public runtime's order,
//! run as an `ArcCommand` task (one at a time, within its budget) and answered to the
//! manager at the envelope's `submitResponseUrl`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::header;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use protocol::commands::{
    BodySpec, CommandResponse, Envelope, PROTOCOL, PresignedBackend, PresignedRequest, TargetType,
};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::{Hub, TaskFailure};
use crate::proto::send_task_result_request::Result as TaskResult;
use crate::proto::{ArcCommand, Task, task};
use crate::proxy::{Body, CONNECT_TIMEOUT, text};

/// The largest envelope taken, as the public runtime's JSON extractor allows.
const MAX_ENVELOPE_BYTES: usize = 2 * 1024 * 1024;

/// How long the submission of one response may take, retries included.
const SUBMIT_BUDGET: Duration = Duration::from_secs(30);

/// The first and the longest pause between two submission attempts.
const SUBMIT_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// One storage transfer (params download, response upload) at most.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the runtime knows to check a push against, from its config.
#[derive(Debug, Clone)]
pub struct Identity {
    pub token: Option<String>,
    pub deployment_id: String,
    pub worker_id: String,
    pub timeout: Duration,
}

#[derive(Debug)]
pub struct Commands {
    hub: Arc<Hub>,
    identity: Identity,
    in_flight: Mutex<HashSet<String>>,
    /// One command runs at a time; waiting for it uses up the command's budget.
    gate: Semaphore,
    /// Accepted commands, which a stop lets finish.
    accepted: TaskTracker,
    stopping: CancellationToken,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// What running a command came to, before the success body is placed inline or in storage.
enum Outcome {
    Success(Vec<u8>),
    Failed(CommandResponse),
}

fn expired() -> Outcome {
    Outcome::Failed(CommandResponse::error(
        "COMMAND_EXPIRED",
        "Command budget was used up before it could be delivered to the worker",
    ))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Commands {
    pub fn new(hub: Arc<Hub>, identity: Identity, stopping: CancellationToken) -> Commands {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Commands {
            hub,
            identity,
            in_flight: Mutex::default(),
            gate: Semaphore::new(1),
            accepted: TaskTracker::new(),
            stopping,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Resolves once every accepted command has been run and answered.
    pub async fn finish_accepted(&self) {
        self.accepted.close();
        self.accepted.wait().await;
    }

    /// Checks a push in the public runtime's order: the body first, then whether push is on,
    /// the bearer, the envelope, the target, the stop, a duplicate.
    pub async fn accept(self: &Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let received = Instant::now();
        let (parts, body) = request.into_parts();
        let json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !json {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected request with `Content-Type: application/json`",
            );
        }
        let bytes = match Limited::new(body, MAX_ENVELOPE_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Failed to buffer the request body: length limit exceeded",
                );
            }
            Err(_) => return text(StatusCode::BAD_REQUEST, "Failed to read body"),
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return text(
                StatusCode::BAD_REQUEST,
                "Failed to parse the request body as JSON",
            );
        };
        let parsed = serde_json::from_value::<Envelope>(value)
            .ok()
            .and_then(|envelope| {
                let deadline = match &envelope.deadline {
                    None => None,
                    Some(text) => Some(OffsetDateTime::parse(text, &Rfc3339).ok()?),
                };
                Some((envelope, deadline))
            });
        let Some((envelope, deadline)) = parsed else {
            return text(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Failed to deserialize the JSON body into the target type",
            );
        };
        let Some(token) = &self.identity.token else {
            return text(StatusCode::NOT_FOUND, "");
        };
        let expected = format!("Bearer {token}");
        let authorized = parts
            .headers
            .get(header::AUTHORIZATION)
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())));
        if !authorized {
            return text(StatusCode::UNAUTHORIZED, "");
        }
        if envelope.protocol != PROTOCOL
            || envelope.command_id.is_empty()
            || envelope.command.is_empty()
            || envelope.target.resource_id.is_empty()
            || envelope.attempt == 0
        {
            return text(StatusCode::BAD_REQUEST, "Invalid command envelope");
        }
        if envelope.deployment_id != self.identity.deployment_id
            || envelope.target.resource_type != TargetType::Worker
            || envelope.target.resource_id != self.identity.worker_id
        {
            return text(StatusCode::FORBIDDEN, "Command is not for this worker");
        }
        if self.stopping.is_cancelled() {
            return text(StatusCode::SERVICE_UNAVAILABLE, "Runtime is shutting down");
        }
        if !lock(&self.in_flight).insert(envelope.command_id.clone()) {
            tracing::info!(
                command_id = envelope.command_id,
                "already running; not run twice"
            );
            return text(StatusCode::ACCEPTED, "");
        }
        let ends = received + self.budget(deadline);
        let commands = self.clone();
        self.accepted.spawn(async move {
            let id = envelope.command_id.clone();
            let outcome = commands.run(&envelope, ends).await;
            commands.submit(&envelope, outcome).await;
            lock(&commands.in_flight).remove(&id);
        });
        text(StatusCode::ACCEPTED, "")
    }

    /// `min(timeoutSeconds, deadline − now)`, fixed at receipt.
    fn budget(&self, deadline: Option<OffsetDateTime>) -> Duration {
        let Some(deadline) = deadline else {
            return self.identity.timeout;
        };
        let left = deadline - OffsetDateTime::now_utc();
        Duration::try_from(left)
            .unwrap_or(Duration::ZERO)
            .min(self.identity.timeout)
    }

    async fn run(&self, envelope: &Envelope, ends: Instant) -> Outcome {
        let command_id = &envelope.command_id;
        let Ok(Ok(_permit)) = tokio::time::timeout_at(ends, self.gate.acquire()).await else {
            return expired();
        };
        let params = match tokio::time::timeout_at(ends, self.params(&envelope.params)).await {
            Err(_) => return expired(),
            Ok(Err(failed)) => return Outcome::Failed(failed),
            Ok(Ok(params)) => params,
        };
        let left = ends.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return expired();
        }
        let handling = &envelope.response_handling;
        let task = Task {
            task_id: command_id.clone(),
            payload: Some(task::Payload::ArcCommand(ArcCommand {
                command_id: command_id.clone(),
                command_name: envelope.command.clone(),
                params,
                attempt: envelope.attempt,
                deadline: envelope
                    .deadline
                    .as_deref()
                    .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
                    .map(|at| prost_types::Timestamp {
                        seconds: at.unix_timestamp(),
                        nanos: i32::try_from(at.nanosecond()).unwrap_or(0),
                    }),
                response_url: handling.submit_response_url.clone(),
                storage_upload_url: match &handling.storage_upload_request.backend {
                    PresignedBackend::Http { url, .. } => url.clone(),
                    PresignedBackend::Local { file_path, .. } => format!("local://{file_path}"),
                },
                max_inline_bytes: handling.max_inline_bytes,
            })),
        };
        tracing::info!(command_id, command = envelope.command, "running a command");
        match self.hub.run_task(task, left).await {
            Ok(TaskResult::Success(success)) => Outcome::Success(success.response_data),
            Ok(TaskResult::Error(error)) => Outcome::Failed(CommandResponse::Error {
                code: error.code,
                message: error.message,
                details: None,
            }),
            Err(
                failure
                @ (TaskFailure::NoSubscriber | TaskFailure::Timeout | TaskFailure::NoResult),
            ) => Outcome::Failed(CommandResponse::error(
                "PROCESSING_FAILED",
                &format!("Command processing failed: {failure}"),
            )),
        }
    }

    /// The decoded params: inline base64, or fetched from storage.
    async fn params(&self, params: &BodySpec) -> Result<Vec<u8>, CommandResponse> {
        match params {
            BodySpec::Inline { inline_base64 } => BASE64.decode(inline_base64).map_err(|e| {
                CommandResponse::error("INVALID_ENVELOPE", &format!("params are not base64: {e}"))
            }),
            BodySpec::Storage {
                storage_get_request: Some(request),
                ..
            } => self
                .storage(request, Bytes::new())
                .await
                .map(|body| body.to_vec())
                .map_err(|e| {
                    CommandResponse::error(
                        "STORAGE_OPERATION_FAILED",
                        &format!("cannot fetch the params: {e}"),
                    )
                }),
            BodySpec::Storage { .. } => Err(CommandResponse::error(
                "INVALID_ENVELOPE",
                "params in storage come without a storageGetRequest",
            )),
        }
    }

    /// Performs a presigned HTTP request and returns its body on a 2xx.
    async fn storage(&self, request: &PresignedRequest, body: Bytes) -> Result<Bytes, String> {
        let PresignedBackend::Http {
            url,
            method,
            headers,
        } = &request.backend
        else {
            return Err("only HTTP storage is reachable from the runtime".into());
        };
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let headers = headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let (status, answer) = self
            .send(method, url, headers, body, STORAGE_TIMEOUT)
            .await?;
        if status.is_success() {
            Ok(answer)
        } else {
            Err(format!("storage answered {status}"))
        }
    }

    async fn send<'a>(
        &self,
        method: Method,
        url: &str,
        headers: impl Iterator<Item = (&'a str, &'a str)>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), String> {
        let uri: Uri = url.parse().map_err(|_| "not a URL".to_owned())?;
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let exchange = async {
            let answer = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = answer.status();
            let body = answer
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| "timed out".to_owned())?
    }

    /// Answers the manager: large successes go to storage first; the answer is retried on
    /// transport errors, 408, 429 and 5xx within [`SUBMIT_BUDGET`]. A failure is only logged:
    /// the command then ends by its deadline.
    async fn submit(&self, envelope: &Envelope, outcome: Outcome) {
        let command_id = &envelope.command_id;
        let handling = &envelope.response_handling;
        let response = match outcome {
            Outcome::Success(data) if data.len() as u64 > handling.max_inline_bytes => {
                let size = data.len() as u64;
                match self
                    .storage(&handling.storage_upload_request, Bytes::from(data))
                    .await
                {
                    Ok(_) => CommandResponse::Success {
                        response: BodySpec::Storage {
                            size: Some(size),
                            storage_get_request: None,
                            storage_put_used: Some(true),
                        },
                    },
                    Err(e) => CommandResponse::error(
                        "STORAGE_OPERATION_FAILED",
                        &format!("cannot upload the response: {e}"),
                    ),
                }
            }
            Outcome::Success(data) => CommandResponse::Success {
                response: BodySpec::Inline {
                    inline_base64: BASE64.encode(data),
                },
            },
            Outcome::Failed(response) => response,
        };
        let body = match serde_json::to_vec(&response) {
            Ok(body) => Bytes::from(body),
            Err(error) => {
                tracing::error!(command_id, %error, "cannot encode a command response");
                return;
            }
        };
        let bearer = self
            .identity
            .token
            .as_ref()
            .map(|token| format!("Bearer {token}"));
        let ends = Instant::now() + SUBMIT_BUDGET;
        let mut pause = SUBMIT_BACKOFF.0;
        loop {
            let left = ends.saturating_duration_since(Instant::now());
            let mut headers = vec![(header::CONTENT_TYPE.as_str(), "application/json")];
            if let Some(bearer) = &bearer {
                headers.push((header::AUTHORIZATION.as_str(), bearer.as_str()));
            }
            let attempt = self
                .send(
                    Method::PUT,
                    &handling.submit_response_url,
                    headers.into_iter(),
                    body.clone(),
                    left,
                )
                .await;
            let retry = match &attempt {
                Ok((status, _))
                    if status.is_success()
                        || *status == StatusCode::CONFLICT
                        || *status == StatusCode::GONE =>
                {
                    tracing::info!(command_id, %status, "command response submitted");
                    return;
                }
                Ok((status, _)) => {
                    *status == StatusCode::REQUEST_TIMEOUT
                        || *status == StatusCode::TOO_MANY_REQUESTS
                        || status.is_server_error()
                }
                Err(_) => true,
            };
            let outcome = match &attempt {
                Ok((status, _)) => status.to_string(),
                Err(error) => error.clone(),
            };
            if !retry || Instant::now() + pause >= ends {
                tracing::warn!(command_id, outcome, "cannot submit the command response");
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(SUBMIT_BACKOFF.1);
        }
    }
}
