//! The manager's one way to call its daemons over their Unix sockets. Every call to
//! registryd, commandd and otelfwd goes through a [`DaemonClient`], so the three share one
//! policy:
//!
//! | what | rule |
//! |---|---|
//! | connections | pooled and kept alive per socket (at most [`MAX_IDLE`] idle, closed after [`IDLE_TIMEOUT`]); a request is never sent on a connection the daemon has closed |
//! | the daemon is restarting | a socket that refuses connections is dialled again every [`RECONNECT_PAUSE`] for up to [`CONNECT_PATIENCE`]: nothing has reached the daemon, so this is safe for any call whose body we hold |
//! | timeout | the answer's head must arrive within [`ANSWER_TIMEOUT`] plus the time the call lets the daemon wait (a long poll, a collection); a streamed body has none, since its sender sets the pace |
//! | retries | a `GET` or `HEAD` whose exchange broke off after connecting is sent once more; nothing else is, since the daemon may have acted on it |
//! | failure | [`DaemonError`]; the routes answer it as `503` with `Retry-After` ([`crate::Error::Daemon`]) |
//!
//! The daemons' own answers, errors included, are not failures here: each caller decides
//! what to pass on.

mod connection;

use std::time::Duration;

use axum::body::{Body, Bytes};
use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use plumbing::{Daemon, DataDir};
use tokio::time::Instant;

use connection::Connector;

/// Idle connections kept per socket, and for how long: enough for a client pushing layers
/// in parallel, and none left behind long after it.
pub const MAX_IDLE: usize = 64;
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a call waits for a daemon that is being restarted (a restart after a crash
/// takes a fraction of a second, more under the supervisor's backoff).
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(5);
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// How long a daemon may take to start answering a call it does not hold on purpose. Every
/// daemon answers from local disk; the slowest answer is otelfwd's, given only once the
/// request is fsynced, which a busy disk can hold for seconds. Past this the daemon hangs.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a health probe waits: short enough for a load balancer's check to get an
/// answer in time.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A client for each daemon the manager calls.
#[derive(Debug, Clone)]
pub struct Daemons {
    pub registryd: DaemonClient,
    pub commandd: DaemonClient,
    pub otelfwd: DaemonClient,
}

impl Daemons {
    pub fn new(data: &DataDir) -> Daemons {
        Daemons {
            registryd: DaemonClient::new(Daemon::Registryd, data),
            commandd: DaemonClient::new(Daemon::Commandd, data),
            otelfwd: DaemonClient::new(Daemon::Otelfwd, data),
        }
    }

    /// Every client, in the order the supervisor starts the daemons.
    pub fn all(&self) -> [&DaemonClient; 3] {
        [&self.otelfwd, &self.registryd, &self.commandd]
    }
}

/// A call could not be made, or broke off before its answer's head arrived.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{daemon} cannot be reached: {source}")]
    Unreachable {
        daemon: Daemon,
        source: hyper_util::client::legacy::Error,
    },
    #[error("{daemon} broke off the exchange: {source}")]
    Broken {
        daemon: Daemon,
        source: hyper_util::client::legacy::Error,
    },
    #[error("{daemon} did not answer within {timeout:?}")]
    Timeout { daemon: Daemon, timeout: Duration },
    /// The answer's body broke off, or was larger than the caller reads.
    #[error("{daemon}'s answer could not be read: {reason}")]
    Answer { daemon: Daemon, reason: String },
    /// A path we could not put into a request: our mistake, not the daemon's.
    #[error("bad request target {target:?} for {daemon}")]
    Target { daemon: Daemon, target: String },
}

impl DaemonError {
    pub fn daemon(&self) -> Daemon {
        match self {
            DaemonError::Unreachable { daemon, .. }
            | DaemonError::Broken { daemon, .. }
            | DaemonError::Timeout { daemon, .. }
            | DaemonError::Answer { daemon, .. }
            | DaemonError::Target { daemon, .. } => *daemon,
        }
    }

    /// Whether the daemon is down or restarting (as opposed to a bug of ours).
    pub fn is_unavailable(&self) -> bool {
        !matches!(self, DaemonError::Target { .. })
    }
}

/// What a call sends.
#[derive(Debug)]
enum Outgoing {
    Empty,
    /// A body we hold, which can be sent again.
    Bytes(Bytes),
    /// A body streamed from the client as it arrives, which can be sent only once.
    Stream(Body),
}

/// One request to a daemon: its method, path and query, headers and body.
#[derive(Debug)]
pub struct Call {
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Outgoing,
    wait: Duration,
}

impl Call {
    pub fn new(method: Method, target: impl Into<String>) -> Call {
        Call {
            method,
            target: target.into(),
            headers: HeaderMap::new(),
            body: Outgoing::Empty,
            wait: Duration::ZERO,
        }
    }

    pub fn get(target: impl Into<String>) -> Call {
        Call::new(Method::GET, target)
    }

    pub fn post(target: impl Into<String>) -> Call {
        Call::new(Method::POST, target)
    }

    /// A body we hold; its `Content-Type` is the caller's to set.
    pub fn bytes(mut self, bytes: impl Into<Bytes>) -> Call {
        self.body = Outgoing::Bytes(bytes.into());
        self
    }

