//! Stable addresses: each compute resource with an endpoint keeps one port on 127.0.0.1 for
//! its whole life, whatever version serves behind it. The gateway forwards each HTTP request
//! to the version active when the request arrives, so an update switches versions between
//! requests: a client's kept-alive connection never breaks, and the old version is stopped
//! only once its requests in flight are answered.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::debug;

/// Opens a connection to one version of a workload (in its network namespace, if it has
/// one).
pub type Connector =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = std::io::Result<TcpStream>> + Send>> + Send + Sync>;

/// One version behind a gateway, and how many requests it is answering.
#[derive(Clone)]
pub struct Backend {
    connect: Connector,
    in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish()
    }
}

impl Backend {
    pub fn new(connect: Connector) -> Backend {
        Backend {
            connect,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A backend at a TCP address reachable from here.
    pub fn at(addr: SocketAddr) -> Backend {
        Backend::new(Arc::new(move || Box::pin(TcpStream::connect(addr))))
    }

    /// Waits until no request is in flight, or `timeout`.
    pub async fn drained(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.in_flight.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

type Active = Arc<Mutex<Option<Backend>>>;

struct Gateway {
    port: u16,
    active: Active,
    task: JoinHandle<()>,
}

/// Every gateway deployd serves, by key (`<deployment>/<resource>`).
#[derive(Default)]
pub struct Gateways {
    gateways: Mutex<HashMap<String, Gateway>>,
}

impl std::fmt::Debug for Gateways {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateways").finish_non_exhaustive()
    }
}

impl Gateways {
    /// The gateway of `key`, opened on `port` (a free one when `None` or taken) if it is not
    /// open yet. Returns its port.
    pub async fn open(&self, key: &str, port: Option<u16>) -> std::io::Result<u16> {
        if let Some(open) = self.lock().get(key) {
            return Ok(open.port);
        }
        let listener = match port {
            Some(port) => match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(listener) => listener,
                Err(_) => TcpListener::bind(("127.0.0.1", 0)).await?,
            },
            None => TcpListener::bind(("127.0.0.1", 0)).await?,
        };
        let port = listener.local_addr()?.port();
        let active: Active = Arc::new(Mutex::new(None));
        let task = tokio::spawn(serve(listener, active.clone()));
        let mut gateways = self.lock();
        if let Some(raced) = gateways.get(key) {
            task.abort();
            return Ok(raced.port);
        }
        gateways.insert(key.to_owned(), Gateway { port, active, task });
        Ok(port)
    }

    /// Sends the requests of `key` to `backend` from now on; returns the one it replaces.
    pub fn switch(&self, key: &str, backend: Backend) -> Option<Backend> {
        let gateways = self.lock();
        let gateway = gateways.get(key)?;
        let mut active = gateway
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        active.replace(backend)
    }

    pub fn close(&self, key: &str) {
        if let Some(gateway) = self.lock().remove(key) {
            gateway.task.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Gateway>> {
        self.gateways.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn serve(listener: TcpListener, active: Active) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let active = active.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| forward(active.clone(), request));
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                debug!(%error, "gateway connection ended");
            }
        });
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, message: &'static str) -> Response<Body> {
    let mut response = Response::new(
        http_body_util::Full::new(Bytes::from_static(message.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

/// Decrements a backend's count of requests in flight when the exchange ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn forward(
    active: Active,
    request: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    // Counted under the lock a switch takes: a switch that returns the old version has
    // seen every request that chose it, so its drain cannot miss one.
    let backend = {
        let active = active.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(backend) = active.clone() else {
            return Ok(text(
                StatusCode::SERVICE_UNAVAILABLE,
                "No version is serving yet\n",
            ));
        };
        backend.in_flight.fetch_add(1, Ordering::AcqRel);
        backend
    };
    let guard = InFlight(backend.in_flight.clone());
    let stream = match (backend.connect)().await {
        Ok(stream) => stream,
        Err(error) => {
            debug!(%error, "cannot reach the serving version");
            return Ok(text(
                StatusCode::BAD_GATEWAY,
                "The serving version is unreachable\n",
            ));
        }
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(_) => {
                return Ok(text(
                    StatusCode::BAD_GATEWAY,
                    "The serving version is unreachable\n",
                ));
            }
        };
    // The exchange counts as in flight until the backend connection ends, which is after
    // the response body has been passed on.
    tokio::spawn(async move {
        let _guard = guard;
        let _ = connection.await;
    });
    match sender.send_request(request).await {
        Ok(response) => Ok(response.map(|body| body.boxed())),
        Err(error) => {
            debug!(%error, "the serving version failed the request");
            Ok(text(
                StatusCode::BAD_GATEWAY,
                "The serving version failed the request\n",
            ))
        }
    }
}
