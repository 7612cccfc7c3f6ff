//! The commands protocol (spec `protocols.md` §1.2–§1.8): what each call does to a command.
//! State and leases go through the registry ([`crate::store::registry`]), whose every write
//! is conditional; payloads through the backend's two traits ([`crate::backend`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use plumbing::clock;
use protocol::commandd::{DeploymentFacts, OPERATOR_TARGET, Owner, Principal};
use protocol::commands::signing;
use protocol::commands::{
    BlobKind, BodySpec, CommandResponse, CommandState, CommandStatusResponse, CommandTarget,
    CreateCommandRequest, CreateCommandResponse, DeliveryMode, Envelope, INLINE_MAX_BYTES,
    LeaseInfo, LeaseRequest, LeaseResponse, Operation, PROTOCOL, PayloadResponse, PresignedBackend,
    ResponseHandling, StorageUpload, StorePayloadRequest, TargetType, UploadCompleteResponse,
};

use crate::backend::{Blobs, Kv};
use crate::key::KeyFile;
use crate::signals::{Signals, target_key};
use crate::store::Db;
use crate::store::registry::{self, Command, NewCommand};
use crate::{Error, ids, push};

/// A params or response document larger than this, serialized, goes to blob storage (§1.6).
const KV_VALUE_THRESHOLD: usize = 20_000;

/// Idempotency keys live a day (§1.4).
const IDEMPOTENCY_MS: i64 = 24 * 60 * 60 * 1000;

/// Leases handed out by one acquire at most, whatever `maxLeases` says.
const MAX_LEASES: u32 = 100;

#[derive(Debug, Clone)]
pub struct Commands {
    pub db: Db,
    pub kv: Arc<dyn Kv>,
    pub blobs: Arc<dyn Blobs>,
    pub key: KeyFile,
    /// `{base_url}/v1`: the commands base URL of §1 (`commandsUrl`).
    pub api_url: String,
    pub signals: Signals,
    /// Long polls answer at once when this is cancelled.
    pub shutdown: CancellationToken,
}

#[derive(Debug, Serialize, Deserialize)]
struct ParamsDoc {
    params: BodySpec,
}

#[derive(Debug, Serialize, Deserialize)]
struct ResponseDoc {
    response: CommandResponse,
}

fn params_key(id: &str) -> String {
    format!("cmd:{id}:params")
}

fn response_key(id: &str) -> String {
    format!("cmd:{id}:response")
}

fn corrupt(what: String) -> impl FnOnce(serde_json::Error) -> Error {
    move |source| Error::CorruptJson { what, source }
}

/// §1.3: the reserved operator target, an explicit id, or the one target there is.
pub fn select_target(
    deployment_id: &str,
    targets: &[CommandTarget],
    requested: Option<&str>,
) -> Result<CommandTarget, Error> {
    match requested {
        Some(OPERATOR_TARGET) => Ok(CommandTarget {
            resource_id: OPERATOR_TARGET.to_owned(),
            resource_type: TargetType::Daemon,
        }),
        Some(id) if id.contains(':') => Err(Error::TargetIdInvalid(id.to_owned())),
        Some(id) => targets
            .iter()
            .find(|t| !id.is_empty() && t.resource_id == id)
            .cloned()
            .ok_or_else(|| Error::TargetNotFound {
                resource_id: id.to_owned(),
                deployment_id: deployment_id.to_owned(),
            }),
        None => {
            let mut candidates = targets.iter().filter(|t| t.resource_id != OPERATOR_TARGET);
            let single = candidates
                .next()
                .ok_or_else(|| Error::NoTargets(deployment_id.to_owned()))?;
            if candidates.next().is_some() {
                return Err(Error::TargetAmbiguous(deployment_id.to_owned()));
            }
            if single.resource_id.contains(':') {
                return Err(Error::TargetIdInvalid(single.resource_id.clone()));
            }
            Ok(single.clone())
        }
    }
}

/// §1.3: containers and daemons pull; a worker pulls on Kubernetes (the operator relays) and
/// otherwise follows the deployment model.
pub fn delivery_mode(target: &CommandTarget, deployment: &DeploymentFacts) -> DeliveryMode {
    match target.resource_type {
        TargetType::Container | TargetType::Daemon => DeliveryMode::Pull,
        TargetType::Worker if deployment.platform == "kubernetes" => DeliveryMode::Pull,
        TargetType::Worker => deployment.deployment_model,
    }
}

fn principal_label(principal: &Principal) -> String {
    match principal {
        Principal::Token { token_id, role } => format!("{role} {token_id}"),
        Principal::ResponseToken => "response token".to_owned(),
    }
}

impl Commands {
    // ---- create and upload ----

