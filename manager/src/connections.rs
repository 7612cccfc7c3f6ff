//! The public port's connections: how many may be open at once, and how long a client may
//! keep one without sending anything (docs/architecture.md, Connections).
//!
//! A connection is *idle* when no request on it is in flight: it has not sent a complete
//! request head yet, or its last response has been sent in full. Idle connections are closed
//! when a head takes longer than `header-read-timeout-secs` (counted from the connection's
//! opening, or from the first byte of its next request once it has been kept alive), when a
//! kept-alive connection waits longer than `keep-alive-timeout-secs` for its next request,
//! and at the cap: a new connection at `max-connections` closes the connection idle the
//! longest, as nginx reuses its idle connections when `worker_connections` are not enough.
//! When every connection has a request in flight, nothing more is accepted until one ends,
//! and new connections wait in the listen backlog. A request in flight is cut only when its
//! body stops coming for `body-read-timeout-secs` while the handler waits for it, so a long
//! poll, or an upload or download that takes an hour, is never cut short.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http::Request;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use plumbing::config::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use tracing::{debug, warn};

/// Descriptors kept for everything but client connections: the database and its WAL files
/// on each of its connections, the daemon client's idle pooled connections, the listener and
/// the runtime. Each client connection is counted twice: its own socket, and the connection
/// to a daemon its request may hold.
const RESERVED_FILES: u64 = 128;

/// How often idle connections are checked against their deadlines: the timeouts are in
/// seconds, and one pass over a few thousand connections costs nothing.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A warning that can repeat (the cap, a failed accept) is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How long the accept loop rests after an accept failed, so that a failure that persists
/// (no descriptor left) does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
}

impl Limits {
    /// `[server]`'s limits, with the cap lowered to what `open_files` (the soft limit on open
    /// files) allows: past it, accepting fails and every client waits.
    pub fn new(config: &ServerConfig, open_files: u64) -> Limits {
        let configured = usize::try_from(config.max_connections).unwrap_or(usize::MAX);
        let affordable = usize::try_from(open_files.saturating_sub(RESERVED_FILES) / 2)
            .unwrap_or(usize::MAX)
            .max(1);
        if affordable < configured {
            warn!(
                configured,
                lowered_to = affordable,
                open_files,
                "server.max-connections is more than the open-file limit allows; raise the hard limit (ulimit -Hn, LimitNOFILE=) to allow more"
            );
        }
        Limits {
            max_connections: configured.min(affordable),
            header_read_timeout: config.header_read_timeout(),
            body_read_timeout: config.body_read_timeout(),
            keep_alive_timeout: config.keep_alive_timeout(),
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets the requests in flight finish
/// (idle connections are closed at once) and returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let tracker = Arc::new(Tracker::new(limits));
    let sweeper = tokio::spawn(sweep_every_second(tracker.clone()));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracker.accept_failed(&error);
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        // Without TCP_NODELAY a response's last small segment waits for the client's delayed
        // ACK (about 40 ms): small-blob pulls through /v2 stalled on it.
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "cannot set TCP_NODELAY");
        }
        // Checked once the connection is here: while the loop waited for it, the idle
        // connections may have become busy. The ones after it wait in the backlog meanwhile.
        if !tracker.wait_for_room(&shutdown).await {
            break;
        }
        tracker.make_room();
        let connection = tracker.open();
        tokio::spawn(serve_connection(
            stream,
            router.clone(),
            connection,
            shutdown.clone(),
        ));
    }
    plumbing::notify::stopping();
    // New connections are refused from here on.
    drop(listener);
    tracker.wait_all_closed().await;
    sweeper.abort();
}

