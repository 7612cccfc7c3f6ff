//! OTLP ingest, a durable queue, and forwarding to the vendor's observability backend.
//!
//! Serves HTTP/1.1 on `<data>/run/otelfwd.sock`; only the manager talks to it.

use axum::Router;
use plumbing::{Daemon, DaemonContext};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Socket(#[from] plumbing::uds::UdsError),
}

/// Runs otelfwd until `ctx.shutdown` is cancelled.
pub async fn run(ctx: DaemonContext) -> Result<(), Error> {
    plumbing::uds::serve_sidecar(&ctx, Daemon::Otelfwd, Router::new()).await?;
    Ok(())
}