    pub async fn create(
        &self,
        principal: &Principal,
        deployment: &DeploymentFacts,
        request: CreateCommandRequest,
    ) -> Result<CreateCommandResponse, Error> {
        let now = clock::now_ms();
        if request.command.is_empty() {
            return Err(Error::InvalidCommand("Command name cannot be empty".into()));
        }
        if request.command.contains(':') {
            return Err(Error::InvalidCommand(format!(
                "Command name '{}' must not contain ':'",
                request.command
            )));
        }
        if request.deployment_id.is_empty() {
            return Err(Error::InvalidCommand(
                "Deployment ID cannot be empty".into(),
            ));
        }
        let deadline = match &request.deadline {
            Some(text) => {
                let at = clock::parse_rfc3339(text).ok_or_else(|| {
                    Error::InvalidCommand(format!("Deadline '{text}' is not an RFC 3339 time"))
                })?;
                if at <= now {
                    return Err(Error::InvalidCommand(
                        "Deadline must be in the future".into(),
                    ));
                }
                Some(at)
            }
            None => None,
        };
        let target = select_target(
            &request.deployment_id,
            &deployment.targets,
            request.target_resource_id.as_deref(),
        )?;
        let mode = delivery_mode(&target, deployment);
        let idempotency_key = request.idempotency_key.as_ref().map(|key| {
            format!(
                "idem:{}:{}:{}:{key}",
                request.deployment_id, target.resource_id, request.command
            )
        });
        if let Some(key) = &idempotency_key
            && let Some(existing) = self.idempotent(key, now).await?
        {
            return Ok(existing);
        }
        if deployment.status != "running" {
            return Err(Error::InvalidCommand(format!(
                "Deployment '{}' is '{}' and cannot receive commands yet. Wait until status is 'running'.",
                request.deployment_id, deployment.status
            )));
        }
        let (state, request_size) = match &request.params {
            BodySpec::Inline { inline_base64 } => {
                (CommandState::Pending, Some(inline_base64.len() as u64))
            }
            BodySpec::Storage { size, .. } if size.unwrap_or(0) > INLINE_MAX_BYTES => {
                (CommandState::PendingUpload, *size)
            }
            BodySpec::Storage { size, .. } => (CommandState::Pending, *size),
        };
        let id = ids::command()?;
        // Before the row: a command is leasable from its insert on, and a crash in between
        // leaves only an orphaned document, never a command without params.
        self.store_params(&id, &request.params).await?;
        let winner = {
            let (id, deployment_id, name) = (
                id.clone(),
                request.deployment_id.clone(),
                request.command.clone(),
            );
            let target = target.clone();
            let key = idempotency_key.clone();
            self.db
                .transaction(move |tx| {
                    let mut new = NewCommand {
                        id: &id,
                        deployment_id: &deployment_id,
                        name: &name,
                        state,
                        delivery_mode: mode,
                        deadline,
                        request_size_bytes: request_size,
                        target: &target,
                        now,
                    };
                    if let Some(key) = &key
                        && !registry::claim_idempotency(tx, key, &id, now, now + IDEMPOTENCY_MS)?
                    {
                        // Another create with the key got past the check above first: this
                        // one is recorded as the loser (§1.4 step 5) and answers the winner.
                        let winner = registry::idempotent(tx, key, now)?;
                        new.state = CommandState::Failed;
                        registry::insert(tx, &new)?;
                        let error = json!({
                            "code": "IDEMPOTENT_DUPLICATE",
                            "message": format!(
                                "Superseded by concurrent create '{}' with the same idempotency key",
                                winner.as_deref().unwrap_or_default()
                            ),
                        });
                        tx.execute(
                            "UPDATE commands SET error = ?2, completed_at = ?3 WHERE id = ?1",
                            rusqlite::params![id, error.to_string(), now],
                        )?;
                        return Ok(winner);
                    }
                    registry::insert(tx, &new)?;
                    Ok(None)
                })
                .await?
        };
        if let Some(winner) = winner {
            let state = self
                .db
                .call(move |conn| registry::get(conn, &winner).map(|c| (winner, c)))
                .await?;
            return Ok(CreateCommandResponse {
                state: state.1.map_or(CommandState::Pending, |c| c.state),
                command_id: state.0,
                storage_upload: None,
                inline_allowed_up_to: INLINE_MAX_BYTES,
                next: "poll".into(),
            });
        }
        info!(
            command_id = %id,
            deployment_id = %request.deployment_id,
            command = %request.command,
            target = %target.resource_id,
            delivery = mode.as_str(),
            principal = %principal_label(principal),
            "command created"
        );
        let (state, storage_upload, next) = if state == CommandState::PendingUpload {
            let put_request = self
                .blobs
                .presign(
                    Operation::Put,
                    &id,
                    BlobKind::Params,
                    signing::STORAGE_URL_SECS,
                )
                .await?;
            let upload = StorageUpload {
                expires_at: put_request.expiration.clone(),
                put_request,
            };
            (state, Some(upload), "upload")
        } else {
            (self.ready(&id, deployment).await?, None, "poll")
        };
        Ok(CreateCommandResponse {
            command_id: id,
            state,
            storage_upload,
            inline_allowed_up_to: INLINE_MAX_BYTES,
            next: next.into(),
        })
    }

