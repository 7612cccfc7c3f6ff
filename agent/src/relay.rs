//! The manager on this machine, in plain HTTP: the workloads, the image cache and the
//! telemetry forwarder reach the manager through this relay on 127.0.0.1, so that only the
//! agent knows how to reach it (HTTPS, which certificates to trust). A workload needs no
//! certificate of its own, and one in its own network namespace only a route to this
//! machine's relay. Each request goes to `SYNC_URL`'s base with the caller's own headers,
//! its token included: the relay adds no rights, and holds no token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use plumbing::envelope::ErrorEnvelope;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::connect::Connector;

/// Headers of one connection, not of the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [header::HeaderName; 7] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

struct Upstream {
    /// The manager's base URL, without its trailing `/`.
    base: String,
    client: Client<Connector, Body>,
}

/// Serves the relay on 127.0.0.1 until `shutdown`: on port `preferred` (the last start's,
/// which running workloads were launched with) when it is free, else on any free port.
pub async fn start(
    base: &str,
    connector: Connector,
    preferred: Option<u16>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let bind = |port| tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port));
    let listener = match preferred {
        Some(port) => match bind(port).await {
            Ok(listener) => listener,
            Err(error) => {
                warn!(port, %error, "the relay's last port is taken: workloads launched with it reach the manager again once started anew");
                bind(0).await?
            }
        },
        None => bind(0).await?,
    };
    let address = listener.local_addr()?;
    let upstream = Arc::new(Upstream {
        base: base.to_owned(),
        client: Client::builder(TokioExecutor::new()).build(connector),
    });
    let router = axum::Router::new().fallback(forward).with_state(upstream);
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            warn!(%error, "the relay to the manager stopped");
        }
    });
    Ok(address)
}

async fn forward(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let target = format!("{}{path}", upstream.base);
    parts.uri = match target.parse::<Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            return ErrorEnvelope::new(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("{path} cannot be sent to the manager: {e}"),
            )
            .into_response();
        }
    };
    parts.version = http::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    // The client names the manager's host from the URL.
    parts.headers.remove(header::HOST);
    match upstream
        .client
        .request(Request::from_parts(parts, body))
        .await
    {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(error) => ErrorEnvelope::new(
            StatusCode::BAD_GATEWAY,
            "MANAGER_UNREACHABLE",
            format!(
                "the agent cannot reach the manager at {}: {}",
                upstream.base,
                crate::manager::error_chain(&error)
            ),
        )
        .retryable()
        .into_response(),
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<header::HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| name.trim().parse().ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}