    /// `body` as JSON.
    pub fn json(self, body: &impl serde::Serialize) -> Result<Call, serde_json::Error> {
        let bytes = serde_json::to_vec(body)?;
        Ok(self
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .bytes(bytes))
    }

    /// A body streamed through as it arrives; the call cannot then be retried. A body that
    /// is known to be empty (a pull's) is no stream, so that call can.
    pub fn stream(mut self, body: Body) -> Call {
        self.body = if body.is_end_stream() {
            Outgoing::Empty
        } else {
            Outgoing::Stream(body)
        };
        self
    }

    /// The values of the headers in `names` that `from` has.
    pub fn headers_from(mut self, from: &HeaderMap, names: &[HeaderName]) -> Call {
        for name in names {
            for value in from.get_all(name) {
                self.headers.append(name.clone(), value.clone());
            }
        }
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Call {
        self.headers.insert(name, value);
        self
    }

    #[cfg(test)]
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Lets the daemon hold the answer this long on purpose (a long poll), beyond
    /// [`ANSWER_TIMEOUT`].
    pub fn waiting(mut self, wait: Duration) -> Call {
        self.wait = wait;
        self
    }
}

/// HTTP/1.1 to one daemon's socket, on pooled kept-alive connections.
#[derive(Debug, Clone)]
pub struct DaemonClient {
    daemon: Daemon,
    http: Client<Connector, Body>,
    patience: Patience,
}

/// How long a call waits to connect and for an answer: the constants above, shorter in
/// tests.
#[derive(Debug, Clone, Copy)]
struct Patience {
    connect: Duration,
    answer: Duration,
}

const PATIENCE: Patience = Patience {
    connect: CONNECT_PATIENCE,
    answer: ANSWER_TIMEOUT,
};

impl DaemonClient {
    pub fn new(daemon: Daemon, data: &DataDir) -> DaemonClient {
        DaemonClient::at(daemon, &data.socket(daemon), PATIENCE)
    }

    fn at(daemon: Daemon, socket: &std::path::Path, patience: Patience) -> DaemonClient {
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE)
            .build(Connector::new(socket));
        DaemonClient {
            daemon,
            http,
            patience,
        }
    }

    pub fn daemon(&self) -> Daemon {
        self.daemon
    }

    /// Sends `call` by the rules of this module and hands back the daemon's answer, whose
    /// body is still to be read.
    pub async fn send(&self, call: Call) -> Result<Response<Incoming>, DaemonError> {
        let Call {
            method,
            target,
            headers,
            body,
            wait,
        } = call;
        let uri: Uri = format!("http://{}{target}", self.daemon)
            .parse()
            .map_err(|_| DaemonError::Target {
                daemon: self.daemon,
                target: target.clone(),
            })?;
        let request = |body: Body| {
            let mut request = Request::new(body);
            *request.method_mut() = method.clone();
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = headers.clone();
            request
        };
        let bytes = match body {
            Outgoing::Stream(body) => {
                return self
                    .http
                    .request(request(body))
                    .await
                    .map_err(|source| self.failure(source));
            }
            Outgoing::Empty => None,
            Outgoing::Bytes(bytes) => Some(bytes),
        };
        let timeout = self.patience.answer + wait;
        let started = Instant::now();
        let mut resent = false;
        loop {
            let body = bytes.clone().map_or_else(Body::empty, Body::from);
            let answer =
                tokio::time::timeout_at(started + timeout, self.http.request(request(body)))
                    .await
                    .map_err(|_| DaemonError::Timeout {
                        daemon: self.daemon,
                        timeout,
                    })?;
            let source = match answer {
                Ok(response) => return Ok(response),
                Err(source) => source,
            };
            if source.is_connect() {
                if started.elapsed() + RECONNECT_PAUSE < self.patience.connect {
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            } else if !resent && matches!(method, Method::GET | Method::HEAD) {
                resent = true;
                continue;
            }
            return Err(self.failure(source));
        }
    }

    /// The whole body of a small answer (JSON, an error envelope), at most `limit` bytes.
    pub async fn read(
        &self,
        response: Response<Incoming>,
        limit: usize,
    ) -> Result<Bytes, DaemonError> {
        Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|error| DaemonError::Answer {
                daemon: self.daemon,
                reason: error.to_string(),
            })
    }

    /// `GET /health` within [`PROBE_TIMEOUT`], once: `Err` says why the daemon is not
    /// healthy, without the socket's path (health needs no token).
    pub async fn probe(&self) -> Result<(), String> {
        let uri: Uri = format!("http://{}/health", self.daemon)
            .parse()
            .map_err(|_| "bad probe path".to_owned())?;
        let exchange = self.http.get(uri);
        match tokio::time::timeout(PROBE_TIMEOUT, exchange).await {
            Ok(Ok(response)) if response.status().is_success() => Ok(()),
            Ok(Ok(response)) => Err(format!("HTTP {}", response.status().as_u16())),
            Ok(Err(error)) => Err(cause(&error)),
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    }

    fn failure(&self, source: hyper_util::client::legacy::Error) -> DaemonError {
        let daemon = self.daemon;
        if source.is_connect() {
            DaemonError::Unreachable { daemon, source }
        } else {
            DaemonError::Broken { daemon, source }
        }
    }
}

/// The innermost cause of a client error, which says what happened ("connection refused")
/// where the outer ones only say where.
fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

#[cfg(test)]
mod tests;
