//! A connection to a daemon's Unix socket, as hyper's pooled client dials and uses one.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Dials a daemon's socket, whatever the request's URI names.
#[derive(Debug, Clone)]
pub struct Connector {
    socket: Arc<Path>,
}

impl Connector {
    pub fn new(socket: &Path) -> Connector {
        Connector {
            socket: socket.into(),
        }
    }
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
/// A daemon may answer before it has read a whole request body (registryd does, for a
/// manifest over its size limit) and close the connection. Writing the rest then fails, and hyper reports that
/// failure instead of the answer when it sees it first. So once the peer has stopped
/// reading, what is written is dropped unsent: hyper goes on to read the answer (or, if
/// there is none, the end of the connection, which fails the exchange as before).
#[derive(Debug)]
pub struct Stream {
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
    use super::*;

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
}
