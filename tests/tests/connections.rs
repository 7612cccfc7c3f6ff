//! The public port's connections (docs/architecture.md, Connections): a request head has
//! `header-read-timeout-secs`, a kept-alive connection waits `keep-alive-timeout-secs` for its
//! next request, a new connection at `max-connections` closes the one idle the longest, and
//! none of it cuts a long poll or a slow but flowing transfer. The open-file limit is raised
//! to the hard limit, and the cap fits what it allows.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::api::Api;
use e2e::commands::{Receiver, Target};
use e2e::registry::{Cred, Oci, REPOSITORY, random_bytes, sha256, with_digest};
use e2e::{Options, Server, procfs};

/// `[server]` lines for a test.
fn server_config(lines: &str) -> Options {
    Options {
        config: Some(format!("[server]\n{lines}\n")),
        ..Options::default()
    }
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("connect")
}

/// Whether the server has closed `stream`: it reads the end of the stream (or a reset)
/// within `wait`. Anything the server sent before closing is skipped.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buffer = [0u8; 4096];
    // Bounded: each round either reads something or waits out the rest of `wait`.
    for _ in 0..1000 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

/// Waits for `stream` to be closed by the server, for at most `wait`; how long it took.
fn time_to_close(stream: &mut TcpStream, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    closed_within(stream, wait).then(|| started.elapsed())
}

/// Sends `GET path` on `stream` and reads its answer (the body by its `Content-Length`);
/// the status.
fn get_on(stream: &mut TcpStream, path: &str, extra_headers: &str) -> u16 {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}\r\n"
    )
    .expect("write request");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 64 * 1024, "head too long");
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "GET {path}: no answer ({other:?}) after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("content-length"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("body");
    status
}

/// `GET path` on a connection of its own, answered within `wait`: the status, or `None`.
fn get_within(port: u16, path: &str, auth: Option<&str>, wait: Duration) -> Option<u16> {
    let (done, answered) = std::sync::mpsc::channel();
    let path = path.to_owned();
    let header = auth.map_or(String::new(), |token| {
        format!("Authorization: Bearer {token}\r\n")
    });
    std::thread::spawn(move || {
        let mut stream = connect(port);
        let status = get_on(
            &mut stream,
            &path,
            &format!("{header}Connection: close\r\n"),
        );
        let _ = done.send(status);
    });
    answered.recv_timeout(wait).ok()
}

#[test]
fn a_request_head_must_arrive_within_the_header_timeout() {
    let api = Api::start_with(server_config(
        "header-read-timeout-secs = 2\nkeep-alive-timeout-secs = 30",
    ));
    let port = api.server().port();

    // A connection that sends nothing is closed after the header timeout.
    let mut silent = connect(port);
    let took = time_to_close(&mut silent, Duration::from_secs(8));
    let took = took.expect("a silent connection is still open after 8 s");
    assert!(took >= Duration::from_millis(1900), "closed after {took:?}");
    assert!(took <= Duration::from_millis(4500), "closed after {took:?}");

    // A head that keeps trickling in is cut all the same: the timeout is for the whole head.
    let mut slow = connect(port);
    let started = Instant::now();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .expect("write");
    let mut cut = None;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(250));
        if slow.write_all(b"a").is_err() || closed_within(&mut slow, Duration::from_millis(5)) {
            cut = Some(started.elapsed());
            break;
        }
    }
    let cut = cut.expect("a trickling head is still read after 10 s");
    assert!(cut >= Duration::from_millis(1900), "cut after {cut:?}");
    assert!(cut <= Duration::from_millis(4500), "cut after {cut:?}");

    // A client that takes a moment before it sends its request is served.
    let mut patient = connect(port);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(get_on(&mut patient, "/health", ""), 200);
}

