//! The commands protocol: command state, leases and payloads.
//!
//! Serves HTTP/1.1 on `<data>/run/commandd.sock`; only the manager talks to it.

use axum::Router;
use plumbing::{Daemon, DaemonContext};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Socket(#[from] plumbing::uds::UdsError),
}

/// Runs commandd until `ctx.shutdown` is cancelled.
pub async fn run(ctx: DaemonContext) -> Result<(), Error> {
    plumbing::uds::serve_sidecar(&ctx, Daemon::Commandd, Router::new()).await?;
    Ok(())
}
