//! HTTP/1.1 to registryd over its Unix socket, on kept-alive connections.
//!
//! A push of many small layers is many short requests: a connection per request would add
//! a connect and an accept to each, so connections are pooled (hyper's client, with a
//! connector that dials the socket whatever the URI says). Bodies are streamed both ways
//! without being copied: the client's request body is registryd's, and registryd's
//! response body is the client's, so memory stays bounded by hyper's buffers whatever
//! the blob's size.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderName};
use http::{HeaderMap, Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::UnixStream;

use super::location::UPSTREAM_ORIGIN;

/// Idle connections kept, and how long: enough for a client pushing layers in parallel,
/// and none left behind long after it.
const MAX_IDLE: usize = 64;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The request headers registryd acts on (protocols §4.5); nothing else is forwarded, the
/// credentials least of all. Framing (`Content-Length` or chunked) follows the body.
const FORWARDED_REQUEST_HEADERS: [HeaderName; 9] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::ACCEPT,
    header::RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
];

/// Headers about one connection, not the message (RFC 9110 §7.6.1): never copied from
/// registryd's answer to the client's.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// registryd's HTTP API, reached over `<data>/run/registryd.sock`.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<Connector, Body>,
    socket: Arc<Path>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach registryd on {}: {source}", socket.display())]
    Unreachable {
        socket: PathBuf,
        source: hyper_util::client::legacy::Error,
    },
    #[error("exchange with registryd on {} failed: {source}", socket.display())]
    Failed {
        socket: PathBuf,
        source: hyper_util::client::legacy::Error,
    },
    #[error("bad request target {target:?} for registryd")]
    Target { target: String },
}

impl Upstream {
    pub fn new(socket: PathBuf) -> Upstream {
        let socket: Arc<Path> = socket.into();
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE)
            .build(Connector {
                socket: socket.clone(),
            });
        Upstream { client, socket }
    }

    /// `method path_and_query` on registryd with `body` and the headers of `headers` that
    /// registryd acts on. The answer's body is still to be read.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let uri: Uri = format!("{UPSTREAM_ORIGIN}{path_and_query}")
            .parse()
            .map_err(|_| UpstreamError::Target {
                target: path_and_query.to_owned(),
            })?;
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        let forwarded = request.headers_mut();
        for name in FORWARDED_REQUEST_HEADERS {
            for value in headers.get_all(&name) {
                forwarded.append(name.clone(), value.clone());
            }
        }
        self.client.request(request).await.map_err(|source| {
            let socket = self.socket.to_path_buf();
            if source.is_connect() {
                UpstreamError::Unreachable { socket, source }
            } else {
                UpstreamError::Failed { socket, source }
            }
        })
    }
}

/// Removes the headers that are about registryd's connection rather than its answer.
pub fn drop_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Dials registryd's socket, whatever the request's URI names.
#[derive(Debug, Clone)]
struct Connector {
    socket: Arc<Path>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let socket = self.socket.clone();
        Box::pin(async move { Ok(Stream::new(UnixStream::connect(&*socket).await?)) })
    }
}

/// A connection to the socket, as hyper's client takes one.
///
/// registryd may answer before it has read a whole request body (a manifest over its size
/// limit) and close the connection. Writing the rest then fails, and hyper reports that
/// failure instead of the answer when it sees it first. So once the peer has stopped
/// reading, what is written is dropped unsent: hyper goes on to read the answer (or, if
/// there is none, the end of the connection, which fails the exchange as before).
#[derive(Debug)]
struct Stream {
    io: TokioIo<UnixStream>,
    peer_stopped_reading: bool,
}

impl Stream {
    fn new(stream: UnixStream) -> Stream {
        Stream {
            io: TokioIo::new(stream),
            peer_stopped_reading: false,
        }
    }

    /// `written` unless it says the peer stopped reading, which makes every write from now
    /// on a success that sends nothing.
    fn unless_peer_stopped(&mut self, written: io::Result<usize>, len: usize) -> io::Result<usize> {
        match written {
            Err(e) if is_peer_gone(&e) => {
                self.peer_stopped_reading = true;
                Ok(len)
            }
            other => other,
        }
    }
}