#[test]
fn a_request_body_may_pause_at_most_the_body_timeout() {
    let api = Api::start_with(server_config(
        "body-read-timeout-secs = 2\nheader-read-timeout-secs = 30",
    ));
    let port = api.server().port();
    // No token needed: the answer's route reads its body before it authenticates.
    let head = |length: usize| {
        format!(
            "PUT /v1/commands/cmd_x/response HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };

    // A body that stops is cut after the body timeout.
    let mut stalled = connect(port);
    stalled
        .write_all(format!("{}{{\"status\"", head(100_000)).as_bytes())
        .expect("write");
    let took = time_to_close(&mut stalled, Duration::from_secs(8));
    let took = took.expect("a stalled body's connection is still open after 8 s");
    assert!(took >= Duration::from_millis(1900), "closed after {took:?}");
    assert!(took <= Duration::from_millis(4500), "closed after {took:?}");

    // A body that keeps coming, a byte every 400 ms for 4 s, is read to its end and answered.
    let body = br#"{"a":1234}"#;
    let mut slow = connect(port);
    slow.write_all(head(body.len()).as_bytes()).expect("write");
    for byte in body {
        std::thread::sleep(Duration::from_millis(400));
        slow.write_all(&[*byte])
            .expect("the connection is still open");
    }
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut answer = [0u8; 12];
    slow.read_exact(&mut answer).expect("an answer");
    assert!(
        answer.starts_with(b"HTTP/1.1 4"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn a_kept_alive_connection_waits_the_keep_alive_timeout_for_its_next_request() {
    let api = Api::start_with(server_config(
        "header-read-timeout-secs = 1\nkeep-alive-timeout-secs = 3",
    ));
    let mut stream = connect(api.server().port());
    assert_eq!(get_on(&mut stream, "/health", ""), 200);
    // Longer than the header timeout: a kept-alive connection has the keep-alive timeout.
    std::thread::sleep(Duration::from_millis(1800));
    assert_eq!(get_on(&mut stream, "/health", ""), 200);
    let took = time_to_close(&mut stream, Duration::from_secs(8));
    let took = took.expect("an idle kept-alive connection is still open after 8 s");
    assert!(took >= Duration::from_millis(2900), "closed after {took:?}");
    assert!(took <= Duration::from_millis(4500), "closed after {took:?}");
}

#[test]
fn at_the_cap_a_new_connection_closes_the_one_idle_the_longest() {
    let api = Api::start_with(server_config("max-connections = 4"));
    let port = api.server().port();
    let target = Target::new(
        &api,
        e2e::api::NewDeployment::pull(),
        &[("jobs", "container", true)],
    );
    // The test's own kept-alive connections are idle: these four come after them.
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| {
            let stream = connect(port);
            std::thread::sleep(Duration::from_millis(100));
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let status = get_within(port, "/health", None, Duration::from_secs(3));
    assert_eq!(status, Some(200), "a new client at the cap");
    // Four were open before the request: the four idle ones, or the first of them.
    let open: Vec<bool> = idle
        .iter_mut()
        .map(|s| !closed_within(s, Duration::from_millis(300)))
        .collect();
    assert_eq!(open, [false, true, true, true], "which idle ones are open");
    api.server().wait_log_line(Duration::from_secs(2), |line| {
        line.contains("connection limit reached: closed the connection idle the longest")
    });

    // Four long polls in flight fill the cap: none of them is cut, and a new client is
    // served once one ends.
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    std::thread::scope(|s| {
        let polls: Vec<_> = (0..4)
            .map(|_| {
                let receiver = receiver.clone();
                s.spawn(move || {
                    let started = Instant::now();
                    let (status, body) = receiver.try_lease(1, 60, Some(4));
                    (status, body, started.elapsed())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(800));
        let started = Instant::now();
        let status = get_within(port, "/health", None, Duration::from_secs(15));
        let waited = started.elapsed();
        for poll in polls {
            let (status, body, took) = poll.join().expect("joined");
            assert_eq!(status, 200, "a long poll at the cap: {body}");
            assert!(took >= Duration::from_millis(3900), "{took:?}: {body}");
        }
        assert_eq!(status, Some(200), "a new client once a long poll ended");
        assert!(waited >= Duration::from_millis(2500), "{waited:?}");
    });
    api.server().wait_log_line(Duration::from_secs(2), |line| {
        line.contains("every connection has a request in flight")
    });
}

/// Yields `chunks` pieces of `chunk` bytes, `pause` apart.
struct Trickle {
    data: Vec<u8>,
    sent: usize,
    chunk: usize,
    pause: Duration,
}

impl Read for Trickle {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.sent == self.data.len() {
            return Ok(0);
        }
        if self.sent > 0 {
            std::thread::sleep(self.pause);
        }
        let n = self
            .chunk
            .min(buffer.len())
            .min(self.data.len() - self.sent);
        buffer[..n].copy_from_slice(&self.data[self.sent..self.sent + n]);
        self.sent += n;
        Ok(n)
    }
}

#[test]
fn long_polls_and_slow_transfers_outlast_the_timeouts() {
    let api = Api::start_with(server_config(
        "header-read-timeout-secs = 1\nbody-read-timeout-secs = 1\nkeep-alive-timeout-secs = 1",
    ));
    let target = Target::new(
        &api,
        e2e::api::NewDeployment::pull(),
        &[("jobs", "container", true)],
    );
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    let started = Instant::now();
    let (status, body) = receiver.try_lease(1, 60, Some(4));
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(3900));

    // An upload that takes about 3 s, a piece every 200 ms.
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let repo = format!("{REPOSITORY}/slow");
    let blob = random_bytes(71, 16 * 64 * 1024);
    let digest = sha256(&blob);
    let session = oci.start_upload(&repo, &admin);
    let started = Instant::now();
    let reply = oci
        .call_streaming(
            "PUT",
            &with_digest(&session, &digest),
            &admin,
            &[("content-type", "application/octet-stream")],
            Trickle {
                data: blob.clone(),
                sent: 0,
                chunk: 64 * 1024,
                pause: Duration::from_millis(200),
            },
        )
        .expect("slow upload answered");
    assert_eq!(reply.status, 201, "{}", reply.summary());
    assert!(started.elapsed() >= Duration::from_millis(2500));

    // A download read slowly, larger than what the sockets' buffers hold.
    let large = random_bytes(72, 32 * 1024 * 1024);
    let large_digest = oci.push_blob(&repo, &large, &admin);
    let mut stream = connect(api.server().port());
    write!(
        stream,
        "GET /v2/{repo}/blobs/{large_digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        api.admin_token()
    )
    .expect("write");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 256 * 1024];
    for _ in 0..10_000 {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) => panic!("download broke off after {} bytes: {e}", received.len()),
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not slow enough"
    );
    let body_at = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    assert!(received.starts_with(b"HTTP/1.1 200"));
    assert_eq!(received.len() - body_at, large.len(), "the whole blob");
    assert!(received[body_at..] == large[..], "the blob's bytes");
}

/// The soft and hard limits on open files of `pid`, from `/proc/<pid>/limits`.
fn open_file_limits(pid: i32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

fn through_prlimit(soft: u64, hard: u64) -> Vec<std::ffi::OsString> {
    vec![
        "prlimit".into(),
        format!("--nofile={soft}:{hard}").into(),
        "--".into(),
    ]
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let mut server = Server::start(Options {
        exec_through: through_prlimit(256, 4096),
        ..Options::default()
    });
    server.wait_healthy(Duration::from_secs(30));
    let mut pids = vec![server.supervisor_pid()];
    pids.extend(server.daemon_pids());
    for pid in pids {
        let name = procfs::proc_info(pid).map(|p| p.argv.join(" "));
        assert_eq!(open_file_limits(pid), (4096, 4096), "{name:?}");
    }
    server.wait_log_line(Duration::from_secs(2), |line| {
        line.contains("raised the open-file limit") && line.contains("to=4096")
    });
}

#[test]
fn with_256_descriptors_300_idle_connections_do_not_stop_requests() {
    let api = Api::start_with(Options {
        exec_through: through_prlimit(256, 256),
        ..Options::default()
    });
    let port = api.server().port();
    let idle: Vec<TcpStream> = (0..300).map(|_| connect(port)).collect();
    for _ in 0..3 {
        let status = get_within(
            port,
            "/v1/whoami",
            Some(api.admin_token()),
            Duration::from_secs(5),
        );
        assert_eq!(
            status,
            Some(200),
            "a request with 300 idle connections open"
        );
    }
    api.server().wait_log_line(Duration::from_secs(2), |line| {
        line.contains("server.max-connections is more than the open-file limit allows")
    });
    api.server().wait_log_line(Duration::from_secs(2), |line| {
        line.contains("connection limit reached")
    });
    let manager = api.server().daemon_pid("manager").expect("manager runs");
    let open = std::fs::read_dir(format!("/proc/{manager}/fd"))
        .expect("fds")
        .count();
    assert!(open < 256, "the manager holds {open} descriptors");
    drop(idle);
}
