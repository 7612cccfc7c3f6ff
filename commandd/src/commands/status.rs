//! What a caller learns of a command: who owns it, its state (long-polled) and its
//! response. Expiry is here too: an overdue command turns `EXPIRED` when it is read (lazy
//! expiry) or when the reaper finds it, whichever comes first.

use std::time::Duration;

use serde_json::json;
use tracing::info;

use plumbing::clock;
use protocol::commandd::Owner;
use protocol::commands::{
    BlobKind, BodySpec, CommandResponse, CommandState, CommandStatusResponse,
};

use super::{Commands, just_after, owner_of};
use crate::Error;
use crate::store::registry::{self, Command};

impl Commands {
    pub async fn owner(&self, id: &str) -> Result<Owner, Error> {
        Ok(owner_of(self.get(id).await?))
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
                Some(deadline) => until.min(just_after(deadline)),
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

    /// The command, expired first if its deadline has passed (lazy expiry: a read never
    /// shows an overdue command as live).
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
        let Some(response) = self.response_doc(id).await? else {
            return Ok(None);
        };
        Ok(Some(match response {
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
                    storage_get_request: Some(self.download_request(id, BlobKind::Response).await?),
                    storage_put_used: Some(true),
                },
            },
            other => other,
        }))
    }

    pub(super) async fn expire(&self, command: &Command) -> Result<bool, Error> {
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
