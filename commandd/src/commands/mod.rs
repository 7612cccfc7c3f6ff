//! The commands protocol (docs/compatibility.md, Commands): what each call does to a command.
//! State and leases go through the registry ([`crate::store::registry`]), whose every write
//! is conditional; payloads through the backend's two traits ([`crate::backend`]).
//!
//! One module per part of a command's life, each an `impl Commands` block of its own:
//! [`create`] (create, upload, push), [`status`] (what a caller learns, and expiry),
//! [`responses`] (a receiver's answer), [`leases`] (pull delivery), [`envelope`] (what a
//! receiver gets) and [`payloads`] (the params and response documents and their bodies);
//! [`targets`] decides where a command goes. What several of them need is here.

mod create;
mod envelope;
mod leases;
mod payloads;
mod responses;
mod status;
mod targets;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use plumbing::clock;
use protocol::commandd::{Owner, Principal};

use crate::Error;
use crate::backend::{Blobs, Kv};
use crate::key::KeyFile;
use crate::signals::{Signals, target_key};
use crate::store::Db;
use crate::store::registry::{self, Command};

#[derive(Debug, Clone)]
pub struct Commands {
    pub db: Db,
    pub kv: Arc<dyn Kv>,
    pub blobs: Arc<dyn Blobs>,
    pub key: KeyFile,
    /// `{base_url}/v1`: the commands base URL (`commandsUrl`) every URL we hand out starts
    /// with.
    pub api_url: String,
    pub signals: Signals,
    /// Long polls answer at once when this is cancelled.
    pub shutdown: CancellationToken,
}

fn principal_label(principal: &Principal) -> String {
    match principal {
        Principal::Token { token_id, role } => format!("{role} {token_id}"),
        Principal::ResponseToken => "response token".to_owned(),
    }
}

/// Whose a command is: what the manager authorizes a call on it, or on its lease, by.
fn owner_of(command: Command) -> Owner {
    Owner {
        deployment_id: command.deployment_id,
        command_id: command.id,
        target: command.target,
    }
}

/// The instant just after `at` (Unix ms): a long poll wakes then for a deadline or a lease
/// running out, which no signal announces.
fn just_after(at: i64) -> Instant {
    Instant::now() + Duration::from_millis(u64::try_from(at - clock::now_ms() + 1).unwrap_or(0))
}

impl Commands {
    /// The command as recorded; [`Commands::current`] also expires an overdue one.
    async fn get(&self, id: &str) -> Result<Command, Error> {
        let owned = id.to_owned();
        self.db
            .call(move |conn| registry::get(conn, &owned))
            .await?
            .ok_or_else(|| Error::CommandNotFound(id.to_owned()))
    }

    /// Wakes the long polls on the command and on its target's leases.
    fn changed(&self, command: &Command) {
        self.signals.bump(&command.id);
        self.signals.bump(&target_key(
            &command.deployment_id,
            &command.target.resource_id,
        ));
    }
}
