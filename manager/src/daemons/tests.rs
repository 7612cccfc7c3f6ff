use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::Request as AxumRequest;
use axum::routing::any;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use super::*;

const QUICK: Patience = Patience {
    connect: Duration::from_millis(600),
    answer: Duration::from_millis(300),
};

fn client(socket: &Path) -> DaemonClient {
    DaemonClient::at(Daemon::Registryd, socket, QUICK)
}

async fn text(response: Response<Incoming>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A daemon stand-in that answers each request with what it got, counting connections.
fn echo(listener: UnixListener) -> Arc<AtomicUsize> {
    let accepted = Arc::new(AtomicUsize::new(0));
    let router = Router::new().fallback(any(|request: AxumRequest| async move {
        let (parts, body) = request.into_parts();
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = body.collect().await.expect("body").to_bytes();
        format!("{} {} host={host} {}", parts.method, parts.uri, body.len())
    }));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    accepted
}

fn socket_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("daemon.sock")
}

#[tokio::test]
async fn calls_reuse_one_kept_alive_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = socket_in(&dir);
    let accepted = echo(UnixListener::bind(&socket).expect("bind"));
    let client = client(&socket);
    for _ in 0..5 {
        let call = Call::post("/gc?x=1").bytes("12345");
        let response = client.send(call).await.expect("answer");
        assert_eq!(text(response).await, "POST /gc?x=1 host=registryd 5");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection");
}

#[tokio::test]
async fn a_restarting_daemon_is_waited_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = socket_in(&dir);
    let late = socket.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        echo(UnixListener::bind(&late).expect("bind"));
    });
    let call = Call::post("/leases").bytes("{}");
    let response = client(&socket).send(call).await.expect("answered once up");
    assert_eq!(text(response).await, "POST /leases host=registryd 2");
}

#[tokio::test]
async fn a_daemon_that_stays_down_is_unavailable_after_the_patience() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = client(&socket_in(&dir));
    let started = Instant::now();
    let error = client.send(Call::get("/status")).await.expect_err("down");
    assert!(
        matches!(error, DaemonError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.is_unavailable());
    assert!(started.elapsed() >= Duration::from_millis(500), "waited");
    assert!(started.elapsed() < Duration::from_secs(3), "not longer");

    // A streamed body cannot be sent again, so it is not waited for.
    let started = Instant::now();
    let error = client
        .send(Call::new(Method::PUT, "/v2/a").stream(Body::from("x")))
        .await
        .expect_err("down");
    assert!(
        matches!(error, DaemonError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(300), "at once");
}

/// A daemon stand-in whose first connection is closed without an answer (a crash in the
/// middle of a call), and whose later ones answer `200 ok`.
fn dies_once(listener: UnixListener) -> Arc<AtomicUsize> {
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                if !first {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    accepted
}

#[tokio::test]
async fn only_reads_are_sent_again_after_an_exchange_broke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = socket_in(&dir);
    let accepted = dies_once(UnixListener::bind(&socket).expect("bind"));
    let response = client(&socket)
        .send(Call::get("/status"))
        .await
        .expect("resent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    let dir = tempfile::tempdir().expect("tempdir");
    let socket = socket_in(&dir);
    let accepted = dies_once(UnixListener::bind(&socket).expect("bind"));
    let call = Call::post("/commands").bytes("{}");
    let error = client(&socket).send(call).await.expect_err("not resent");
    assert!(matches!(error, DaemonError::Broken { .. }), "{error:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_hung_daemon_times_out_after_the_answer_timeout_and_the_calls_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = socket_in(&dir);
    let listener = UnixListener::bind(&socket).expect("bind");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let client = client(&socket);
    let started = Instant::now();
    let error = client.send(Call::get("/status")).await.expect_err("hung");
    assert!(matches!(error, DaemonError::Timeout { .. }), "{error:?}");
    assert!(started.elapsed() >= QUICK.answer);

    let started = Instant::now();
    let call = Call::get("/commands/x?waitSeconds=1").waiting(Duration::from_millis(400));
    let error = client.send(call).await.expect_err("hung");
    assert!(matches!(error, DaemonError::Timeout { .. }), "{error:?}");
    assert!(started.elapsed() >= QUICK.answer + Duration::from_millis(400));
}

/// A daemon stand-in that answers 413 after the first bytes of each body and closes the
/// connection without reading the rest, as registryd does with a manifest too large.
fn answers_early(listener: UnixListener) {
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
}

#[tokio::test]
async fn an_answer_sent_before_the_body_was_read_is_the_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = socket_in(&dir);
    answers_early(UnixListener::bind(&socket).expect("bind"));
    let client = client(&socket);
    let body = vec![7u8; 8 * 1024 * 1024];
    for attempt in 0..20 {
        let call = Call::new(Method::PUT, "/v2/a/manifests/big")
            .header(http::header::CONTENT_LENGTH, body.len().into())
            .stream(Body::from(body.clone()));
        let response = client
            .send(call)
            .await
            .unwrap_or_else(|e| panic!("attempt {attempt}: {e:?}"));
        assert_eq!(response.status(), 413, "attempt {attempt}");
        assert_eq!(text(response).await, "too big!", "attempt {attempt}");
    }
}

#[tokio::test]
async fn probes_say_why_a_daemon_is_not_healthy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = socket_in(&dir);
    let client = client(&socket);
    let down = client.probe().await.expect_err("no socket");
    assert!(down.contains("No such file"), "{down}");
    assert!(
        !down.contains(dir.path().to_str().expect("utf-8")),
        "{down}"
    );
    echo(UnixListener::bind(&socket).expect("bind"));
    assert_eq!(client.probe().await, Ok(()));
}
