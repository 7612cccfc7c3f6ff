//! The commands protocol: command state, leases and payloads (docs/compatibility.md,
//! Commands).
//!
//! Serves HTTP/1.1 on `<data>/run/commandd.sock`; only the manager talks to it, after it has
//! authenticated and authorized the caller, and it sends along what commandd needs to know of
//! the deployment (`protocol::commandd`). A request's path: [`routes`] takes it, [`commands`]
//! does it (`create`, `status`, `responses`, `leases`, `payloads`: one module for each part of
//! a command's life), [`store`] keeps state and leases, [`backend`] keeps payloads, [`push`]
//! delivers to workers. Everything durable lives under `<data>/commands/`.

mod backend;
mod commands;
mod error;
mod ids;
mod key;
mod push;
mod routes;
mod signals;
mod store;

use std::sync::Arc;
use std::time::Duration;

use plumbing::{Daemon, DaemonContext};
use tracing::warn;

pub use error::Error;

use crate::backend::local::{LocalBlobs, LocalKv};
use crate::commands::Commands;

/// How often overdue commands are looked for. The public manager looks every 30 s; a
/// deadline here turns a command `EXPIRED` within a second of passing.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Runs commandd until `ctx.shutdown` is cancelled.
pub async fn run(ctx: DaemonContext) -> Result<(), Error> {
    if ctx.config.commands.kv.is_some() || ctx.config.commands.storage.is_some() {
        warn!(
            "[commands] kv and storage are accepted but not acted on yet: commands use the data volume"
        );
    }
    let state = ctx.data.state_dir(Daemon::Commandd);
    std::fs::create_dir_all(&state).map_err(Error::io("create", &state))?;
    let db = store::Db::open(state.join("commands.db")).await?;
    let api_url = format!("{}/v1", ctx.config.base_url().trim_end_matches('/'));
    let key = key::KeyFile::in_dir(ctx.data.root());
    let blobs = {
        let (state, api_url, key) = (state.clone(), api_url.clone(), key.clone());
        tokio::task::spawn_blocking(move || LocalBlobs::open(&state, api_url, key)).await??
    };
    let commands = Arc::new(Commands {
        kv: Arc::new(LocalKv::new(db.clone())),
        blobs: Arc::new(blobs),
        db,
        key,
        api_url,
        signals: signals::Signals::default(),
        shutdown: ctx.shutdown.clone(),
    });
    let reaper = tokio::spawn(reap(Arc::clone(&commands)));
    let served =
        plumbing::uds::serve_sidecar(&ctx, Daemon::Commandd, routes::router(commands)).await;
    reaper.abort();
    served?;
    Ok(())
}

/// Expires overdue commands until shutdown.
async fn reap(commands: Arc<Commands>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(REAP_EVERY) => {}
            () = commands.shutdown.cancelled() => return,
        }
        if let Err(error) = commands.reap().await {
            warn!(%error, "reaping overdue commands failed");
        }
    }
}
