//! The transport port: `POST /_alien/commands` is the runtime's, every other request goes to
//! the app's registered port. The port is read for each request, so an app that registers
//! late, or again after a restart of its server, is reached (the public runtime reads it once).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::commands::Commands;
use crate::hub::Hub;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// The path the runtime answers itself.
pub const COMMANDS_PATH: &str = "/_alien/commands";

/// How long a connection to the app may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the app may take to start its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// How long open requests may go on once the stop began.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Headers of one hop (RFC 9110 §7.6.1), never passed on.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    if !body.is_empty() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

#[derive(Debug)]
pub struct Proxy {
    hub: Arc<Hub>,
    commands: Arc<Commands>,
    /// Never follows redirects: the app's 3xx goes back to the client as it is.
    client: Client<HttpConnector, Incoming>,
    stopping: CancellationToken,
    /// Where a plain image listens while no HTTP server is registered.
    plain_port: Option<u16>,
}

impl Proxy {
    pub fn new(
        hub: Arc<Hub>,
        commands: Arc<Commands>,
        stopping: CancellationToken,
        plain_port: Option<u16>,
    ) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Proxy {
            hub,
            commands,
            client,
            stopping,
            plain_port,
        }
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        if request.uri().path() == COMMANDS_PATH {
            return if request.method() == http::Method::POST {
                self.commands.accept(request).await
            } else {
                text(StatusCode::METHOD_NOT_ALLOWED, "")
            };
        }
        if self.stopping.is_cancelled() {
            return text(StatusCode::SERVICE_UNAVAILABLE, "Runtime is shutting down");
        }
        let Some(port) = self.hub.app_port().or(self.plain_port) else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "No application registered");
        };
        self.forward(request, port).await
    }

    async fn forward(&self, request: Request<Incoming>, port: u16) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let Ok(uri) = format!("http://127.0.0.1:{port}{path}").parse::<Uri>() else {
            return text(StatusCode::BAD_REQUEST, "Failed to read request");
        };
        parts.uri = uri;
        // HTTP/2 clients name the host in the URI's authority only; the app sees it as Host.
        parts.version = http::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        let outbound = Request::from_parts(parts, body);
        match tokio::time::timeout(ANSWER_TIMEOUT, self.client.request(outbound)).await {
            Ok(Ok(answer)) => {
                let (mut parts, body) = answer.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.boxed())
            }
            Ok(Err(error)) => {
                tracing::warn!(port, %error, "cannot reach the app");
                text(StatusCode::BAD_GATEWAY, "Failed to forward request")
            }
            Err(_) => {
                tracing::warn!(port, "the app did not answer in time");
                text(StatusCode::BAD_GATEWAY, "Failed to forward request")
            }
        }
    }

    /// Serves `listener` until `stopping`, then lets open requests finish for a few seconds.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = self.stopping.cancelled() => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors, typically: wait rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let proxy = self.clone();
            let service = hyper::service::service_fn(move |request| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(request).await) }
            });
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            connections.spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "a transport connection ended");
                }
            });
            while connections.try_join_next().is_some() {}
        }
        drop(listener);
        if tokio::time::timeout(STOP_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::info!("cutting requests still open after the stop grace");
        }
        connections.shutdown().await;
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(named) = headers.get(header::CONNECTION).cloned()
        && let Ok(named) = named.to_str()
    {
        for name in named.split(',') {
            headers.remove(name.trim());
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}