    async fn idempotent(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<CreateCommandResponse>, Error> {
        let key = key.to_owned();
        let found = self
            .db
            .call(move |conn| {
                let Some(id) = registry::idempotent(conn, &key, now)? else {
                    return Ok(None);
                };
                registry::get(conn, &id)
            })
            .await?;
        Ok(found.map(|command| CreateCommandResponse {
            command_id: command.id,
            state: command.state,
            storage_upload: None,
            inline_allowed_up_to: INLINE_MAX_BYTES,
            next: "poll".into(),
        }))
    }

    /// A command that just became `PENDING`: pushed now, or offered to its target's receivers.
    async fn ready(&self, id: &str, deployment: &DeploymentFacts) -> Result<CommandState, Error> {
        let command = self.get(id).await?;
        let state = match command.delivery_mode {
            DeliveryMode::Push => self.push(&command, deployment).await?,
            DeliveryMode::Pull => {
                self.signals.bump(&target_key(
                    &command.deployment_id,
                    &command.target.resource_id,
                ));
                CommandState::Pending
            }
        };
        self.signals.bump(id);
        Ok(state)
    }

    pub async fn upload_complete(
        &self,
        id: &str,
        deployment: &DeploymentFacts,
        size: u64,
    ) -> Result<UploadCompleteResponse, Error> {
        let command = self.get(id).await?;
        let not_waiting = |state: CommandState| Error::InvalidStateTransition {
            from: state.as_str(),
            to: CommandState::Pending.as_str(),
        };
        if command.state != CommandState::PendingUpload {
            return Err(not_waiting(command.state));
        }
        let params = BodySpec::Storage {
            size: Some(size),
            storage_get_request: Some(
                self.blobs
                    .presign(
                        Operation::Get,
                        id,
                        BlobKind::Params,
                        signing::STORAGE_URL_SECS,
                    )
                    .await?,
            ),
            storage_put_used: None,
        };
        self.store_params(id, &params).await?;
        let owned = id.to_owned();
        if !self
            .db
            .call(move |conn| registry::upload_done(conn, &owned))
            .await?
        {
            return Err(not_waiting(self.get(id).await?.state));
        }
        let state = self.ready(id, deployment).await?;
        Ok(UploadCompleteResponse {
            command_id: id.to_owned(),
            state,
        })
    }

    // ---- push ----

    /// §1.8: `DISPATCHED` first (a fast worker may answer before the send returns), then the
    /// send; a definite rejection fails the command, an ambiguous failure leaves it dispatched.
    async fn push(
        &self,
        command: &Command,
        deployment: &DeploymentFacts,
    ) -> Result<CommandState, Error> {
        let envelope = self.envelope(command).await?;
        let id = command.id.clone();
        let marked = self
            .db
            .call(move |conn| registry::mark_dispatched(conn, &id, clock::now_ms()))
            .await?;
        if !marked {
            return Ok(self.get(&command.id).await?.state);
        }
        let worker = deployment.workers.get(&command.target.resource_id);
        let outcome = match worker {
            None => push::Outcome::Rejected("the stack state has no such worker".into()),
            Some(w) if w.status.as_deref() != Some("running") => push::Outcome::Rejected(format!(
                "the worker is {}, not running",
                w.status.as_deref().unwrap_or("without a status")
            )),
            Some(w) => match &w.push_target {
                None => push::Outcome::Rejected("the worker has no commandsPushTarget".into()),
                Some(url) => push::deliver(url, &envelope, deployment.push_token.as_ref()).await,
            },
        };
        match outcome {
            push::Outcome::Delivered => {
                info!(command_id = %command.id, "command pushed");
                Ok(CommandState::Dispatched)
            }
            push::Outcome::Ambiguous(reason) => {
                warn!(command_id = %command.id, reason, "push acknowledgement lost; the command stays dispatched for a late response");
                Ok(CommandState::Dispatched)
            }
            push::Outcome::Rejected(reason) => {
                warn!(command_id = %command.id, reason, "push rejected; the command failed");
                let failure = CommandResponse::error(
                    "DELIVERY_FAILED",
                    "Worker runtime did not accept command delivery",
                );
                self.finish(command, failure).await?;
                Ok(self.get(&command.id).await?.state)
            }
        }
    }

    // ---- status ----

    async fn get(&self, id: &str) -> Result<Command, Error> {
        let owned = id.to_owned();
        self.db
            .call(move |conn| registry::get(conn, &owned))
            .await?
            .ok_or_else(|| Error::CommandNotFound(id.to_owned()))
    }

    pub async fn owner(&self, id: &str) -> Result<Owner, Error> {
        let command = self.get(id).await?;
        Ok(Owner {
            deployment_id: command.deployment_id,
            command_id: command.id,
            target: command.target,
        })
    }

    /// `GET /v1/commands/{id}`; with `wait`, answers once the state differs from the one it
    /// found, or when the wait is over.
    pub async fn status(
        &self,
        id: &str,
        wait: Option<Duration>,
    ) -> Result<CommandStatusResponse, Error> {
        let mut changes = self.signals.subscribe(id);
        let first = self.current(id).await?;
        let Some(wait) = wait.filter(|_| !first.state.is_terminal()) else {
            return self.status_of(first).await;
        };
        let until = tokio::time::Instant::now() + wait;
        loop {
            let until = match first.deadline {
                // Wake at the deadline to tell of the expiry.
                Some(deadline) => until.min(
                    tokio::time::Instant::now()
                        + Duration::from_millis(
                            u64::try_from(deadline - clock::now_ms() + 1).unwrap_or(0),
                        ),
                ),
                None => until,
            };
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                () = tokio::time::sleep_until(until) => break,
                () = self.shutdown.cancelled() => break,
            }
            let now = self.current(id).await?;
            if now.state != first.state {
                return self.status_of(now).await;
            }
        }
        let now = self.current(id).await?;
        self.status_of(now).await
    }

