//! The OCI distribution registry that holds release images, behind the manager's /v2.
//!
//! Serves HTTP/1.1 on `<data>/run/registryd.sock`; only the manager talks to it, and it
//! forwards `/v2/...` requests as they are, after authenticating them. The API is the OCI
//! distribution spec v1.1 ([`routes`]) plus `POST /gc` ([`gc`]). Everything durable lives
//! under `<data>/registry/` ([`storage`] for files, [`meta`] for the SQLite metadata).

mod digest;
mod error;
mod gc;
mod headers;
mod manifest;
mod meta;
mod names;
mod routes;
mod state;
mod storage;

use std::sync::Arc;

use plumbing::{Daemon, DaemonContext};

pub use error::Error;

use crate::state::{Registry, Sessions};
use crate::storage::Storage;

/// Runs registryd until `ctx.shutdown` is cancelled. Requests in flight finish first; an
/// upload cut off by a stop (or a crash) resumes from what it had acknowledged.
pub async fn run(ctx: DaemonContext) -> Result<(), Error> {
    let root = ctx.data.state_dir(Daemon::Registryd);
    let storage = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || Storage::open(&root)).await??
    };
    let meta = meta::Meta::open(storage.db_path()).await?;
    let registry = Arc::new(Registry {
        meta,
        storage: Arc::new(storage),
        sessions: Sessions::default(),
        gc: tokio::sync::Mutex::new(()),
    });
    plumbing::uds::serve_sidecar(&ctx, Daemon::Registryd, routes::router(registry)).await?;
    Ok(())
}
