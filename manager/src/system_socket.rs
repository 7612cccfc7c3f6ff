//! The manager's own Unix socket (`run/manager.sock`), where deployd reaches the API as the
//! system: the public routes, plus the few that only the system may call. Whoever can open
//! the socket is the service user (the file is 0600 in a 0700 directory), so no token is
//! asked for; a request that came over TCP can never carry the identity.

use axum::routing::get;
use axum::{Extension, Router};
use plumbing::{Daemon, DataDir};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::StartError;
use crate::auth::SystemIdentity;
use crate::routes::sync;
use crate::state::AppState;

/// The public router and the system's routes, every request marked as the system's.
fn router(state: AppState) -> Router {
    let system_only = Router::new()
        .route("/internal/v1/deployments/{id}/plan", get(sync::plan))
        .with_state(state.clone());
    crate::server::router(state)
        .merge(system_only)
        .layer(Extension(SystemIdentity))
}

/// Binds the socket (the caller holds the manager's lock, so a file there is a dead
/// predecessor's) and serves it until `shutdown`.
pub async fn serve(
    data: &DataDir,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let path = data.socket(Daemon::Manager);
    let listener = plumbing::uds::bind(&path)?;
    info!(socket = %path.display(), "serving the system's socket");
    let app = router(state);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            warn!(%error, "the system's socket stopped");
        }
        let _ = std::fs::remove_file(&path);
    }))
}