    /// The command, expired first if its deadline has passed (lazy expiry, §1.4).
    async fn current(&self, id: &str) -> Result<Command, Error> {
        let command = self.get(id).await?;
        match command.deadline {
            Some(deadline) if !command.state.is_terminal() && deadline < clock::now_ms() => {
                self.expire(&command).await?;
                self.get(id).await
            }
            _ => Ok(command),
        }
    }

    async fn status_of(&self, command: Command) -> Result<CommandStatusResponse, Error> {
        let response = if command.state.is_terminal() {
            self.response(&command.id).await?
        } else {
            None
        };
        Ok(CommandStatusResponse {
            command_id: command.id,
            state: command.state,
            attempt: command.attempt,
            target: command.target,
            response,
        })
    }

    /// The stored response, with a fresh download URL when its body is in storage.
    async fn response(&self, id: &str) -> Result<Option<CommandResponse>, Error> {
        let Some(doc) = self.kv.get(&response_key(id)).await? else {
            return Ok(None);
        };
        let doc: ResponseDoc = serde_json::from_slice(&doc).map_err(corrupt(response_key(id)))?;
        Ok(Some(match doc.response {
            CommandResponse::Success {
                response:
                    BodySpec::Storage {
                        size,
                        storage_put_used: Some(true),
                        ..
                    },
            } => CommandResponse::Success {
                response: BodySpec::Storage {
                    size,
                    storage_get_request: Some(
                        self.blobs
                            .presign(
                                Operation::Get,
                                id,
                                BlobKind::Response,
                                signing::STORAGE_URL_SECS,
                            )
                            .await?,
                    ),
                    storage_put_used: Some(true),
                },
            },
            other => other,
        }))
    }

    async fn expire(&self, command: &Command) -> Result<bool, Error> {
        let (id, deadline) = (command.id.clone(), command.deadline.unwrap_or_default());
        let error = json!({
            "code": "COMMAND_EXPIRED",
            "message": format!("Deadline {} elapsed", clock::rfc3339(deadline)),
        })
        .to_string();
        let won = self
            .db
            .call(move |conn| {
                registry::complete(
                    conn,
                    &id,
                    CommandState::Expired,
                    None,
                    Some(&error),
                    clock::now_ms(),
                )
            })
            .await?;
        if won {
            info!(command_id = %command.id, "command expired");
            self.changed(command);
        }
        Ok(won)
    }

    fn changed(&self, command: &Command) {
        self.signals.bump(&command.id);
        self.signals.bump(&target_key(
            &command.deployment_id,
            &command.target.resource_id,
        ));
    }

    // ---- responses ----

