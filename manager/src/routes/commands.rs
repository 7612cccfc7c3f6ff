//! The commands API (docs/compatibility.md, Commands): each call is authenticated and
//! authorized here, in the public manager's order (body, token, command or deployment 404,
//! 403), and then forwarded to commandd with the facts it needs.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plumbing::clock;
use plumbing::percent::encode as segment;
use protocol::commandd::{self, MAX_WAIT_SECONDS, OPERATOR_TARGET, Owner, Principal};
use protocol::commands::signing;
use protocol::commands::{
    BlobKind, CommandResponse, CreateCommandRequest, LeaseRequest, STORAGE_BODY_LIMIT,
    StorePayloadRequest, UploadCompleteRequest,
};
use serde::de::DeserializeOwned;

use crate::Error;
use crate::auth::{Caller, Subject};
use crate::authz::{Op, Target, authorize};
use crate::daemons::{Call, DaemonError};
use crate::extract::{JsonBody, PathParams, QueryPairs};
use crate::routes::wait;
use crate::services::commands::facts;
use crate::services::deployments::load;
use crate::state::AppState;
use crate::store::deployments::Deployment;

type Answer = Result<Response, Failure>;

/// A call that did not succeed: a failure of ours, or commandd's answer, which is passed on
/// as it is (it is already the public error envelope).
#[derive(Debug)]
pub enum Failure {
    Manager(Error),
    Commandd(Response),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Manager(error)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(error: serde_json::Error) -> Failure {
        Failure::Manager(error.into())
    }
}

impl From<DaemonError> for Failure {
    fn from(error: DaemonError) -> Failure {
        Failure::Manager(error.into())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Manager(error) => error.into_response(),
            Failure::Commandd(response) => response,
        }
    }
}

/// The largest answer of commandd's that is read rather than passed on: an owner.
const ANSWER_LIMIT: usize = 64 * 1024;

/// The largest body a storage URL takes (params and responses beyond the inline limit), as
/// the error reports it.
const STORAGE_LIMIT: usize = STORAGE_BODY_LIMIT as usize;

const NO_CREDENTIAL: &str =
    "Authorization required: provide a Bearer token or a valid response_token query parameter";
const BAD_RESPONSE_TOKEN: &str = "Invalid or expired response token";
const BAD_STORAGE_SIGNATURE: &str = "Invalid or expired storage URL signature";

fn principal_of(subject: &Subject) -> Principal {
    let role = serde_json::to_value(subject.role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Principal::Token {
        token_id: subject.token_id.clone(),
        role,
    }
}

/// The command's deployment, loaded and authorized for `op`: the command's 404 first, then
/// the deployment's, then the 403.
async fn command_deployment(
    state: &AppState,
    subject: &Subject,
    id: &str,
    op: Op,
) -> Result<(Owner, Deployment), Failure> {
    let owner: Owner = ask(state, Call::get(format!("/commands/{}/owner", segment(id)))).await?;
    let deployment = load(&state.store, subject, owner.deployment_id.clone(), op).await?;
    Ok((owner, deployment))
}

/// Sends `call` to commandd and passes its answer on as it is.
async fn forward(state: &AppState, call: Call) -> Answer {
    let response = state.daemons.commandd.send(call).await?;
    Ok(response.map(Body::new))
}

/// A long poll: commandd's answer to `waiting`, or, when the manager stops first, its answer
/// to `now` (the same call without waiting).
async fn forward_waiting(state: &AppState, waiting: Call, now: Call) -> Answer {
    tokio::select! {
        answer = forward(state, waiting) => answer,
        () = state.shutdown.cancelled() => forward(state, now).await,
    }
}

/// commandd's JSON answer of type `T`, or its error answer to pass on.
async fn ask<T: DeserializeOwned>(state: &AppState, call: Call) -> Result<T, Failure> {
    let commandd = &state.daemons.commandd;
    let response = commandd.send(call).await?;
    if response.status() != StatusCode::OK {
        return Err(Failure::Commandd(response.map(Body::new)));
    }
    let bytes = commandd.read(response, ANSWER_LIMIT).await?;
    Ok(serde_json::from_slice(&bytes).map_err(Error::from)?)
}

/// `POST /v1/commands`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateCommandRequest>,
) -> Answer {
    let subject = caller.authenticate(&state.store).await?;
    let deployment = load(
        &state.store,
        &subject,
        request.deployment_id.clone(),
        Op::DispatchCommand,
    )
    .await?;
    if request.target_resource_id.as_deref() == Some(OPERATOR_TARGET) {
        return Err(Error::forbidden(
            "Access denied: the operator target requires the operations capability",
        )
        .into());
    }
    if let Some(deadline) = &request.deadline
        && clock::parse_rfc3339(deadline).is_none()
    {
        return Err(Error::InvalidBody {
            field: "deadline".into(),
            reason: format!("not an RFC 3339 date-time: {deadline:?}"),
        }
        .into());
    }
    let body = commandd::Create {
        principal: principal_of(&subject),
        deployment: facts(&state.store, &deployment).await?,
        request,
    };
    forward(&state, Call::post("/commands").json(&body)?).await
}