fn is_peer_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.peer_stopped_reading {
            return Poll::Ready(Ok(buf.len()));
        }
        let written = ready!(Pin::new(&mut this.io).poll_write(cx, buf));
        Poll::Ready(this.unless_peer_stopped(written, buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = bufs.iter().map(|b| b.len()).sum();
        if this.peer_stopped_reading {
            return Poll::Ready(Ok(len));
        }
        let written = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs));
        Poll::Ready(this.unless_peer_stopped(written, len))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.peer_stopped_reading {
            return Poll::Ready(Ok(()));
        }
        let flushed = ready!(Pin::new(&mut this.io).poll_flush(cx));
        Poll::Ready(this.unless_peer_stopped(flushed.map(|()| 0), 0).map(drop))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.peer_stopped_reading {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::Request as AxumRequest;
    use axum::routing::any;
    use http_body_util::BodyExt;

    use super::*;

    /// A registryd stand-in on a socket that echoes what it got and counts connections.
    async fn echo_server(dir: &Path) -> (PathBuf, Arc<AtomicUsize>) {
        let socket = dir.join("echo.sock");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        let accepted = Arc::new(AtomicUsize::new(0));
        let router = Router::new().fallback(any(|request: AxumRequest| async move {
            let (parts, body) = request.into_parts();
            let headers: Vec<String> = parts
                .headers
                .iter()
                .map(|(n, v)| format!("{n}={}", v.to_str().unwrap_or("?")))
                .collect();
            let body = body.collect().await.expect("body").to_bytes();
            format!(
                "{} {} [{}] {}",
                parts.method,
                parts.uri,
                headers.join(" "),
                body.len()
            )
        }));
        let counted = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (socket, accepted)
    }

    #[tokio::test]
    async fn requests_reuse_connections_and_forward_only_what_registryd_needs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (socket, accepted) = echo_server(dir.path()).await;
        let upstream = Upstream::new(socket);
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer ax_admin_secret"),
            ("content-type", "application/octet-stream"),
            ("content-length", "5"),
            ("content-range", "0-4"),
            ("x-forwarded-host", "mgr.test"),
            ("cookie", "a=b"),
        ] {
            headers.insert(name, value.parse().expect("header"));
        }
        for _ in 0..5 {
            let response = upstream
                .send(
                    Method::PATCH,
                    "/v2/a/blobs/uploads/x?digest=sha256%3Aab",
                    &headers,
                    Body::from("12345"),
                )
                .await
                .expect("answer");
            let text = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let text = String::from_utf8_lossy(&text);
            assert!(
                text.starts_with("PATCH /v2/a/blobs/uploads/x?digest=sha256%3Aab ["),
                "{text}"
            );
            for present in [
                "content-type=application/octet-stream",
                "content-length=5",
                "content-range=0-4",
                "host=registryd",
            ] {
                assert!(text.contains(present), "{present} in {text}");
            }
            for absent in ["authorization", "x-forwarded-host", "cookie"] {
                assert!(!text.contains(absent), "{absent} in {text}");
            }
            assert!(text.ends_with("] 5"), "{text}");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one kept-alive connection"
        );
    }

    /// A registryd stand-in that answers 413 after the first bytes of each body and closes
    /// the connection without reading the rest, as registryd does with a manifest too large.
    async fn early_answer_server(dir: &Path) -> PathBuf {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = dir.join("early.sock");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big!")
                        .await;
                    // Dropped with the rest of the body unread.
                });
            }
        });
        socket
    }

    #[tokio::test]
    async fn an_answer_sent_before_the_body_was_read_is_the_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let upstream = Upstream::new(early_answer_server(dir.path()).await);
        let body = vec![7u8; 8 * 1024 * 1024];
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, body.len().into());
        for attempt in 0..20 {
            let response = upstream
                .send(
                    Method::PUT,
                    "/v2/a/manifests/big",
                    &headers,
                    Body::from(body.clone()),
                )
                .await
                .unwrap_or_else(|e| panic!("attempt {attempt}: {e:?}"));
            assert_eq!(response.status(), 413, "attempt {attempt}");
            let text = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            assert_eq!(&text[..], b"too big!", "attempt {attempt}");
        }
    }

    #[tokio::test]
    async fn writes_after_the_peer_stopped_reading_send_nothing_and_the_answer_is_still_read() {
        use std::future::poll_fn;
        let (ours, peer) = UnixStream::pair().expect("pair");
        let mut stream = Stream::new(ours);
        {
            use tokio::io::AsyncWriteExt;
            let mut peer = peer;
            peer.write_all(b"answer").await.expect("peer writes");
        }
        // The peer is gone: without the guard this is EPIPE.
        for _ in 0..3 {
            let written = poll_fn(|cx| Pin::new(&mut stream).poll_write(cx, b"more body")).await;
            assert_eq!(written.expect("dropped, not failed"), 9);
        }
        poll_fn(|cx| Pin::new(&mut stream).poll_flush(cx))
            .await
            .expect("flushed");
        let mut raw = [0u8; 16];
        let mut buf = hyper::rt::ReadBuf::new(&mut raw);
        poll_fn(|cx| Pin::new(&mut stream).poll_read(cx, buf.unfilled()))
            .await
            .expect("read");
        assert_eq!(buf.filled(), b"answer");
    }

    #[tokio::test]
    async fn a_missing_socket_is_unreachable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let upstream = Upstream::new(dir.path().join("nobody.sock"));
        let error = upstream
            .send(Method::GET, "/v2/", &HeaderMap::new(), Body::empty())
            .await
            .expect_err("no socket");
        assert!(
            matches!(error, UpstreamError::Unreachable { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("content-length", "3"),
            ("location", "/v2/a/blobs/uploads/x"),
            ("docker-content-digest", "sha256:ab"),
        ] {
            headers.insert(name, value.parse().expect("header"));
        }
        drop_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            ["content-length", "docker-content-digest", "location"]
        );
    }
}
