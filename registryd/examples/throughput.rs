//! Push and pull throughput of one large blob: `POST` + monolithic `PUT`, then `GET`.
//!
//!     cargo run --release -p registryd --example throughput -- --size-mib 1024 --runs 3
//!
//! Without `--tcp` it starts registryd in this process on a data directory (`--dir`, by
//! default a new one under /var/tmp, on disk) and talks to its Unix socket. With
//! `--tcp HOST:PORT` it drives another registry over TCP instead (e.g. Debian's
//! `docker-registry`), and `--pid` names that process so that its peak RSS is reported.
//! The blob is made on the fly from a pattern, so the client holds a few chunks at a time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use sha2::Digest as _;
use tokio::io::{AsyncRead, AsyncWrite};

const CHUNK: usize = 1024 * 1024;

#[derive(Debug)]
struct Args {
    size_mib: usize,
    runs: usize,
    dir: Option<PathBuf>,
    tcp: Option<String>,
    pid: Option<u32>,
}

fn args() -> Args {
    let mut args = Args {
        size_mib: 1024,
        runs: 3,
        dir: None,
        tcp: None,
        pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--size-mib" => args.size_mib = value.parse().unwrap_or(args.size_mib),
            "--runs" => args.runs = value.parse().unwrap_or(args.runs),
            "--dir" => args.dir = Some(value.into()),
            "--tcp" => args.tcp = Some(value),
            "--pid" => args.pid = value.parse().ok(),
            other => eprintln!("ignoring {other}"),
        }
    }
    args
}

fn pattern(seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ seed;
    (0..CHUNK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn chunk(pattern: &[u8], i: usize) -> Bytes {
    let mut data = pattern.to_vec();
    data[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Bytes::from(data)
}

enum Target {
    Unix(PathBuf),
    Tcp(String),
}

impl Target {
    async fn send(&self, request: Request<Body>) -> http::Response<hyper::body::Incoming> {
        match self {
            Target::Unix(path) => {
                exchange(
                    tokio::net::UnixStream::connect(path)
                        .await
                        .expect("connect"),
                    request,
                )
                .await
            }
            Target::Tcp(addr) => {
                exchange(
                    tokio::net::TcpStream::connect(addr).await.expect("connect"),
                    request,
                )
                .await
            }
        }
    }
}

async fn exchange<S>(stream: S, request: Request<Body>) -> http::Response<hyper::body::Incoming>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender.send_request(request).await.expect("request")
}

fn req(method: &str, path: &str, body: Body, len: Option<usize>) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(len) = len {
        b = b
            .header("content-length", len)
            .header("content-type", "application/octet-stream");
    }
    b.body(body).expect("request")
}

/// The path and query of a `Location`, absolute or not.
fn path_of(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/".into(), |i| rest[i..].to_owned()),
        None => location.to_owned(),
    }
}

fn peak_rss_mib(pid: Option<u32>) -> f64 {
    let path = pid.map_or("/proc/self/status".to_owned(), |p| {
        format!("/proc/{p}/status")
    });
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn run(target: &Target, size_mib: usize, seed: u64) -> (Duration, Duration) {
    let pattern = pattern(seed);
    let digest = {
        let mut h = sha2::Sha256::new();
        for i in 0..size_mib {
            h.update(chunk(&pattern, i));
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    };
    let size = size_mib * CHUNK;

    let started = Instant::now();
    let post = target
        .send(req(
            "POST",
            "/v2/bench/blob/blobs/uploads/",
            Body::empty(),
            Some(0),
        ))
        .await;
    assert_eq!(post.status(), 202);
    let location = path_of(post.headers()["location"].to_str().expect("location"));
    let sep = if location.contains('?') { '&' } else { '?' };
    let body = Body::from_stream(futures_util::stream::iter(
        (0..size_mib).map(move |i| Ok::<_, std::convert::Infallible>(chunk(&pattern, i))),
    ));
    let put = target
        .send(req(
            "PUT",
            &format!("{location}{sep}digest={digest}"),
            body,
            Some(size),
        ))
        .await;
    assert_eq!(put.status(), 201);
    let push = started.elapsed();

    let started = Instant::now();
    let get = target
        .send(req(
            "GET",
            &format!("/v2/bench/blob/blobs/{digest}"),
            Body::empty(),
            None,
        ))
        .await;
    assert_eq!(get.status(), 200);
    let mut body = get.into_body();
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            received += data.len();
        }
    }
    assert_eq!(received, size);
    (push, started.elapsed())
}

#[tokio::main]
async fn main() {
    let args = args();
    let mut _keep = None;
    let (target, shutdown) = match &args.tcp {
        Some(addr) => (Target::Tcp(addr.clone()), None),
        None => {
            let dir = match &args.dir {
                Some(d) => d.clone(),
                None => {
                    let t = tempfile::Builder::new()
                        .prefix("registryd-bench")
                        .tempdir_in("/var/tmp")
                        .expect("tempdir");
                    let p = t.path().to_path_buf();
                    _keep = Some(t);
                    p
                }
            };
            let ctx = plumbing::DaemonContext {
                config: Default::default(),
                data: plumbing::DataDir::new(&dir),
                shutdown: tokio_util::sync::CancellationToken::new(),
            };
            tokio::spawn(registryd::run(ctx.clone()));
            let socket = ctx.data.socket(plumbing::Daemon::Registryd);
            wait(&socket).await;
            (Target::Unix(socket), Some(ctx.shutdown))
        }
    };
    let mib = args.size_mib as f64;
    for run_no in 0..args.runs {
        let (push, pull) = run(&target, args.size_mib, run_no as u64 + 1).await;
        println!(
            "run {run_no}: push {:.0} MiB/s ({:.2} s), pull {:.0} MiB/s ({:.2} s)",
            mib / push.as_secs_f64(),
            push.as_secs_f64(),
            mib / pull.as_secs_f64(),
            pull.as_secs_f64()
        );
    }
    let who = if args.tcp.is_some() {
        "registry"
    } else {
        "this process (registryd and the client)"
    };
    println!(
        "peak RSS of {who}: {:.1} MiB",
        peak_rss_mib(args.pid.filter(|_| args.tcp.is_some()))
    );
    if let Some(shutdown) = shutdown {
        shutdown.cancel();
    }
}

async fn wait(socket: &Path) {
    for _ in 0..500 {
        if plumbing::uds::get(socket, "/health", Duration::from_secs(1))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("registryd did not start");
}