    /// `PUT /v1/commands/{id}/response` (§1.4).
    pub async fn submit(
        &self,
        id: &str,
        principal: &Principal,
        response: CommandResponse,
    ) -> Result<(), Error> {
        let command = self.get(id).await?;
        if command.state.is_terminal() {
            debug!(command_id = %id, "duplicate response to a finished command ignored");
            return Ok(());
        }
        if command.state != CommandState::Dispatched {
            return Err(Error::InvalidStateTransition {
                from: command.state.as_str(),
                to: CommandState::Succeeded.as_str(),
            });
        }
        debug!(command_id = %id, principal = %principal_label(principal), "response submitted");
        self.finish(&command, response).await
    }

    /// The terminal write of a response: the body first (so that a terminal state never
    /// lacks it), then the conditional write, then the body again if this call won, so that
    /// the served body is the winner's.
    async fn finish(&self, command: &Command, mut response: CommandResponse) -> Result<(), Error> {
        if let CommandResponse::Success {
            response:
                BodySpec::Storage {
                    storage_get_request: get @ None,
                    storage_put_used: Some(true),
                    ..
                },
        } = &mut response
        {
            *get = Some(
                self.blobs
                    .presign(
                        Operation::Get,
                        &command.id,
                        BlobKind::Response,
                        signing::STORAGE_URL_SECS,
                    )
                    .await?,
            );
        }
        self.store_response(&command.id, &response).await?;
        let (state, error) = match &response {
            CommandResponse::Success { .. } => (CommandState::Succeeded, None),
            CommandResponse::Error { code, message, .. } => (
                CommandState::Failed,
                Some(json!({"code": code, "message": message}).to_string()),
            ),
        };
        let size = match &response {
            CommandResponse::Success {
                response: BodySpec::Inline { inline_base64 },
            } => Some(inline_base64.len() as u64),
            CommandResponse::Success {
                response: BodySpec::Storage { size, .. },
            } => *size,
            CommandResponse::Error { .. } => None,
        };
        let id = command.id.clone();
        let won = self
            .db
            .call(move |conn| {
                registry::complete(conn, &id, state, size, error.as_deref(), clock::now_ms())
            })
            .await?;
        if !won {
            debug!(command_id = %command.id, "lost the race to finish the command");
            return Ok(());
        }
        self.store_response(&command.id, &response).await?;
        info!(command_id = %command.id, state = state.as_str(), "command finished");
        self.changed(command);
        Ok(())
    }

    // ---- leases ----

