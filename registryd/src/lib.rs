//! The OCI distribution registry that holds release images, behind the manager's /v2.
//!
//! Serves HTTP/1.1 on `<data>/run/registryd.sock`; only the manager talks to it.

use axum::Router;
use plumbing::{Daemon, DaemonContext};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Socket(#[from] plumbing::uds::UdsError),
}

/// Runs registryd until `ctx.shutdown` is cancelled.
pub async fn run(ctx: DaemonContext) -> Result<(), Error> {
    plumbing::uds::serve_sidecar(&ctx, Daemon::Registryd, Router::new()).await?;
    Ok(())
}
