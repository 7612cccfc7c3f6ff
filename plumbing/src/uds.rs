//! HTTP/1.1 between the processes: how the sidecars serve on their Unix sockets, and how the
//! manager and the supervisor reach them (and the manager's own port).

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tracing::{debug, info};

use crate::lock::{LockError, LockFile};
use crate::{Daemon, DaemonContext, DataDir, notify};

#[derive(Debug, thiserror::Error)]
pub enum UdsError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("connect to {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP over {}: {source}", path.display())]
    Http { path: PathBuf, source: hyper::Error },
    #[error("no answer from {} within {timeout:?}", path.display())]
    Timeout { path: PathBuf, timeout: Duration },
}

/// Creates `<data>/run` private to the service user: whoever can reach the sockets can talk
/// to the daemons without a token.
pub fn ensure_run_dir(data: &DataDir) -> Result<(), UdsError> {
    let path = data.run_dir();
    let io = |action, source| UdsError::Io {
        action,
        path: path.clone(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&path)
        .map_err(|e| io("create", e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io("set permissions of", e))
}

/// Binds `path` (replacing a socket file left by a dead predecessor) with mode 0600.
/// Callers hold the daemon's lock, so the file being replaced is never a live socket.
pub fn bind(path: &Path) -> Result<UnixListener, UdsError> {
    let io = |action, source| UdsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => debug!(path = %path.display(), "removed stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove stale socket", e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| io("bind", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("set permissions of", e))?;
    Ok(listener)
}

/// Runs a sidecar's HTTP API on its socket until shutdown: creates its state directory, takes
/// its lock, binds, adds `GET /health`, reports ready, serves, and finishes the requests in
/// flight before returning.
pub async fn serve_sidecar(
    ctx: &DaemonContext,
    daemon: Daemon,
    router: Router,
) -> Result<(), UdsError> {
    Sidecar::bind(ctx, daemon)?.serve(ctx, router).await
}

/// A sidecar's socket, bound under its lock, before it serves: a daemon that has work to do
/// before it can serve its API, but must answer its health check at once, binds first.
#[derive(Debug)]
pub struct Sidecar {
    listener: UnixListener,
    path: PathBuf,
    _lock: LockFile,
}

impl Sidecar {
    /// Creates the daemon's state directory, takes its lock and binds its socket.
    pub fn bind(ctx: &DaemonContext, daemon: Daemon) -> Result<Sidecar, UdsError> {
        let state = ctx.data.state_dir(daemon);
        std::fs::create_dir_all(&state).map_err(|source| UdsError::Io {
            action: "create",
            path: state,
            source,
        })?;
        ensure_run_dir(&ctx.data)?;
        let lock = LockFile::acquire(&ctx.data.daemon_lock(daemon))?;
        let path = ctx.data.socket(daemon);
        let listener = bind(&path)?;
        Ok(Sidecar {
            listener,
            path,
            _lock: lock,
        })
    }

    /// Adds `GET /health`, reports ready, serves until shutdown and finishes the requests in
    /// flight.
    pub async fn serve(self, ctx: &DaemonContext, router: Router) -> Result<(), UdsError> {
        let Sidecar {
            listener,
            path,
            _lock,
        } = self;
        let router = router.route("/health", routing::get(healthy));
        info!(socket = %path.display(), "listening");
        notify::ready();
        let shutdown = ctx.shutdown.clone();
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.cancelled().await;
                notify::stopping();
            })
            .await;
        // Best effort: a later start replaces the file anyway.
        let _ = std::fs::remove_file(&path);
        served.map_err(|source| UdsError::Io {
            action: "serve on",
            path,
            source,
        })
    }
}

async fn healthy() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "healthy"}))
}

/// Sends one request over a fresh connection to `socket`.
pub async fn send(socket: &Path, request: Request<Body>) -> Result<Response<Incoming>, UdsError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| UdsError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    exchange(stream, request)
        .await
        .map_err(|source| UdsError::Http {
            path: socket.to_path_buf(),
            source,
        })
}

/// `GET path` on a daemon's socket with a deadline, returning the status and body.
pub async fn get(
    socket: &Path,
    path: &str,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), UdsError> {
    let exchange = async {
        let response = send(socket, get_request(path)).await?;
        collect(response).await.map_err(|source| UdsError::Http {
            path: socket.to_path_buf(),
            source,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(UdsError::Timeout {
                path: socket.to_path_buf(),
                timeout,
            })
        })
}

/// `GET path` on the manager's public TCP port with a deadline: how the supervisor and
/// `alien health` see what a load balancer would.
pub async fn get_tcp(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(StatusCode, Bytes)> {
    let exchange = async {
        let stream = TcpStream::connect(addr).await?;
        let response = exchange(stream, get_request(path))
            .await
            .map_err(std::io::Error::other)?;
        collect(response).await.map_err(std::io::Error::other)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

fn get_request(path: &str) -> Request<Body> {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = http::Uri::try_from(path).unwrap_or_else(|_| http::Uri::from_static("/"));
    request.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_static("localhost"),
    );
    request
}

async fn exchange<S>(stream: S, request: Request<Body>) -> Result<Response<Incoming>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!(%error, "connection ended");
        }
    });
    sender.send_request(request).await
}

async fn collect(response: Response<Incoming>) -> Result<(StatusCode, Bytes), hyper::Error> {
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn a_sidecar_serves_on_its_socket_and_stops_when_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = DaemonContext {
            config: Default::default(),
            data: DataDir::new(dir.path()),
            shutdown: CancellationToken::new(),
        };
        let router = Router::new();
        let server = tokio::spawn({
            let ctx = ctx.clone();
            async move { serve_sidecar(&ctx, Daemon::Registryd, router).await }
        });
        let socket = ctx.data.socket(Daemon::Registryd);
        let mut answer = None;
        for _ in 0..100 {
            if let Ok(got) = get(&socket, "/health", Duration::from_secs(1)).await {
                answer = Some(got);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, body) = answer.expect("sidecar answered");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], br#"{"status":"healthy"}"#);
        assert!(ctx.data.state_dir(Daemon::Registryd).is_dir());
        let mode = std::fs::metadata(&socket)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let run_mode = std::fs::metadata(ctx.data.run_dir())
            .expect("run")
            .permissions()
            .mode();
        assert_eq!(run_mode & 0o777, 0o700);

        let second = serve_sidecar(&ctx, Daemon::Registryd, Router::new()).await;
        assert!(matches!(
            second,
            Err(UdsError::Lock(LockError::Held { .. }))
        ));

        ctx.shutdown.cancel();
        server.await.expect("joined").expect("clean stop");
        assert!(!socket.exists(), "socket removed on stop");
    }
}