/// `GET /v1/commands/{id}`, with the `waitSeconds` extension.
pub async fn status(
    State(state): State<AppState>,
    subject: Subject,
    PathParams(id): PathParams<String>,
    query: QueryPairs,
) -> Answer {
    let wait = wait::in_query(&query, MAX_WAIT_SECONDS)?;
    command_deployment(&state, &subject, &id, Op::ReadCommand).await?;
    let now = format!("/commands/{}", segment(&id));
    match wait {
        None => forward(&state, Call::get(now)).await,
        Some(seconds) => {
            let waiting = Call::get(format!("{now}?waitSeconds={seconds}"))
                .waiting(Duration::from_secs(seconds));
            forward_waiting(&state, waiting, Call::get(now)).await
        }
    }
}

/// `POST /v1/commands/{id}/upload-complete`.
pub async fn upload_complete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(request): JsonBody<UploadCompleteRequest>,
) -> Answer {
    let subject = caller.authenticate(&state.store).await?;
    let (_, deployment) = command_deployment(&state, &subject, &id, Op::DispatchCommand).await?;
    let body = commandd::UploadComplete {
        principal: principal_of(&subject),
        deployment: facts(&state.store, &deployment).await?,
        request,
    };
    let path = format!("/commands/{}/upload-complete", segment(&id));
    forward(&state, Call::post(path).json(&body)?).await
}

/// `PUT /v1/commands/{id}/response`: a bearer, or the signed `response_token` and `expires`
/// of the envelope's submit URL without one.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    PathParams(id): PathParams<String>,
    query: QueryPairs,
    JsonBody(response): JsonBody<CommandResponse>,
) -> Answer {
    let principal = if headers.contains_key(header::AUTHORIZATION) {
        let subject = caller.authenticate(&state.store).await?;
        command_deployment(&state, &subject, &id, Op::RespondToCommand).await?;
        principal_of(&subject)
    } else {
        let (Some(token), Some(expires)) = (query.first("response_token"), query.first("expires"))
        else {
            return Err(Error::Unauthorized(NO_CREDENTIAL).into());
        };
        let expires: i64 = expires
            .parse()
            .map_err(|_| Error::BadRequest("expires must be a Unix time in seconds".into()))?;
        let now = clock::now_secs();
        if !signing::verify_response_token(state.signing_key.as_bytes(), &id, token, expires, now) {
            return Err(Error::Unauthorized(BAD_RESPONSE_TOKEN).into());
        }
        Principal::ResponseToken
    };
    let path = format!("/commands/{}/response", segment(&id));
    let body = commandd::Submit {
        principal,
        response,
    };
    forward(&state, Call::new(Method::PUT, path).json(&body)?).await
}

/// `GET /v1/commands/{id}/payload`: read access to the command's deployment; a payload
/// without a command only for the admin.
pub async fn payload(
    State(state): State<AppState>,
    subject: Subject,
    PathParams(id): PathParams<String>,
) -> Answer {
    match command_deployment(&state, &subject, &id, Op::ReadCommand).await {
        Ok(_) => {}
        Err(Failure::Commandd(unknown)) if unknown.status() == 404 => {
            authorize(&subject, Op::WriteCommandPayload, Target::Nothing)?;
        }
        Err(other) => return Err(other),
    }
    forward(
        &state,
        Call::get(format!("/commands/{}/payload", segment(&id))),
    )
    .await
}

