//! A receiver's answer: [`Commands::submit`] checks that the command waits for one;
//! `finish` is the one terminal write of a response, for a submitted answer and for a push
//! the worker rejected alike.

use serde_json::json;
use tracing::{debug, info};

use plumbing::clock;
use protocol::commandd::Principal;
use protocol::commands::{BlobKind, BodySpec, CommandResponse, CommandState};

use super::{Commands, principal_label};
use crate::Error;
use crate::store::registry::{self, Command};

impl Commands {
    /// `PUT /v1/commands/{id}/response`.
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
    pub(super) async fn finish(
        &self,
        command: &Command,
        mut response: CommandResponse,
    ) -> Result<(), Error> {
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
                self.download_request(&command.id, BlobKind::Response)
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
}
