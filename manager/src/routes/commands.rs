//! The commands API (spec manager-api.md §3.12, protocols.md §1.4): each call is
//! authenticated and authorized here, in the public manager's order (body, token, command or
//! deployment 404, 403), and then forwarded to commandd with the facts it needs.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use http_body_util::{BodyExt, Limited};
use protocol::commandd::{self, MAX_WAIT_SECONDS, OPERATOR_TARGET, Owner, Principal};
use protocol::commands::signing;
use protocol::commands::{
    BlobKind, CommandResponse, CreateCommandRequest, LeaseRequest, StorePayloadRequest,
    UploadCompleteRequest,
};

use crate::Error;
use crate::auth::{Caller, Subject};
use crate::authz::{Op, Target, authorize};
use crate::commands::{Failure, facts};
use crate::extract::{JsonBody, PathParams, QueryPairs};
use crate::routes::deployments::load;
use crate::server::AppState;
use crate::store::deployments::Deployment;

type Answer = Result<Response, Failure>;

/// The largest body a storage URL takes (params and responses beyond the inline limit).
const STORAGE_LIMIT: usize = 64 * 1024 * 1024;

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

/// `waitSeconds`, the long-poll extension: absent (or 0) answers at once.
fn wait_seconds(query: &QueryPairs) -> Result<Option<u64>, Error> {
    query
        .first("waitSeconds")
        .map(|value| {
            value.parse::<u64>().map_err(|_| {
                Error::BadRequest(format!(
                    "waitSeconds must be a whole number of seconds up to {MAX_WAIT_SECONDS}"
                ))
            })
        })
        .transpose()
        .map(|seconds| seconds.filter(|s| *s > 0).map(|s| s.min(MAX_WAIT_SECONDS)))
}

/// The command's deployment, loaded and authorized for `op`: the command's 404 first, then
/// the deployment's, then the 403.
async fn command_deployment(
    state: &AppState,
    subject: &Subject,
    id: &str,
    op: Op,
) -> Result<(Owner, Deployment), Failure> {
    let owner: Owner = state
        .commands
        .read(
            state
                .commands
                .send(
                    Method::GET,
                    &format!("/commands/{}/owner", segment(id)),
                    None,
                )
                .await?,
        )
        .await?;
    let deployment = load(state, subject, owner.deployment_id.clone(), op).await?;
    Ok((owner, deployment))
}

/// A path segment as the client sent it, made safe to put back into a path.
fn segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `POST /v1/commands`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateCommandRequest>,
) -> Answer {
    let subject = caller.authenticate(&state.store).await?;
    let deployment = load(
        &state,
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
        && plumbing::clock::parse_rfc3339(deadline).is_none()
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
    Ok(state
        .commands
        .send_json(Method::POST, "/commands", &body)
        .await?)
}

/// `GET /v1/commands/{id}`, with the `waitSeconds` extension.
pub async fn status(
    State(state): State<AppState>,
    subject: Subject,
    PathParams(id): PathParams<String>,
    query: QueryPairs,
) -> Answer {
    let wait = wait_seconds(&query)?;
    command_deployment(&state, &subject, &id, Op::ReadCommand).await?;
    let now = format!("/commands/{}", segment(&id));
    let commands = &state.commands;
    Ok(match wait {
        None => commands.send(Method::GET, &now, None).await?,
        Some(seconds) => {
            let waiting = format!("{now}?waitSeconds={seconds}");
            commands
                .send_waiting(
                    commands.send(Method::GET, &waiting, None),
                    commands.send(Method::GET, &now, None),
                )
                .await?
        }
    })
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
    Ok(state.commands.send_json(Method::POST, &path, &body).await?)
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
        let now = unix_now();
        if !signing::verify_response_token(state.commands.key(), &id, token, expires, now) {
            return Err(Error::Unauthorized(BAD_RESPONSE_TOKEN).into());
        }
        Principal::ResponseToken
    };
    let path = format!("/commands/{}/response", segment(&id));
    let body = commandd::Submit {
        principal,
        response,
    };
    Ok(state.commands.send_json(Method::PUT, &path, &body).await?)
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
        Err(Failure::Sidecar(unknown)) if unknown.status() == 404 => {
            authorize(&subject, Op::WriteCommandPayload, Target::Nothing)?;
        }
        Err(other) => return Err(other),
    }
    let path = format!("/commands/{}/payload", segment(&id));
    Ok(state.commands.send(Method::GET, &path, None).await?)
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
    let owner = state
        .commands
        .send(
            Method::GET,
            &format!("/commands/{}/owner", segment(&id)),
            None,
        )
        .await?;
    if owner.status() == 200 {
        let owner: Owner = state.commands.read(owner).await?;
        if owner.target.resource_id == OPERATOR_TARGET {
            return Err(Error::forbidden("Access denied").into());
        }
    }
    let path = format!("/commands/{}/payload", segment(&id));
    Ok(state
        .commands
        .send_json(Method::PUT, &path, &request)
        .await?)
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
    let subject = caller.authenticate(&state.store).await?;
    load(
        &state,
        &subject,
        request.deployment_id.clone(),
        Op::LeaseCommands,
    )
    .await?;
    let wait = match wait_in_body {
        Some(value) => Some(value.as_u64().ok_or_else(|| Error::InvalidBody {
            field: "waitSeconds".into(),
            reason: "expected a whole number of seconds".into(),
        })?)
        .filter(|s| *s > 0)
        .map(|s| s.min(MAX_WAIT_SECONDS)),
        None => wait_seconds(&query)?,
    };
    let principal = principal_of(&subject);
    let waiting = commandd::Acquire {
        principal: principal.clone(),
        request: request.clone(),
        wait_seconds: wait,
    };
    let commands = &state.commands;
    Ok(match wait {
        None => {
            commands
                .send_json(Method::POST, "/leases", &waiting)
                .await?
        }
        Some(_) => {
            let now = commandd::Acquire {
                principal,
                request,
                wait_seconds: None,
            };
            commands
                .send_waiting(
                    commands.send_json(Method::POST, "/leases", &waiting),
                    commands.send_json(Method::POST, "/leases", &now),
                )
                .await?
        }
    })
}

/// `POST /v1/commands/leases/{leaseId}/release`: by whoever may act on the deployment that
/// holds the lease. A body, which clients send, is ignored.
pub async fn release(
    State(state): State<AppState>,
    subject: Subject,
    PathParams(lease_id): PathParams<String>,
) -> Answer {
    let owner: Owner = state
        .commands
        .read(
            state
                .commands
                .send(
                    Method::GET,
                    &format!("/leases/{}/owner", segment(&lease_id)),
                    None,
                )
                .await?,
        )
        .await?;
    load(&state, &subject, owner.deployment_id, Op::LeaseCommands).await?;
    let path = format!("/leases/{}/release", segment(&lease_id));
    Ok(state.commands.send(Method::POST, &path, None).await?)
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
        state.commands.key(),
        method.as_str(),
        &id,
        kind,
        signature,
        expires,
        unix_now(),
    ) {
        return Err(Error::Unauthorized(BAD_STORAGE_SIGNATURE).into());
    }
    let path = format!("/storage/{}/{}", segment(&id), kind.as_str());
    let body = if method == Method::PUT {
        let bytes = Limited::new(request.into_body(), STORAGE_LIMIT)
            .collect()
            .await
            .map_err(|_| Error::PayloadTooLarge {
                limit: STORAGE_LIMIT,
            })?
            .to_bytes();
        Some(bytes)
    } else {
        None
    };
    Ok(state.commands.send_raw(method, &path, body).await?)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
