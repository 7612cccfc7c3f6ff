//! Request bodies that a handler answered without reading.
//!
//! An answer often comes before the body: the `401` challenge, a `404` for a namespace the
//! registry does not serve, a `403`. hyper then drops the connection after the answer,
//! without saying so, and a client that reuses connections (Go's, in Docker and containerd)
//! sends its authenticated retry into a closed socket. We do what Go's own server does: read
//! and discard what is left of a small body, then keep the connection; when more is left
//! than that, or the client is waiting for `100 Continue`, answer with `Connection: close`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HeaderValue, TRANSFER_ENCODING};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Bytes, Frame, SizeHint};
use tokio::sync::oneshot;

/// The most that is read and thrown away to keep a connection: Go's server reads 256 KiB.
const DRAIN_LIMIT: usize = 256 * 1024;

/// How long a client may take to send those bytes.
const DRAIN_PATIENCE: Duration = Duration::from_secs(5);

/// The middleware: runs the handler with a body that hands itself back if it is dropped
/// unfinished, then drains it or marks the answer as the connection's last.
pub async fn drain_unread(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if !has_body(&parts.headers) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let awaits_continue = parts.headers.contains_key(EXPECT);
    let (handback, receiver) = oneshot::channel();
    let watched = Body::new(Watched {
        inner: Some(body),
        handback: Some(handback),
    });
    let mut response = next.run(Request::from_parts(parts, watched)).await;

    let keep = match leftover(receiver) {
        Leftover::None => true,
        // Still held by whatever streams it on: whether it will be read to its end is
        // unknown, so the connection cannot be trusted with another request.
        Leftover::InFlight => false,
        Leftover::Unread(body) => {
            let small = declared.is_none_or(|n| n <= DRAIN_LIMIT as u64);
            !awaits_continue && small && discard(body).await
        }
    };
    if !keep {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Whether the request says a body follows.
fn has_body(headers: &http::HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Reads the rest of a body and throws it away; false when it is larger than the limit,
/// breaks off, or is too slow.
async fn discard(body: Body) -> bool {
    let read = Limited::new(body, DRAIN_LIMIT).collect();
    matches!(tokio::time::timeout(DRAIN_PATIENCE, read).await, Ok(Ok(_)))
}

enum Leftover {
    /// Read to its end.
    None,
    /// Dropped before its end.
    Unread(Body),
    /// Neither read to its end nor dropped yet.
    InFlight,
}

/// What became of the body by the time the handler answered.
fn leftover(mut receiver: oneshot::Receiver<Body>) -> Leftover {
    match receiver.try_recv() {
        Ok(body) => Leftover::Unread(body),
        Err(oneshot::error::TryRecvError::Closed) => Leftover::None,
        Err(oneshot::error::TryRecvError::Empty) => Leftover::InFlight,
    }
}

/// A request body that, dropped before its end, hands what is left back to the middleware.
/// Read to its end, it drops the way back, which tells the middleware all was read.
struct Watched {
    inner: Option<Body>,
    handback: Option<oneshot::Sender<Body>>,
}

impl Watched {
    fn note_end(&mut self) {
        if self.inner.as_ref().is_none_or(|b| b.is_end_stream()) {
            self.handback = None;
        }
    }
}

impl hyper::body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                this.inner = None;
                this.handback = None;
            }
            Poll::Ready(Some(Ok(_))) => this.note_end(),
            // A body that failed (the client went away) has nothing left to drain.
            Poll::Ready(Some(Err(_))) => this.handback = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let (Some(handback), Some(inner)) = (self.handback.take(), self.inner.take()) {
            // The middleware may have answered already; then nobody drains it, as before.
            let _ = handback.send(inner);
        }
    }
}
