//! A registry client reuses its connection after an answer that came before the request's
//! body was read: Go's HTTP client (Docker, containerd, the OCI conformance tools) sends a
//! `PUT`'s headers and body in separate writes, takes the `401` challenge, and sends the
//! authenticated retry on the same connection. The manager must either have read the body
//! and keep the connection, or say `Connection: close`; closing silently makes the retry
//! fail with EOF.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use e2e::api::{Api, base64};
use e2e::registry::{OCI_MANIFEST, REPOSITORY};

/// One HTTP/1.1 response as read off the connection.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A raw HTTP/1.1 connection that writes the head and the body of a request apart.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(port: u16) -> Connection {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the manager");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Connection {
            reader: BufReader::new(stream),
        }
    }

    /// Sends the request and reads the answer, or the error that ended the connection.
    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> std::io::Result<Answer> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.flush()?;
        // As Go's client does: the body follows in writes of its own, after a pause in which
        // an eager server has already answered.
        std::thread::sleep(Duration::from_millis(50));
        for chunk in body.chunks(16 * 1024) {
            stream.write_all(chunk)?;
        }
        stream.flush()?;
        self.read_answer()
    }

    fn read_answer(&mut self) -> std::io::Result<Answer> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let answer = Answer { status, headers };
        let length: usize = answer
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(answer)
    }
}

/// A manifest body: its content does not matter to the early answers under test.
fn manifest_body(size: usize) -> Vec<u8> {
    let mut body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"pad":""#.to_vec();
    body.resize(size - 3, b'x');
    body.extend_from_slice(b"\"}}");
    body
}

fn basic(token: &str) -> String {
    format!("Basic {}", base64(format!("token:{token}").as_bytes()))
}

/// Sends `first`, which the manager answers without reading its body, then the retry on
/// the same connection, which must be answered.
fn retry_after_early_answer(api: &Api, first: (&str, Vec<(&str, String)>), body: &[u8]) {
    let (path, headers) = first;
    let mut connection = Connection::open(api.server().port());
    let early = connection
        .exchange("PUT", path, &headers, body)
        .expect("the early answer");
    assert!(
        early.status == 401 || early.status == 404,
        "PUT {path}: {} (want the early 401 or 404)",
        early.status
    );
    // Bodies up to 256 KiB are read and thrown away, as Go's own server does, so that the
    // connection is kept.
    assert!(
        !early.closes(),
        "PUT {path} of {} bytes: the manager gave up the connection",
        body.len()
    );
    let retry = connection.exchange(
        "GET",
        "/v2/",
        &[("Authorization", basic(api.admin_token()))],
        b"",
    );
    match retry {
        Ok(answer) => assert_eq!(answer.status, 200, "the retry on the same connection"),
        Err(error) => panic!(
            "PUT {path} of {} bytes answered {} without `Connection: close`, then the \
             connection was dropped: the retry on it failed with {error}",
            body.len(),
            early.status
        ),
    }
}

#[test]
fn a_connection_stays_usable_after_an_answer_that_came_before_the_body() {
    let api = Api::start();
    let manifest = format!("/v2/{REPOSITORY}/reuse/manifests/latest");
    let content_type = ("Content-Type", OCI_MANIFEST.to_owned());
    for size in [200, 64 * 1024, 200 * 1024] {
        let body = manifest_body(size);
        // The challenge to a client that sent no credentials yet.
        retry_after_early_answer(&api, (&manifest, vec![content_type.clone()]), &body);
        // A namespace the registry does not serve.
        retry_after_early_answer(
            &api,
            (
                "/v2/elsewhere/app/manifests/latest",
                vec![
                    content_type.clone(),
                    ("Authorization", basic(api.admin_token())),
                ],
            ),
            &body,
        );
    }
}

#[test]
fn a_body_too_large_to_drain_is_answered_with_connection_close() {
    let api = Api::start();
    let mut connection = Connection::open(api.server().port());
    // Only the head: the manager answers the challenge without waiting for 8 MiB, and must
    // say that it will not read them.
    let head = format!(
        "PUT /v2/{REPOSITORY}/reuse/manifests/big HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
        8 << 20
    );
    let stream = connection.reader.get_mut();
    stream.write_all(head.as_bytes()).expect("send the head");
    let answer = connection.read_answer().expect("the early answer");
    assert_eq!(answer.status, 401);
    assert!(
        answer.closes(),
        "an 8 MiB body left unread must be answered with `Connection: close`"
    );
}
