//! The manager: the public HTTP API and the SQLite system of record.
//!
//! A request's path: [`server`] accepts it, [`routes`] handles it, [`auth`] says who sent it
//! and [`authz`] what they may do, the services ([`services`], [`lifecycle`], [`registry`],
//! [`install`]) do it, [`store`] is the only code that touches the database, and [`daemons`] the only
//! code that calls the other daemons. Nothing below [`routes`] imports a route.

mod auth;
mod authz;
mod bootstrap;
mod connections;
mod daemons;
mod error;
mod extract;
mod ids;
mod install;
mod lifecycle;
mod registry;
mod routes;
mod server;
mod services;
mod signing_key;
mod start_error;
mod state;
mod store;
mod system_socket;
mod token;
mod unread_body;
mod volumes;
mod wire;

use plumbing::lock::LockFile;
use plumbing::{Config, Daemon, DaemonContext};
use tracing::warn;

pub use error::Error;
pub use start_error::StartError;
pub use store::overview;

/// The one workspace and the one project of a standalone manager.
const DEFAULT_WORKSPACE: &str = "default";
const DEFAULT_PROJECT: &str = "default";

/// Runs the manager until `ctx.shutdown` is cancelled. `listener` is a socket the supervisor
/// bound for us; without one the manager binds `[server] host`/`port` itself.
pub async fn run(
    ctx: DaemonContext,
    listener: Option<std::net::TcpListener>,
) -> Result<(), StartError> {
    warn_inactive_config(&ctx.config);
    plumbing::uds::ensure_run_dir(&ctx.data)?;
    let _lock = LockFile::acquire(&ctx.data.daemon_lock(Daemon::Manager))?;
    // Before the admin token: a start that cannot serve must not spend the one-time print.
    let listener = server::listen(&ctx.config.server, listener).await?;
    let store = store::Store::open(ctx.config.database_path()).await?;
    // Off the reactor: a first start fsyncs the key and its directory.
    let signing_key = {
        let root = ctx.data.root().to_path_buf();
        tokio::task::spawn_blocking(move || signing_key::SigningKey::load_or_create(&root))
            .await??
    };
    bootstrap::admin_token(
        &store,
        ctx.data.root(),
        ctx.config.base_url(),
        std::io::stdout(),
    )
    .await?;
    // Locks are not cleared here, unlike the public manager: no loop of ours holds any, and
    // a push client's lease must survive a restart of the manager. A lock whose holder died
    // is broken by the next acquire after five minutes.
    let daemons = daemons::Daemons::new(&ctx.data);
    let state = state::AppState {
        store,
        base_url: ctx.config.base_url().into(),
        registry: std::sync::Arc::new(registry::Proxy::new(
            registry::routing::RegistryRoutes::from_config(&ctx.config.artifact_registry),
            daemons.registryd.clone(),
            signing_key.as_bytes(),
        )),
        daemons,
        signing_key,
        telemetry_max_body_bytes: usize::try_from(ctx.config.telemetry.max_body_bytes)
            .unwrap_or(usize::MAX),
        shutdown: ctx.shutdown.clone(),
        changes: services::changes::DeploymentChanges::default(),
        volumes: volumes::Volumes::new(ctx.data.root(), &ctx.config.database_path()),
        executable: Default::default(),
    };
    let system = system_socket::serve(&ctx.data, state.clone(), ctx.shutdown.child_token()).await?;
    let open_files = plumbing::fd_limit::current().unwrap_or(u64::MAX);
    let limits = connections::Limits::new(&ctx.config.server, open_files);
    let served = server::serve(listener, server::router(state), limits, ctx.shutdown).await;
    let _ = system.await;
    served
}

/// The public manager acts on these settings; we accept them so that its files keep working,
/// and say that they do nothing yet rather than ignore them silently. Only the keys are
/// logged: the values may hold credentials.
fn warn_inactive_config(config: &Config) {
    let registry = &config.artifact_registry;
    let impersonation = &config.impersonation;
    let settings = [
        ("artifact-registry.default", registry.default.is_some()),
        ("artifact-registry.aws", registry.aws.is_some()),
        ("artifact-registry.gcp", registry.gcp.is_some()),
        ("artifact-registry.azure", registry.azure.is_some()),
        ("impersonation.aws", impersonation.aws.is_some()),
        ("impersonation.gcp", impersonation.gcp.is_some()),
        ("impersonation.azure", impersonation.azure.is_some()),
        ("commands.kv", config.commands.kv.is_some()),
        ("commands.storage", config.commands.storage.is_some()),
        (
            "database.encryption-key",
            config.database.encryption_key.is_some(),
        ),
    ];
    for (key, _) in settings.into_iter().filter(|(_, set)| *set) {
        warn!(key, "configuration accepted but not acted on yet");
    }
}

#[cfg(test)]
mod tests;
