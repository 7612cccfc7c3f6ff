//! The public HTTP listener: the routes, the socket, and stopping gracefully.

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post, put};
use plumbing::config::ServerConfig;
use plumbing::notify;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::StartError;
use crate::connections::{self, Limits};
use crate::extract::BODY_LIMIT;
use crate::routes::{
    build_config, commands, deployment_groups, deployments, health, initialize, install, registry,
    releases, sync, telemetry, tokens, unsupported, whoami,
};
use crate::state::AppState;
use crate::{unread_body, volumes};

/// Unknown paths get axum's empty 404 and known paths with another method its empty 405,
/// as in the public manager.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/install", get(install::script))
        .route("/install/alien", get(install::binary))
        .route("/install/alien.sha256", get(install::checksum))
        .route("/v1/whoami", get(whoami::whoami))
        .route("/v1/tokens", get(tokens::list))
        .route("/v1/tokens/{id}", delete(tokens::revoke))
        .route("/v1/releases", post(releases::create).get(releases::list))
        // `latest` is no release id: axum prefers the literal segment to `{id}` in any order.
        .route("/v1/releases/latest", get(releases::latest))
        .route("/v1/releases/{id}", get(releases::get))
        .route(
            "/v1/deployment-groups",
            post(deployment_groups::create).get(deployment_groups::list),
        )
        .route("/v1/deployment-groups/{id}", get(deployment_groups::get))
        .route(
            "/v1/deployment-groups/{id}/tokens",
            post(deployment_groups::create_token),
        )
        .route(
            "/v1/deployments",
            post(deployments::create).get(deployments::list),
        )
        .route("/v1/deployments/{id}", get(deployments::get))
        .route("/v1/deployments/{id}/info", get(deployments::info))
        .route("/v1/deployments/{id}/delete", post(deployments::delete))
        .route("/v1/deployments/{id}/retry", post(deployments::retry))
        .route("/v1/deployments/{id}/redeploy", post(deployments::redeploy))
        .route(
            "/v1/deployments/{id}/vault/{vault}/secrets/{key}",
            put(unsupported::vault_put).get(unsupported::vault_get),
        )
        .route("/v1/initialize", post(initialize::initialize))
        .route("/v1/sync", post(sync::sync))
        .route("/v1/sync/acquire", post(sync::acquire))
        .route("/v1/sync/reconcile", post(sync::reconcile))
        .route("/v1/sync/renew", post(sync::renew))
        .route("/v1/sync/release", post(sync::release))
        .route("/v1/stack/import", post(unsupported::stack_import))
        .route("/v1/credentials/mint", post(unsupported::mint_credentials))
        .route("/v1/bindings/resolve", post(unsupported::resolve_binding))
        .route("/v1/commands", post(commands::create))
        .route("/v1/commands/leases", post(commands::acquire))
        .route(
            "/v1/commands/leases/{lease_id}/release",
            post(commands::release),
        )
        .route(
            "/v1/commands/storage/{id}/{kind}",
            get(commands::storage).put(commands::storage),
        )
        .route("/v1/commands/{id}", get(commands::status))
        .route(
            "/v1/commands/{id}/upload-complete",
            post(commands::upload_complete),
        )
        .route("/v1/commands/{id}/response", put(commands::submit))
        .route(
            "/v1/commands/{id}/payload",
            get(commands::payload).put(commands::store_payload),
        )
        .route("/v1/build-config", get(build_config::build_config))
        .route("/v1/platforms", get(build_config::platforms))
        .route("/v1/logs", post(telemetry::logs))
        .route("/v1/traces", post(telemetry::traces))
        .route("/v1/metrics", post(telemetry::metrics))
        .route("/v1/telemetry/status", get(telemetry::status))
        .route("/v1/registry/gc", post(registry::collect_garbage))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // After the limit, which applies to the routes above only: registry bodies are
        // streamed to registryd whatever their size.
        .route("/v2", get(registry::version_check))
        .route("/v2/", get(registry::version_check))
        .route(
            "/v2/{*path}",
            get(registry::proxy)
                .post(registry::proxy)
                .put(registry::proxy)
                .patch(registry::proxy)
                .delete(registry::proxy),
        )
        .layer(middleware::from_fn_with_state(
            state.volumes.clone(),
            volumes::watch,
        ))
        .layer(middleware::from_fn(unread_body::drain_unread))
        .with_state(state)
}

/// The socket the supervisor handed over, or one bound to `[server] host`/`port`.
pub async fn listen(
    config: &ServerConfig,
    inherited: Option<std::net::TcpListener>,
) -> Result<TcpListener, StartError> {
    if let Some(listener) = inherited {
        let failed = |source| StartError::Listen {
            addr: "the socket handed over by the supervisor".into(),
            source,
        };
        listener.set_nonblocking(true).map_err(failed)?;
        return TcpListener::from_std(listener).map_err(failed);
    }
    let ip: IpAddr = config.host.parse().map_err(|_| StartError::Listen {
        addr: config.host.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an IP address"),
    })?;
    let addr = SocketAddr::new(ip, config.port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => StartError::PortInUse { addr },
            _ => StartError::Listen {
                addr: addr.to_string(),
                source,
            },
        })
}

/// Serves until `shutdown`, then lets the requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    info!(
        max_connections = limits.max_connections,
        header_read_timeout = ?limits.header_read_timeout,
        keep_alive_timeout = ?limits.keep_alive_timeout,
        "Alien Manager running on http://{addr}"
    );
    notify::ready();
    connections::serve(listener, router, limits, shutdown).await;
    Ok(())
}