    /// `POST /v1/commands/leases` (§1.4); with `wait`, answers as soon as a command of the
    /// target can be leased, or with no lease when the wait is over.
    pub async fn acquire(
        &self,
        principal: &Principal,
        request: &LeaseRequest,
        wait: Option<Duration>,
    ) -> Result<LeaseResponse, Error> {
        let key = target_key(&request.deployment_id, &request.target.resource_id);
        let until = wait.map(|wait| tokio::time::Instant::now() + wait);
        loop {
            let mut changes = self.signals.subscribe(&key);
            let leases = self.lease_now(request).await?;
            let Some(until) = until else {
                return Ok(LeaseResponse { leases });
            };
            if !leases.is_empty() || tokio::time::Instant::now() >= until {
                return Ok(LeaseResponse { leases });
            }
            // A lease running out makes its command available without any event.
            let (dep, target) = (
                request.deployment_id.clone(),
                request.target.resource_id.clone(),
            );
            let next_expiry = self
                .db
                .call(move |conn| registry::next_lease_expiry(conn, &dep, &target, clock::now_ms()))
                .await?;
            let wake = match next_expiry {
                Some(at) => until.min(
                    tokio::time::Instant::now()
                        + Duration::from_millis(
                            u64::try_from(at - clock::now_ms() + 1).unwrap_or(0),
                        ),
                ),
                None => until,
            };
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(wake) => {}
                () = self.shutdown.cancelled() => return Ok(LeaseResponse { leases }),
            }
            debug!(principal = %principal_label(principal), "long poll woke");
        }
    }

    async fn lease_now(&self, request: &LeaseRequest) -> Result<Vec<LeaseInfo>, Error> {
        let max = request.max_leases.min(MAX_LEASES);
        if max == 0 {
            return Ok(Vec::new());
        }
        let (dep, target) = (request.deployment_id.clone(), request.target.clone());
        let seconds = i64::try_from(request.lease_seconds.max(1)).unwrap_or(i64::MAX / 2000);
        let (leased, expired) = self
            .db
            .transaction(move |tx| {
                let now = clock::now_ms();
                let mut leased = Vec::new();
                let mut expired = Vec::new();
                for id in registry::leasable(tx, &dep, &target.resource_id, now, max * 2)? {
                    if leased.len() >= max as usize {
                        break;
                    }
                    let Some(command) = registry::get(tx, &id)? else {
                        continue;
                    };
                    if command.target != target {
                        // The index and the record disagree: refuse rather than deliver to
                        // the wrong resource (the record is kept for the operator).
                        return Err(Error::Corrupt(format!(
                            "command {id} is indexed under target {} but recorded for {}",
                            target.resource_id, command.target.resource_id
                        )));
                    }
                    if command.deadline.is_some_and(|d| d <= now) {
                        expired.push(command);
                        continue;
                    }
                    let lease_id = ids::lease()?;
                    let expires_at = now.saturating_add(seconds.saturating_mul(1000));
                    if let Some(command) = registry::lease(tx, &id, &lease_id, now, expires_at)? {
                        leased.push((lease_id, expires_at, command));
                    }
                }
                Ok((leased, expired))
            })
            .await?;
        for command in &expired {
            self.expire(command).await?;
        }
        let mut leases = Vec::with_capacity(leased.len());
        for (lease_id, expires_at, command) in leased {
            self.signals.bump(&command.id);
            let mut envelope = match self.envelope(&command).await {
                Ok(envelope) => envelope,
                Err(e) => {
                    // Kept leased: it is offered again when the lease runs out.
                    error!(command_id = %command.id, error = %e, "cannot build the envelope of a leased command");
                    continue;
                }
            };
            self.relativize(&mut envelope);
            leases.push(LeaseInfo {
                lease_id,
                lease_expires_at: clock::rfc3339(expires_at),
                command_id: command.id,
                attempt: command.attempt,
                envelope,
            });
        }
        Ok(leases)
    }

    pub async fn lease_owner(&self, lease_id: &str) -> Result<Owner, Error> {
        let owned = lease_id.to_owned();
        let command = self
            .db
            .call(move |conn| registry::leased(conn, &owned, clock::now_ms()))
            .await?
            .ok_or_else(|| Error::LeaseNotFound(lease_id.to_owned()))?;
        Ok(Owner {
            deployment_id: command.deployment_id,
            command_id: command.id,
            target: command.target,
        })
    }

    /// `POST /v1/commands/leases/{leaseId}/release`: back to `PENDING` with one more attempt.
    pub async fn release(&self, lease_id: &str) -> Result<(), Error> {
        let owner = self.lease_owner(lease_id).await?;
        let owned = lease_id.to_owned();
        let released = self
            .db
            .call(move |conn| registry::release(conn, &owned, clock::now_ms()))
            .await?
            .ok_or_else(|| Error::LeaseNotFound(lease_id.to_owned()))?;
        debug!(lease_id, released, "lease released");
        self.signals.bump(&owner.command_id);
        self.signals
            .bump(&target_key(&owner.deployment_id, &owner.target.resource_id));
        Ok(())
    }

    // ---- envelopes ----

    /// §1.7, with absolute URLs (push); leases make them relative.
    async fn envelope(&self, command: &Command) -> Result<Envelope, Error> {
        let doc = self
            .kv
            .get(&params_key(&command.id))
            .await?
            .ok_or_else(|| Error::Corrupt(format!("command {} has no params", command.id)))?;
        let mut params = serde_json::from_slice::<ParamsDoc>(&doc)
            .map_err(corrupt(params_key(&command.id)))?
            .params;
        if let BodySpec::Storage {
            size: Some(size), ..
        } = &params
            && (1..=INLINE_MAX_BYTES).contains(size)
        {
            match self.blobs.get(&command.id, BlobKind::Params).await {
                Ok(Some(bytes)) => {
                    params = BodySpec::Inline {
                        inline_base64: STANDARD.encode(&bytes),
                    }
                }
                Ok(None) => warn!(command_id = %command.id, "params blob missing; sending its URL"),
                Err(e) => {
                    warn!(command_id = %command.id, error = %e, "params blob unreadable; sending its URL")
                }
            }
        }
        if let BodySpec::Storage {
            storage_get_request,
            ..
        } = &mut params
        {
            // Always fresh: a command may wait longer than a URL minted earlier lives.
            *storage_get_request = Some(
                self.blobs
                    .presign(
                        Operation::Get,
                        &command.id,
                        BlobKind::Params,
                        signing::STORAGE_URL_SECS,
                    )
                    .await?,
            );
        }
        let key = {
            let key = self.key.clone();
            tokio::task::spawn_blocking(move || key.get()).await??
        };
        let expires = clock::now_secs() + signing::RESPONSE_TOKEN_SECS;
        let token = signing::response_token(&key, &command.id, expires);
        Ok(Envelope {
            protocol: PROTOCOL.to_owned(),
            deployment_id: command.deployment_id.clone(),
            target: command.target.clone(),
            command_id: command.id.clone(),
            attempt: command.attempt,
            deadline: command.deadline.map(clock::rfc3339),
            command: command.name.clone(),
            params,
            response_handling: ResponseHandling {
                max_inline_bytes: INLINE_MAX_BYTES,
                submit_response_url: format!(
                    "{}/commands/{}/response?response_token={token}&expires={expires}",
                    self.api_url, command.id
                ),
                storage_upload_request: self
                    .blobs
                    .presign(
                        Operation::Put,
                        &command.id,
                        BlobKind::Response,
                        signing::RESPONSE_UPLOAD_SECS,
                    )
                    .await?,
            },
        })
    }

    /// Manager URLs in a lease-served envelope become references relative to the lease
    /// endpoint `{api_url}/commands/leases` (§1.7); others stay as they are.
    fn relativize(&self, envelope: &mut Envelope) {
        let relative = |url: &mut String| {
            if let Some(rest) = url.strip_prefix(&format!("{}/commands/", self.api_url)) {
                *url = rest.to_owned();
            } else if let Some(rest) = url.strip_prefix(&format!("{}/", self.api_url)) {
                *url = format!("../{rest}");
            }
        };
        relative(&mut envelope.response_handling.submit_response_url);
        if let PresignedBackend::Http { url, .. } =
            &mut envelope.response_handling.storage_upload_request.backend
        {
            relative(url);
        }
        if let BodySpec::Storage {
            storage_get_request: Some(request),
            ..
        } = &mut envelope.params
            && let PresignedBackend::Http { url, .. } = &mut request.backend
        {
            relative(url);
        }
    }

    // ---- payloads ----

    async fn store_params(&self, id: &str, params: &BodySpec) -> Result<(), Error> {
        let doc = ParamsDoc {
            params: params.clone(),
        };
        let bytes = serde_json::to_vec(&doc).map_err(corrupt(params_key(id)))?;
        let bytes = match params {
            BodySpec::Inline { inline_base64 } if bytes.len() > KV_VALUE_THRESHOLD => {
                let raw = STANDARD.decode(inline_base64).map_err(|e| {
                    Error::InvalidCommand(format!("params.inlineBase64 is not base64: {e}"))
                })?;
                let size = raw.len() as u64;
                self.blobs
                    .put(id, BlobKind::Params, Bytes::from(raw))
                    .await?;
                let reference = ParamsDoc {
                    params: BodySpec::Storage {
                        size: Some(size),
                        storage_get_request: None,
                        storage_put_used: Some(true),
                    },
                };
                serde_json::to_vec(&reference).map_err(corrupt(params_key(id)))?
            }
            _ => bytes,
        };
        self.kv.put(&params_key(id), bytes).await
    }

    async fn store_response(&self, id: &str, response: &CommandResponse) -> Result<(), Error> {
        let doc = ResponseDoc {
            response: response.clone(),
        };
        let bytes = serde_json::to_vec(&doc).map_err(corrupt(response_key(id)))?;
        let bytes = match response {
            CommandResponse::Success {
                response: BodySpec::Inline { inline_base64 },
            } if bytes.len() > KV_VALUE_THRESHOLD => {
                let raw = STANDARD.decode(inline_base64).map_err(|e| {
                    Error::BadRequest(format!("response.inlineBase64 is not base64: {e}"))
                })?;
                let size = raw.len() as u64;
                self.blobs
                    .put(id, BlobKind::Response, Bytes::from(raw))
                    .await?;
                let reference = ResponseDoc {
                    response: CommandResponse::Success {
                        response: BodySpec::Storage {
                            size: Some(size),
                            storage_get_request: None,
                            storage_put_used: Some(true),
                        },
                    },
                };
                serde_json::to_vec(&reference).map_err(corrupt(response_key(id)))?
            }
            _ => bytes,
        };
        self.kv.put(&response_key(id), bytes).await
    }

    /// `GET /v1/commands/{id}/payload`: the stored documents as they are.
    pub async fn payload(&self, id: &str) -> Result<PayloadResponse, Error> {
        let params = match self.kv.get(&params_key(id)).await? {
            Some(doc) => Some(
                serde_json::from_slice::<ParamsDoc>(&doc)
                    .map_err(corrupt(params_key(id)))?
                    .params,
            ),
            None => None,
        };
        let response = match self.kv.get(&response_key(id)).await? {
            Some(doc) => Some(
                serde_json::from_slice::<ResponseDoc>(&doc)
                    .map_err(corrupt(response_key(id)))?
                    .response,
            ),
            None => None,
        };
        if params.is_none() && response.is_none() {
            return Err(Error::CommandNotFound(id.to_owned()));
        }
        Ok(PayloadResponse {
            command_id: id.to_owned(),
            params,
            response,
        })
    }

    /// `PUT /v1/commands/{id}/payload`: writes the documents, bypassing the lifecycle.
    pub async fn store_payload(&self, id: &str, request: StorePayloadRequest) -> Result<(), Error> {
        if !crate::backend::local::is_command_id(id) {
            return Err(Error::BadRequest(format!("not a command id: {id:?}")));
        }
        if let Some(params) = &request.params {
            self.store_params(id, params).await?;
        }
        if let Some(response) = &request.response {
            self.store_response(id, response).await?;
        }
        Ok(())
    }

    pub async fn put_blob(&self, id: &str, kind: BlobKind, bytes: Bytes) -> Result<(), Error> {
        if !crate::backend::local::is_command_id(id) {
            return Err(Error::BadRequest(format!("not a command id: {id:?}")));
        }
        self.blobs.put(id, kind, bytes).await
    }

    pub async fn get_blob(&self, id: &str, kind: BlobKind) -> Result<Bytes, Error> {
        self.blobs
            .get(id, kind)
            .await?
            .ok_or_else(|| Error::BlobNotFound(crate::backend::blob_path(id, kind)))
    }

    // ---- deadlines ----

    /// Expires every overdue command; the reaper calls this.
    pub async fn reap(&self) -> Result<usize, Error> {
        let now = clock::now_ms();
        let overdue = self
            .db
            .call(move |conn| {
                registry::forget_idempotency(conn, now)?;
                registry::overdue(conn, now, 256)
            })
            .await?;
        let mut expired = 0;
        for command in &overdue {
            if self.expire(command).await? {
                expired += 1;
            }
        }
        Ok(expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, kind: TargetType) -> CommandTarget {
        CommandTarget {
            resource_id: id.into(),
            resource_type: kind,
        }
    }

    #[test]
    fn target_resolution_of_spec_1_3() {
        let one = [target("api", TargetType::Worker)];
        let two = [
            target("api", TargetType::Worker),
            target("jobs", TargetType::Container),
        ];
        let with_operator = [
            target("operator", TargetType::Daemon),
            target("api", TargetType::Worker),
        ];
        // (targets, requested, Ok(resource id) or the error code)
        type Case<'a> = (
            &'a [CommandTarget],
            Option<&'a str>,
            Result<&'a str, &'a str>,
        );
        let cases: Vec<Case<'_>> = vec![
            (&one, None, Ok("api")),
            (&[], None, Err("NO_COMMAND_TARGETS")),
            (&two, None, Err("COMMAND_TARGET_AMBIGUOUS")),
            (&with_operator, None, Ok("api")),
            (&two, Some("jobs"), Ok("jobs")),
            (&two, Some("nope"), Err("COMMAND_TARGET_NOT_FOUND")),
            (&two, Some(""), Err("COMMAND_TARGET_NOT_FOUND")),
            (&two, Some("a:b"), Err("COMMAND_TARGET_ID_INVALID")),
            (&[], Some("operator"), Ok("operator")),
        ];
        for (targets, requested, expected) in cases {
            let got = select_target("dep_1", targets, requested)
                .map(|t| t.resource_id)
                .map_err(|e| match e {
                    Error::NoTargets(_) => "NO_COMMAND_TARGETS",
                    Error::TargetAmbiguous(_) => "COMMAND_TARGET_AMBIGUOUS",
                    Error::TargetNotFound { .. } => "COMMAND_TARGET_NOT_FOUND",
                    Error::TargetIdInvalid(_) => "COMMAND_TARGET_ID_INVALID",
                    other => panic!("unexpected {other:?}"),
                });
            assert_eq!(got.as_deref().map_err(|e| *e), expected, "{requested:?}");
        }
    }

    #[test]
    fn delivery_modes() {
        let facts = |platform: &str, model| DeploymentFacts {
            id: "dep_1".into(),
            status: "running".into(),
            platform: platform.into(),
            deployment_model: model,
            targets: vec![],
            workers: Default::default(),
            push_token: None,
        };
        let worker = target("api", TargetType::Worker);
        let container = target("jobs", TargetType::Container);
        assert_eq!(
            delivery_mode(&worker, &facts("local", DeliveryMode::Push)),
            DeliveryMode::Push
        );
        assert_eq!(
            delivery_mode(&worker, &facts("local", DeliveryMode::Pull)),
            DeliveryMode::Pull
        );
        assert_eq!(
            delivery_mode(&worker, &facts("kubernetes", DeliveryMode::Push)),
            DeliveryMode::Pull
        );
        assert_eq!(
            delivery_mode(&container, &facts("aws", DeliveryMode::Push)),
            DeliveryMode::Pull
        );
    }
}
