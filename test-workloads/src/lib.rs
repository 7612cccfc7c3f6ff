//! What the three test workloads share: their arguments, a small HTTP server that finishes
//! its in-flight requests on SIGTERM, and the answers they give.

pub mod commands;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// `--version V` (shown in every answer), `--exit-at-start` (a broken release) and
/// `--exit-if-stored KEY` (a release that breaks once KEY is in its linked storage).
#[derive(Debug, Clone)]
pub struct Args {
    pub version: String,
    pub exit_at_start: bool,
}

impl Args {
    /// Parses the process's arguments; unknown ones end the process with status 2.
    pub fn from_env() -> Args {
        let mut args = Args {
            version: "v0".into(),
            exit_at_start: false,
        };
        let mut given = std::env::args().skip(1);
        while let Some(arg) = given.next() {
            match arg.as_str() {
                "--version" => match given.next() {
                    Some(version) => args.version = version,
                    None => usage("--version needs a value"),
                },
                "--exit-at-start" => args.exit_at_start = true,
                "--exit-if-stored" => match given.next() {
                    Some(key) => args.exit_at_start |= stored(&key),
                    None => usage("--exit-if-stored needs a key"),
                },
                other => usage(&format!("unknown argument {other}")),
            }
        }
        if args.exit_at_start {
            eprintln!("exiting at start, as asked");
            std::process::exit(1);
        }
        args
    }
}

/// Whether `key` is an object of a storage binding (`ALIEN_<ID>_BINDING` with a `file://`
/// `storagePath`) the workload has.
fn stored(key: &str) -> bool {
    std::env::vars()
        .filter(|(name, _)| name.starts_with("ALIEN_") && name.ends_with("_BINDING"))
        .filter_map(|(_, value)| serde_json::from_str::<serde_json::Value>(&value).ok())
        .filter_map(|binding| {
            let path = binding["storagePath"].as_str()?.strip_prefix("file://")?;
            Some(std::path::Path::new(path).join(key))
        })
        .any(|path| path.exists())
}

fn usage(problem: &str) -> ! {
    eprintln!("{problem}; usage: [--version V] [--exit-at-start] [--exit-if-stored KEY]");
    std::process::exit(2)
}

pub type Answer = Response<Full<Bytes>>;

pub fn answer(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Answer {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// The process's environment as a JSON object, so tests can check what was injected.
pub fn env_json() -> Answer {
    let env: serde_json::Map<String, serde_json::Value> = std::env::vars()
        .map(|(key, value)| (key, value.into()))
        .collect();
    answer(
        StatusCode::OK,
        "application/json",
        serde_json::Value::Object(env).to_string(),
    )
}

/// `GET /exists/<path>`: 200 with `dir` or `file` when `/<path>` exists where the workload
/// runs, 404 when not, so tests can see what is mounted inside.
pub fn exists_answer(path: &str) -> Option<Answer> {
    let inside = format!("/{}", path.strip_prefix("/exists/")?);
    Some(match std::fs::metadata(inside) {
        Ok(meta) if meta.is_dir() => answer(StatusCode::OK, "text/plain", "dir"),
        Ok(_) => answer(StatusCode::OK, "text/plain", "file"),
        Err(_) => answer(StatusCode::NOT_FOUND, "text/plain", "missing"),
    })
}

/// The plain server's answers: `/` its version, `/health` 200, `/env` its environment.
pub fn plain_answer(version: &str, request: &Request<Incoming>) -> Answer {
    match request.uri().path() {
        "/" => answer(StatusCode::OK, "text/plain", version.to_owned()),
        "/health" => answer(StatusCode::OK, "text/plain", "ok"),
        "/env" => env_json(),
        _ => answer(StatusCode::NOT_FOUND, "text/plain", "not found"),
    }
}

/// Binds `addr`, or ends the process with status 1 saying why.
pub async fn bind(addr: SocketAddr) -> TcpListener {
    match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {addr}: {error}");
            std::process::exit(1)
        }
    }
}

/// SIGTERM and SIGINT, caught from the start so that neither kills the process before it
/// could finish its requests.
#[derive(Debug)]
pub struct Stop {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Stop {
    /// Must be called inside the async runtime, first thing.
    pub fn install() -> Stop {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Stop { term, int },
            _ => {
                eprintln!("cannot handle signals");
                std::process::exit(1)
            }
        }
    }

    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Serves HTTP/1.1 on `listener` with `handler` until `stop`, then lets the requests in
/// flight finish and returns.
pub async fn serve<F>(listener: TcpListener, stop: &mut Stop, handler: F)
where
    F: Fn(&Request<Incoming>) -> Answer + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            () = stop.wait() => break,
        };
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let answer = handler(&request);
            async move { Ok::<_, Infallible>(answer) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    println!("stopping on a signal: finishing the requests in flight");
    graceful.shutdown().await;
}
