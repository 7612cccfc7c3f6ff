//! An HTTP/1.1 proxy on a loopback port in front of a server, for the tests of clients: it
//! logs every request it forwards (method, path, body bytes), so that a test can count what
//! a client sent, and it can break a connection once, after some bytes of a request body, as
//! a network that drops a connection in the middle of an upload does.
//!
//! Requests are parsed (line, headers, a `Content-Length` body) so that bodies are counted
//! and never mistaken for requests; answers are copied back as they come.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A connection that sends or answers nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(120);

/// One request forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// The path, without its query.
    pub path: String,
    /// Body bytes forwarded (fewer than announced when the proxy broke the connection).
    pub body: u64,
    /// The proxy broke the connection in the middle of this request.
    pub cut: bool,
}

/// Break the connection of the first `method` request whose body passes `after` bytes, the
/// bodies of every earlier `method` request counted.
#[derive(Debug, Clone)]
pub struct Cut {
    pub method: &'static str,
    pub after: u64,
}

#[derive(Debug, Default)]
struct Shared {
    log: Mutex<Vec<Logged>>,
    cut: Mutex<Armed>,
}

/// The cut still to come, and the body bytes of its method forwarded so far.
#[derive(Debug, Default)]
struct Armed {
    cut: Option<Cut>,
    counted: u64,
}

#[derive(Debug)]
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to `127.0.0.1:<upstream>`, breaking one connection as `cut` says.
    pub fn start(upstream: u16, cut: Option<Cut>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let shared = Arc::new(Shared {
            cut: Mutex::new(Armed { cut, counted: 0 }),
            ..Shared::default()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (stopped, state) = (stop.clone(), shared.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let state = state.clone();
                        std::thread::spawn(move || {
                            let _ = forward(client, upstream, &state);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy {
            port,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request forwarded so far, in the order they arrived.
    pub fn log(&self) -> Vec<Logged> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Forwards the requests of one client connection until either side closes it.
fn forward(client: TcpStream, upstream: u16, shared: &Shared) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(IDLE))?;
    let server = TcpStream::connect(("127.0.0.1", upstream))?;
    server.set_read_timeout(Some(IDLE))?;
    let (mut answers_from, mut answers_to) = (server.try_clone()?, client.try_clone()?);
    let answers = std::thread::spawn(move || {
        let _ = std::io::copy(&mut answers_from, &mut answers_to);
        let _ = answers_to.shutdown(Shutdown::Write);
    });
    let mut reader = BufReader::new(client.try_clone()?);
    let mut to_server = server.try_clone()?;
    let result = (|| loop {
        let mut head = String::new();
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or_default().to_owned();
        let target = words.next().unwrap_or_default();
        let path = target.split('?').next().unwrap_or(target).to_owned();
        head.push_str(&line);
        let mut length = 0u64;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            if let Some((name, value)) = header.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
            head.push_str(&header);
            if header == "\r\n" || header == "\n" {
                break;
            }
        }
        to_server.write_all(head.as_bytes())?;
        let (body, cut) = forward_body(&mut reader, &mut to_server, &method, length, shared)?;
        shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Logged {
                method,
                path,
                body,
                cut,
            });
        if cut {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return Ok(());
        }
    })();
    let _ = server.shutdown(Shutdown::Write);
    let _ = answers.join();
    result
}

/// Copies `length` body bytes; stops early, answering `true`, where the armed cut says.
fn forward_body(
    from: &mut impl Read,
    to: &mut impl Write,
    method: &str,
    length: u64,
    shared: &Shared,
) -> std::io::Result<(u64, bool)> {
    let armed = || shared.cut.lock().unwrap_or_else(PoisonError::into_inner);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < length {
        let mut want = (length - sent).min(buffer.len() as u64);
        let mut cut_here = false;
        {
            let armed = armed();
            if armed.cut.as_ref().is_some_and(|c| c.method == method) {
                let left = armed
                    .cut
                    .as_ref()
                    .map_or(0, |c| c.after.saturating_sub(armed.counted));
                if left <= want {
                    want = left;
                    cut_here = true;
                }
            }
        }
        let n = from.read(&mut buffer[..usize::try_from(want).unwrap_or(0)])?;
        if n == 0 && want > 0 {
            return Ok((sent, false));
        }
        to.write_all(&buffer[..n])?;
        sent += n as u64;
        let mut armed = armed();
        if armed.cut.as_ref().is_some_and(|c| c.method == method) {
            armed.counted += n as u64;
            if cut_here && n as u64 == want {
                armed.cut = None;
                return Ok((sent, true));
            }
        }
    }
    Ok((sent, false))
}