/// `PUT /v1/commands/{id}/payload`: the admin only, and never for the operator's target.
pub async fn store_payload(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(request): JsonBody<StorePayloadRequest>,
) -> Answer {
    let subject = caller.authenticate(&state.store).await?;
    authorize(&subject, Op::WriteCommandPayload, Target::Nothing)?;
    match ask::<Owner>(
        &state,
        Call::get(format!("/commands/{}/owner", segment(&id))),
    )
    .await
    {
        Ok(owner) if owner.target.resource_id == OPERATOR_TARGET => {
            return Err(Error::forbidden("Access denied").into());
        }
        // A payload stored before its command exists is the admin's to make.
        Ok(_) | Err(Failure::Commandd(_)) => {}
        Err(failure) => return Err(failure),
    }
    let path = format!("/commands/{}/payload", segment(&id));
    forward(&state, Call::new(Method::PUT, path).json(&request)?).await
}

/// `POST /v1/commands/leases`, with the `waitSeconds` extension (in the query or the body).
pub async fn acquire(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Answer {
    let wait_in_body = body.get("waitSeconds").cloned();
    let request: LeaseRequest =
        crate::extract::parse(&serde_json::to_vec(&body).map_err(Error::from)?)?;
    if let Some(problem) = request.problem() {
        return Err(Error::BadRequest(problem).into());
    }
    let subject = caller.authenticate(&state.store).await?;
    load(
        &state.store,
        &subject,
        request.deployment_id.clone(),
        Op::LeaseCommands,
    )
    .await?;
    let wait = match wait_in_body {
        Some(value) => wait::bounded(
            Some(value.as_u64().ok_or_else(|| Error::InvalidBody {
                field: "waitSeconds".into(),
                reason: "expected a whole number of seconds".into(),
            })?),
            MAX_WAIT_SECONDS,
        ),
        None => wait::in_query(&query, MAX_WAIT_SECONDS)?,
    };
    let principal = principal_of(&subject);
    let waiting = commandd::Acquire {
        principal: principal.clone(),
        request: request.clone(),
        wait_seconds: wait,
    };
    match wait {
        None => forward(&state, Call::post("/leases").json(&waiting)?).await,
        Some(seconds) => {
            let now = commandd::Acquire {
                principal,
                request,
                wait_seconds: None,
            };
            let waiting = Call::post("/leases")
                .json(&waiting)?
                .waiting(Duration::from_secs(seconds));
            forward_waiting(&state, waiting, Call::post("/leases").json(&now)?).await
        }
    }
}

/// `POST /v1/commands/leases/{leaseId}/release`: by whoever may act on the deployment that
/// holds the lease. A body, which clients send, is ignored.
pub async fn release(
    State(state): State<AppState>,
    subject: Subject,
    PathParams(lease_id): PathParams<String>,
) -> Answer {
    let owner: Owner = ask(
        &state,
        Call::get(format!("/leases/{}/owner", segment(&lease_id))),
    )
    .await?;
    load(
        &state.store,
        &subject,
        owner.deployment_id,
        Op::LeaseCommands,
    )
    .await?;
    forward(
        &state,
        Call::post(format!("/leases/{}/release", segment(&lease_id))),
    )
    .await
}

/// `GET`/`PUT /v1/commands/storage/{id}/{params|response}?expires=&signature=`: the local
/// backend's presigned URLs. The signature is the credential; no bearer is needed.
pub async fn storage(
    State(state): State<AppState>,
    PathParams((id, kind)): PathParams<(String, BlobKind)>,
    query: QueryPairs,
    request: Request,
) -> Answer {
    let method = request.method().clone();
    let (Some(signature), Some(expires)) = (query.first("signature"), query.first("expires"))
    else {
        return Err(Error::Unauthorized(BAD_STORAGE_SIGNATURE).into());
    };
    let expires: i64 = expires
        .parse()
        .map_err(|_| Error::BadRequest("expires must be a Unix time in seconds".into()))?;
    if !signing::verify_storage_signature(
        state.signing_key.as_bytes(),
        method.as_str(),
        &id,
        kind,
        signature,
        expires,
        clock::now_secs(),
    ) {
        return Err(Error::Unauthorized(BAD_STORAGE_SIGNATURE).into());
    }
    let path = format!("/storage/{}/{}", segment(&id), kind.as_str());
    if method != Method::PUT {
        return forward(&state, Call::new(method, path)).await;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > STORAGE_BODY_LIMIT) {
        return Err(Error::PayloadTooLarge {
            limit: STORAGE_LIMIT,
        }
        .into());
    }
    // The body streams through to commandd, which counts it against the limit as it writes
    // it to disk, and which is told the URL (by its signature) since each writes once.
    let call = Call::new(method, format!("{path}?signature={}", segment(signature)))
        .headers_from(request.headers(), &[header::CONTENT_LENGTH])
        .stream(request.into_body());
    forward(&state, call).await
}
