//! A command's start: create (its checks, idempotency, the params stored before
//! the row), the upload of params too large to send inline, and the moment a command becomes
//! `PENDING`, when it is pushed to its worker or offered to its target's receivers.

use serde_json::json;
use tracing::{info, warn};

use plumbing::clock;
use protocol::commandd::{DeploymentFacts, Principal};
use protocol::commands::signing;
use protocol::commands::{
    BlobKind, BodySpec, CommandResponse, CommandState, CreateCommandRequest, CreateCommandResponse,
    DeliveryMode, INLINE_MAX_BYTES, Operation, StorageUpload, UploadCompleteResponse,
};

use super::targets::{delivery_mode, select_target};
use super::{Commands, principal_label};
use crate::signals::target_key;
use crate::store::registry::{self, Command, NewCommand};
use crate::{Error, ids, push};

/// Idempotency keys live a day, as in the public manager.
const IDEMPOTENCY_MS: i64 = 24 * 60 * 60 * 1000;

/// The answer to a create, a repeated one included: a client given somewhere to upload its
/// params does that next, any other polls.
fn created(
    command_id: String,
    state: CommandState,
    storage_upload: Option<StorageUpload>,
) -> CreateCommandResponse {
    let next = if storage_upload.is_some() {
        "upload"
    } else {
        "poll"
    };
    CreateCommandResponse {
        command_id,
        state,
        storage_upload,
        inline_allowed_up_to: INLINE_MAX_BYTES,
        next: next.into(),
    }
}

impl Commands {
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
                        // one is recorded `FAILED` with `IDEMPOTENT_DUPLICATE`, as the public
                        // manager records the loser of the race, and answers the winner.
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
            let (winner, command) = self
                .db
                .call(move |conn| registry::get(conn, &winner).map(|c| (winner, c)))
                .await?;
            let state = command.map_or(CommandState::Pending, |c| c.state);
            return Ok(created(winner, state, None));
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
        let (state, storage_upload) = if state == CommandState::PendingUpload {
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
            (state, Some(upload))
        } else {
            (self.ready(&id, deployment).await?, None)
        };
        Ok(created(id, state, storage_upload))
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
        Ok(found.map(|command| created(command.id, command.state, None)))
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
            storage_get_request: Some(self.download_request(id, BlobKind::Params).await?),
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

    /// `DISPATCHED` first (a fast worker may answer before the send returns), then the
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
            None => push::Outcome::Rejected("the manager knows no runtime of this worker".into()),
            Some(w) if w.status.as_deref() != Some("running") => push::Outcome::Rejected(format!(
                "the worker is {}, not running",
                w.status.as_deref().unwrap_or("without a status")
            )),
            Some(w) => match &w.push_target {
                None => push::Outcome::Rejected("the worker's runtime has no push target".into()),
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
}
