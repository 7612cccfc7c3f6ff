//! Clients of a workload's stable address that hammer it while it is updated: each answer
//! checked (200, a known version, never an older one than the client saw before), so that a
//! test can show that not one request failed across a switch.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one request of a client may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a client hammers, whatever the test does.
const HAMMER_LIMIT: Duration = Duration::from_secs(900);
/// The pause between two requests of one client: enough load to cross every switch, little
/// enough to leave the two cores to the update itself.
const HAMMER_PAUSE: Duration = Duration::from_millis(10);

/// The port a URL names.
pub fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// One `GET /` on `reader`'s connection: the status, the body, and whether the connection
/// can carry another request.
fn exchange(
    reader: &mut BufReader<TcpStream>,
    port: u16,
    close: bool,
) -> Result<(u16, String, bool), String> {
    let connection = if close { "close" } else { "keep-alive" };
    let request =
        format!("GET / HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: {connection}\r\n\r\n");
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("status line: {e}"))?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {line:?}"))?;
    let mut length = None;
    let mut closes = close;
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("headers: {e}"))?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(format!("bad header {header:?}"));
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse::<usize>().ok(),
            "connection" if value.trim().eq_ignore_ascii_case("close") => closes = true,
            _ => {}
        }
    }
    let length = length.ok_or_else(|| format!("{status} without a Content-Length"))?;
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("body: {e}"))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned(), !closes))
}

fn connect(port: u16) -> Result<BufReader<TcpStream>, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| format!("timeouts: {e}"))?;
    Ok(BufReader::new(stream))
}

/// What one client saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub requests: u64,
    /// Connections it opened.
    pub connections: u64,
    /// Each version that answered, in the order they first did.
    pub versions: Vec<String>,
    /// What went wrong, with when (since the client started).
    pub failures: Vec<String>,
}

/// Clients sending `GET /` to the stable address in a loop until stopped, each answer
/// checked: 200, one of `versions`, and never older than one the same client saw before
/// (the gateway switches between requests, so a client's next request cannot go back).
#[derive(Debug)]
pub struct Hammer {
    stop: Arc<AtomicBool>,
    clients: Vec<(&'static str, JoinHandle<Seen>)>,
}

impl Hammer {
    /// One client on one kept-alive connection, one opening a connection per request.
    pub fn start(port: u16, versions: &[String]) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = [("kept-alive", false), ("connection per request", true)]
            .into_iter()
            .map(|(name, close)| {
                let stop = stop.clone();
                let versions = versions.to_vec();
                let thread = std::thread::spawn(move || client(port, close, &versions, &stop));
                (name, thread)
            })
            .collect();
        Hammer { stop, clients }
    }

    /// Stops the clients; panics if any request failed. Returns what each saw.
    pub fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Release);
        let mut seen = Vec::new();
        for (name, thread) in self.clients {
            let client = thread.join().expect("a client thread panicked");
            assert!(
                client.failures.is_empty(),
                "the {name} client had {} failed requests of {}; the first: {:#?}",
                client.failures.len(),
                client.requests,
                &client.failures[..client.failures.len().min(10)]
            );
            seen.push(client);
        }
        seen
    }
}

fn client(port: u16, close: bool, versions: &[String], stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    let started = Instant::now();
    let mut kept: Option<BufReader<TcpStream>> = None;
    let mut newest = 0;
    while !stop.load(Ordering::Acquire) && started.elapsed() < HAMMER_LIMIT {
        seen.requests += 1;
        let reader = match kept.take() {
            Some(reader) => Ok(reader),
            None => {
                seen.connections += 1;
                connect(port)
            }
        };
        let outcome = reader.and_then(|mut reader| {
            let answer = exchange(&mut reader, port, close)?;
            if answer.2 && !close {
                kept = Some(reader);
            }
            Ok(answer)
        });
        let at = started.elapsed();
        match outcome {
            Ok((200, body, _)) => match versions.iter().position(|v| *v == body) {
                Some(index) if index >= newest => {
                    if !seen.versions.contains(&body) {
                        seen.versions.push(body);
                    }
                    newest = index;
                }
                Some(_) => seen.failures.push(format!(
                    "{at:?}: {body} answered after {}",
                    versions[newest]
                )),
                None => seen.failures.push(format!("{at:?}: 200 {body:?}")),
            },
            Ok((status, body, _)) => seen.failures.push(format!("{at:?}: {status} {body:?}")),
            Err(error) => seen.failures.push(format!("{at:?}: {error}")),
        }
        std::thread::sleep(HAMMER_PAUSE);
    }
    seen
}

/// One `GET /` on a connection of its own.
pub fn get(url: &str) -> Result<(u16, String), String> {
    let port = port_of(url);
    let mut reader = connect(port)?;
    exchange(&mut reader, port, true).map(|(status, body, _)| (status, body))
}
