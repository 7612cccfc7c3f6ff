//! The public HTTP listener: the routes, the socket, and stopping gracefully.

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use plumbing::config::ServerConfig;
use plumbing::{DataDir, notify};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::Error;
use crate::routes::{health, whoami};
use crate::store::Store;

/// The public manager's limit on request bodies (axum's default, spec §0), set explicitly so
/// that it does not move with axum.
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub data: DataDir,
}

/// Unknown paths get axum's empty 404 and known paths with another method its empty 405,
/// as in the public manager.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/v1/whoami", get(whoami::whoami))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The socket the supervisor handed over, or one bound to `[server] host`/`port`.
pub async fn listen(
    config: &ServerConfig,
    inherited: Option<std::net::TcpListener>,
) -> Result<TcpListener, Error> {
    if let Some(listener) = inherited {
        let failed = |source| Error::Listen {
            addr: "the socket handed over by the supervisor".into(),
            source,
        };
        listener.set_nonblocking(true).map_err(failed)?;
        return TcpListener::from_std(listener).map_err(failed);
    }
    let ip: IpAddr = config.host.parse().map_err(|_| Error::Listen {
        addr: config.host.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an IP address"),
    })?;
    let addr = SocketAddr::new(ip, config.port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => Error::PortInUse { addr },
            _ => Error::Listen {
                addr: addr.to_string(),
                source,
            },
        })
}

/// Serves until `shutdown`, then lets the requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(Error::Serve)?;
    info!("Alien Manager running on http://{addr}");
    notify::ready();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            notify::stopping();
        })
        .await
        .map_err(Error::Serve)
}