/// One connection, until it ends, is closed by [`Tracker`], or is idle after `shutdown`.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    connection: Open,
    shutdown: CancellationToken,
) {
    let state = connection.state.clone();
    let tracker = connection.tracker.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let in_flight = InFlight::begin(&connection);
        let mut router = router.clone();
        let request = request.map(|body| TimedBody {
            body,
            timeout: connection.tracker.limits.body_read_timeout,
            stall: None,
            close: connection.state.close.clone(),
        });
        async move {
            std::future::poll_fn(|cx| {
                <Router as Service<Request<TimedBody>>>::poll_ready(&mut router, cx)
            })
            .await?;
            let response = router.call(request).await?;
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(Tracked {
                    body,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    let io = TokioIo::new(Watched {
        stream,
        state: state.clone(),
        tracker: tracker.clone(),
    });
    // The head's timeout is the tracker's, which also covers the wait for a first byte.
    let served = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(served);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(error) = result {
                    debug!(%error, "connection ended");
                }
                break;
            }
            () = state.close.cancelled() => break,
            () = shutdown.cancelled(), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What the tracker knows of one connection. Times are milliseconds since the tracker's
/// epoch, 0 meaning none.
#[derive(Debug, Default)]
struct ConnectionState {
    /// Requests whose response has not been sent in full.
    in_flight: AtomicUsize,
    /// When it was accepted, or its last response was sent in full.
    idle_since: AtomicU64,
    /// When the first byte of its next request came, on a kept-alive connection.
    head_since: AtomicU64,
    /// It has sent a response: it is kept alive, waiting for the next request.
    kept_alive: AtomicBool,
    close: CancellationToken,
}

impl ConnectionState {
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0 && !self.close.is_cancelled()
    }
}

/// Every open connection of the public port.
#[derive(Debug)]
struct Tracker {
    limits: Limits,
    epoch: Instant,
    open: Mutex<HashMap<u64, Arc<ConnectionState>>>,
    next_id: AtomicU64,
    /// A connection closed or became idle: there may be room for the next.
    changed: Notify,
    reused: Throttled,
    full: Throttled,
    accept_errors: Throttled,
}

impl Tracker {
    fn new(limits: Limits) -> Tracker {
        Tracker {
            limits,
            epoch: Instant::now(),
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
            changed: Notify::new(),
            reused: Throttled::default(),
            full: Throttled::default(),
            accept_errors: Throttled::default(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    fn open_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnectionState>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(self: &Arc<Self>) -> Open {
        let state = Arc::new(ConnectionState::default());
        state.idle_since.store(self.now(), Ordering::SeqCst);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.open_map().insert(id, state.clone());
        Open {
            id,
            state,
            tracker: self.clone(),
        }
    }

    /// Below the cap, or with a connection that [`Tracker::make_room`] can close.
    fn has_room(&self) -> bool {
        let open = self.open_map();
        live(&open) < self.limits.max_connections || open.values().any(|c| c.is_idle())
    }

    /// Waits until a new connection can be taken; `false` on shutdown.
    async fn wait_for_room(&self, shutdown: &CancellationToken) -> bool {
        if self.has_room() {
            return true;
        }
        let max = self.limits.max_connections;
        self.full.warn(|times| {
            warn!(
                max_connections = max,
                times,
                "every connection has a request in flight: new connections wait until one ends (server.max-connections)"
            );
        });
        loop {
            tokio::select! {
                () = self.changed.notified() => if self.has_room() {
                    return true;
                },
                () = shutdown.cancelled() => return false,
            }
        }
    }

    /// At the cap, closes the connection that has been idle the longest.
    fn make_room(&self) {
        let open = self.open_map();
        if live(&open) < self.limits.max_connections || !close_oldest_idle(&open) {
            return;
        }
        let max = self.limits.max_connections;
        self.reused.warn(|times| {
            warn!(
                max_connections = max,
                times,
                "connection limit reached: closed the connection idle the longest for a new one (server.max-connections)"
            );
        });
    }

    fn accept_failed(&self, error: &std::io::Error) {
        // Out of descriptors: an idle connection gives one back.
        if matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
            close_oldest_idle(&self.open_map());
        }
        self.accept_errors.warn(|times| {
            warn!(%error, times, "cannot accept a connection");
        });
    }

    /// Closes the idle connections past their deadline.
    fn sweep(&self) {
        let now = self.now();
        for connection in self.open_map().values() {
            if let Some(deadline) = self.deadline(connection)
                && now >= deadline
            {
                connection.close.cancel();
            }
        }
    }

    fn deadline(&self, c: &ConnectionState) -> Option<u64> {
        if !c.is_idle() {
            return None;
        }
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let header = millis(self.limits.header_read_timeout);
        let head_since = c.head_since.load(Ordering::SeqCst);
        let idle_since = c.idle_since.load(Ordering::SeqCst);
        Some(if !c.kept_alive.load(Ordering::SeqCst) {
            idle_since.saturating_add(header)
        } else if head_since != 0 {
            head_since.saturating_add(header)
        } else {
            idle_since.saturating_add(millis(self.limits.keep_alive_timeout))
        })
    }

    async fn wait_all_closed(&self) {
        loop {
            if self.open_map().is_empty() {
                return;
            }
            self.changed.notified().await;
        }
    }
}

/// The connections not being closed.
fn live(open: &HashMap<u64, Arc<ConnectionState>>) -> usize {
    open.values().filter(|c| !c.close.is_cancelled()).count()
}

/// Closes the connection that has been idle the longest, if any is idle.
fn close_oldest_idle(open: &HashMap<u64, Arc<ConnectionState>>) -> bool {
    let oldest = open
        .values()
        .filter(|c| c.is_idle())
        .min_by_key(|c| c.idle_since.load(Ordering::SeqCst));
    oldest.inspect(|c| c.close.cancel()).is_some()
}

async fn sweep_every_second(tracker: Arc<Tracker>) {
    let mut ticks = tokio::time::interval(SWEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        tracker.sweep();
    }
}

/// A connection's place in the tracker, given up when its task ends.
#[derive(Debug)]
struct Open {
    id: u64,
    state: Arc<ConnectionState>,
    tracker: Arc<Tracker>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.tracker.open_map().remove(&self.id);
        self.tracker.changed.notify_one();
    }
}

/// A request in flight on a connection, from its head until its response's last byte.
#[derive(Debug)]
struct InFlight {
    state: Arc<ConnectionState>,
    tracker: Arc<Tracker>,
}

impl InFlight {
    fn begin(connection: &Open) -> InFlight {
        connection.state.in_flight.fetch_add(1, Ordering::SeqCst);
        connection.state.head_since.store(0, Ordering::SeqCst);
        InFlight {
            state: connection.state.clone(),
            tracker: connection.tracker.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The idle clock starts before the connection counts as idle.
        self.state.head_since.store(0, Ordering::SeqCst);
        self.state
            .idle_since
            .store(self.tracker.now(), Ordering::SeqCst);
        self.state.kept_alive.store(true, Ordering::SeqCst);
        if self.state.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.tracker.changed.notify_one();
        }
    }
}

/// A response body that keeps its request in flight until it has been sent in full (or the
/// connection is gone).
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = hyper::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body whose client must not pause longer than `body-read-timeout-secs` while the
/// handler waits for it. The clock runs only while the handler waits: a handler that stops
/// reading (registryd is slow to take a push) does not count against the client. A client
/// that stalls has its connection closed, like a head that takes too long.
struct TimedBody {
    body: Incoming,
    timeout: Duration,
    /// Set when the handler began to wait, until data comes.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    close: CancellationToken,
}

impl hyper::body::Body for TimedBody {
    type Data = hyper::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            self.stall = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = self.timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stall.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        debug!(
            ?timeout,
            "the client sent no more of its request body: closing"
        );
        self.close.cancel();
        Poll::Ready(Some(Err(format!(
            "the client sent nothing of its request body for {timeout:?}"
        )
        .into())))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client's socket, noting when the first byte of a kept-alive connection's next request
/// arrives: from then on its head has `header-read-timeout-secs`.
struct Watched {
    stream: TcpStream,
    state: Arc<ConnectionState>,
    tracker: Arc<Tracker>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let state = &self.state;
        if buf.filled().len() > before
            && state.kept_alive.load(Ordering::SeqCst)
            && state.in_flight.load(Ordering::SeqCst) == 0
        {
            let _ = state.head_since.compare_exchange(
                0,
                self.tracker.now(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Logs a warning that can repeat at most every [`WARN_EVERY`], with how many times it
/// happened since it was last logged.
#[derive(Debug, Default)]
struct Throttled {
    /// When it was last logged, and how many times it happened since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttled {
    fn warn(&self, log: impl FnOnce(u64)) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, times) = &mut *state;
        *times += 1;
        if last.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        log(std::mem::take(times));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_in_the_open_file_limit() {
        let config = ServerConfig::default();
        let roomy = Limits::new(&config, 1 << 20);
        assert_eq!(roomy.max_connections, 1024);
        assert_eq!(roomy.header_read_timeout, Duration::from_secs(60));
        assert_eq!(roomy.body_read_timeout, Duration::from_secs(60));
        assert_eq!(roomy.keep_alive_timeout, Duration::from_secs(75));
        // Two descriptors a connection, after what the rest of the manager keeps.
        assert_eq!(Limits::new(&config, 256).max_connections, 64);
        assert_eq!(Limits::new(&config, 1024).max_connections, 448);
        assert_eq!(Limits::new(&config, 100).max_connections, 1);
    }
}
