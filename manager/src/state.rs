//! What every handler shares, and the parts of it that extractors below the routes take
//! ([`FromRef`]), so that they need not know the whole.

use std::sync::Arc;

use axum::extract::FromRef;
use tokio_util::sync::CancellationToken;

use crate::daemons::Daemons;
use crate::install::executable::RunningExecutable;
use crate::registry::Proxy;
use crate::services::changes::DeploymentChanges;
use crate::signing_key::SigningKey;
use crate::store::Store;
use crate::volumes::Volumes;

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    /// The public URL, without a trailing slash.
    pub base_url: Arc<str>,
    pub registry: Arc<Proxy>,
    /// registryd, commandd and otelfwd, each behind the one daemon client.
    pub daemons: Daemons,
    /// Signs and checks command response URLs and storage URLs (registry upload sessions
    /// sign with a key derived from it, inside [`Proxy`]).
    pub signing_key: SigningKey,
    /// `[telemetry] max-body-bytes`: the largest OTLP body the manager reads.
    pub telemetry_max_body_bytes: usize,
    /// Cancelled when the manager stops: long polls then answer at once.
    pub shutdown: CancellationToken,
    /// Wakes the agent syncs waiting for a deployment; told by every write that changes
    /// what a deployment's agent is asked to do.
    pub changes: DeploymentChanges,
    /// The data volume and the database's, and which of them is full.
    pub volumes: Volumes,
    /// This process's binary, which `GET /install/alien` serves as the agent's.
    pub executable: Arc<RunningExecutable>,
}

impl FromRef<AppState> for Store {
    fn from_ref(state: &AppState) -> Store {
        state.store.clone()
    }
}
