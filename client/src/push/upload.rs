//! The manager's registry as a push sees it: the OCI distribution API on its `/v2`, with Basic
//! `token:<API key>` on every request.
//!
//! - A blob the repository has already (`HEAD`) is not sent again.
//! - A blob of at most [`CHUNK`] bytes goes in one request: `POST ?digest=` with the body, or
//!   `PUT <session>?digest=` with it when the registry opened a session instead.
//! - A larger one goes in chunks of [`CHUNK`] bytes (`PATCH` with `Content-Range`), then an
//!   empty `PUT <session>?digest=`. After a chunk fails (a dropped connection, a 5xx, a
//!   `416`), the session's status (`GET`) says how many bytes the registry kept, and the
//!   upload goes on from there: a broken connection costs at most one chunk.
//! - A failure that may pass by itself (no connection, a broken one, 5xx, 408, 429) is tried
//!   again after a pause that doubles from 0.5 s, at most [`ATTEMPTS`] times in a row without
//!   progress; any other answer ends the push with the registry's code and message.
//!
//! A session's `Location` is used exactly as the registry gave it, with `digest=` appended:
//! its signed `_alien_*` parameters are what authorize the session's requests.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ureq::SendBody;

use super::Progress;
use super::source::{Blob, Manifest};
use crate::api::{Manager, refused};
use crate::error::ClientError;

/// Blobs larger than this go in chunks of this size: the most a broken connection costs.
pub const CHUNK: u64 = 64 << 20;
/// Failures in a row, without a byte of progress between them, before a push gives up.
const ATTEMPTS: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(8);
/// How often the bytes sent are reported while a body goes out.
const REPORT_EVERY: u64 = 1 << 20;
/// An error answer's body, for its code and message.
const ERROR_BODY_LIMIT: u64 = 64 << 10;

/// The manager's `/v2`, for one push.
#[derive(Debug)]
pub struct Registry {
    agent: ureq::Agent,
    origin: String,
    host: String,
    authorization: String,
}

/// A request that failed, and whether sending it again may succeed.
struct Failure {
    error: ClientError,
    transient: bool,
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure {
            error,
            transient: false,
        }
    }
}

/// What a request sends.
enum Body<'a> {
    None,
    Bytes(&'a [u8]),
    /// `len` bytes of a blob from `from`, the blob starting at `start` in `file`.
    Blob {
        file: &'a File,
        start: u64,
        from: u64,
        len: u64,
        report: &'a dyn Fn(u64),
    },
}

/// One blob on its way into one repository: where its bytes are, and whom to tell.
struct Transfer<'a> {
    repository: &'a str,
    blob: &'a Blob,
    file: &'a File,
    /// Where the blob starts in `file`.
    start: u64,
    report: &'a dyn Fn(u64),
    progress: &'a dyn Progress,
}

impl Transfer<'_> {
    /// `len` bytes of the blob from `from`, as a request body.
    fn body(&self, from: u64, len: u64) -> Body<'_> {
        Body::Blob {
            file: self.file,
            start: self.start,
            from,
            len,
            report: self.report,
        }
    }
}

/// The parts of an answer a push reads.
struct Answer {
    status: u16,
    location: Option<String>,
    range: Option<String>,
    digest: Option<String>,
    body: String,
}

/// How a step of a chunked upload ended.
enum Step {
    Sent,
    Done,
}

impl Registry {
    pub fn new(manager: &Manager) -> Registry {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(10)))
            // A chunk at no less than about 100 KiB/s.
            .timeout_send_body(Some(Duration::from_secs(600)))
            // The registry hashes and stores what it was sent before it answers.
            .timeout_recv_response(Some(Duration::from_secs(300)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .user_agent(concat!("alien-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Registry {
            agent,
            origin: manager.origin(),
            host: manager.host().to_owned(),
            authorization: format!(
                "Basic {}",
                STANDARD.encode(format!("token:{}", manager.key()))
            ),
        }
    }

    /// `host[:port]`, as the references of pushed images name the registry.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn has_blob(
        &self,
        repository: &str,
        digest: &str,
        progress: &dyn Progress,
    ) -> Result<bool, ClientError> {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.origin);
        self.retrying(digest, progress, || {
            let answer = self.send("HEAD", &url, &[], Body::None)?;
            match answer.status {
                200 => Ok(true),
                404 => Ok(false),
                _ => Err(self.refusal("HEAD", &url, &answer)),
            }
        })
    }

    /// Links `digest`, which `from` holds, into `repository`: `None` once it is there, or the
    /// upload session the registry opened instead.
    pub fn mount(
        &self,
        repository: &str,
        digest: &str,
        from: &str,
        progress: &dyn Progress,
    ) -> Result<Option<String>, ClientError> {
        let url = format!(
            "{}/v2/{repository}/blobs/uploads/?mount={digest}&from={from}",
            self.origin
        );
        self.retrying(digest, progress, || {
            let answer = self.send("POST", &url, &[], Body::Bytes(&[]))?;
            match answer.status {
                201 => Ok(None),
                202 => Ok(Some(self.location(&answer, "POST", &url)?)),
                _ => Err(self.refusal("POST", &url, &answer)),
            }
        })
    }

    /// Sends `blob` into `repository`, into `session` if the registry opened one already.
    pub fn upload(
        &self,
        repository: &str,
        blob: &Blob,
        session: Option<String>,
        progress: &dyn Progress,
    ) -> Result<(), ClientError> {
        let (file, start) = blob.content.open(&blob.digest, blob.size)?;
        let report = |position: u64| progress.position(&blob.digest, position);
        let transfer = Transfer {
            repository,
            blob,
            file: &file,
            start,
            report: &report,
            progress,
        };
        if blob.size <= CHUNK {
            self.monolithic(&transfer, session)
        } else {
            self.chunked(&transfer, session)
        }
    }

    /// `PUT` of a manifest as `reference` (a tag, or its digest).
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &Manifest,
        progress: &dyn Progress,
    ) -> Result<(), ClientError> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.origin);
        self.retrying(&manifest.digest, progress, || {
            let answer = self.send(
                "PUT",
                &url,
                &[("Content-Type", manifest.media_type.as_str())],
                Body::Bytes(&manifest.bytes),
            )?;
            if !(200..300).contains(&answer.status) {
                return Err(self.refusal("PUT", &url, &answer));
            }
            match &answer.digest {
                Some(digest) if digest != &manifest.digest => Err(ClientError::Answer {
                    path: path_of(&url),
                    reason: format!(
                        "the registry stored it as {digest}, its bytes are {}",
                        manifest.digest
                    ),
                }
                .into()),
                _ => Ok(()),
            }
        })
    }

    fn monolithic(&self, t: &Transfer<'_>, mut session: Option<String>) -> Result<(), ClientError> {
        let (repository, blob) = (t.repository, t.blob);
        let body = || t.body(0, blob.size);
        let size = blob.size.to_string();
        let headers = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", size.as_str()),
        ];
        self.retrying(&blob.digest, t.progress, || {
            // A retry starts over: a session a failed request leaves is the collector's.
            let location = match session.take() {
                Some(location) => location,
                None => {
                    let url = format!(
                        "{}/v2/{repository}/blobs/uploads/?digest={}",
                        self.origin, blob.digest
                    );
                    let answer = self.send("POST", &url, &headers, body())?;
                    match answer.status {
                        201 => return Ok(()),
                        // The registry takes no body with its POST: it goes with the PUT.
                        202 => self.location(&answer, "POST", &url)?,
                        _ => return Err(self.refusal("POST", &url, &answer)),
                    }
                }
            };
            let url = with_digest(&location, &blob.digest);
            let answer = self.send("PUT", &url, &headers, body())?;
            match answer.status {
                201 => Ok(()),
                _ => Err(self.refusal("PUT", &url, &answer)),
            }
        })
    }

    fn chunked(&self, t: &Transfer<'_>, mut session: Option<String>) -> Result<(), ClientError> {
        let blob = t.blob;
        let mut offset = 0u64;
        let mut failures = 0u32;
        loop {
            let step = self.chunk_step(t, &mut session, &mut offset);
            let failure = match step {
                Ok(Step::Done) => return Ok(()),
                Ok(Step::Sent) => {
                    failures = 0;
                    continue;
                }
                Err(failure) if failure.transient => failure,
                Err(failure) => return Err(failure.error),
            };
            failures += 1;
            if failures >= ATTEMPTS {
                return Err(failure.error);
            }
            std::thread::sleep(pause(failures));
            // Where the upload stands: the registry kept what it acknowledged, nothing of a
            // request that broke off.
            match self.status(session.as_deref()) {
                Ok(Some((location, kept))) => {
                    session = Some(location);
                    offset = kept;
                }
                Ok(None) => {
                    if self.has_blob(t.repository, &blob.digest, t.progress)? {
                        // The final PUT was done; only its answer was lost.
                        return Ok(());
                    }
                    session = None;
                    offset = 0;
                }
                // Unknown for now: the next chunk from where it was finds out.
                Err(status) if status.transient => {}
                Err(status) => return Err(status.error),
            }
            tracing::warn!(digest = %blob.digest, offset, error = %failure.error, "resuming an upload");
            t.progress
                .retrying(&blob.digest, &failure.error, Some(offset));
            (t.report)(offset);
        }
    }

    /// Sends the next chunk, or completes the upload once every byte is there.
    fn chunk_step(
        &self,
        t: &Transfer<'_>,
        session: &mut Option<String>,
        offset: &mut u64,
    ) -> Result<Step, Failure> {
        let (repository, blob) = (t.repository, t.blob);
        let location = match session {
            Some(location) => location.clone(),
            None => {
                let url = format!("{}/v2/{repository}/blobs/uploads/", self.origin);
                let answer = self.send("POST", &url, &[], Body::Bytes(&[]))?;
                if answer.status != 202 {
                    return Err(self.refusal("POST", &url, &answer));
                }
                *offset = 0;
                let location = self.location(&answer, "POST", &url)?;
                *session = Some(location.clone());
                location
            }
        };
        if *offset < blob.size {
            let len = CHUNK.min(blob.size - *offset);
            let length = len.to_string();
            let range = format!("{}-{}", *offset, *offset + len - 1);
            let url = self.resolve(&location);
            let answer = self.send(
                "PATCH",
                &url,
                &[
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Length", length.as_str()),
                    ("Content-Range", range.as_str()),
                ],
                t.body(*offset, len),
            )?;
            return match answer.status {
                202 => {
                    *offset += len;
                    *session = Some(answer.location.unwrap_or(location));
                    Ok(Step::Sent)
                }
                // The registry stands elsewhere than this chunk starts: ask where.
                416 => Err(Failure {
                    transient: true,
                    ..self.refusal("PATCH", &url, &answer)
                }),
                _ => Err(self.refusal("PATCH", &url, &answer)),
            };
        }
        let url = with_digest(&self.resolve(&location), &blob.digest);
        let answer = self.send("PUT", &url, &[], Body::Bytes(&[]))?;
        match answer.status {
            201 => Ok(Step::Done),
            _ => Err(self.refusal("PUT", &url, &answer)),
        }
    }

    /// Where session `location` stands: its new location and the bytes it holds; `None` when
    /// the registry knows no such session (or there is none).
    fn status(&self, location: Option<&str>) -> Result<Option<(String, u64)>, Failure> {
        let Some(location) = location else {
            return Ok(None);
        };
        let url = self.resolve(location);
        let answer = self.send("GET", &url, &[], Body::None)?;
        match answer.status {
            202 | 204 => {
                let kept = answer
                    .range
                    .as_deref()
                    .and_then(range_end)
                    .map_or(0, |end| if end == 0 { 0 } else { end + 1 });
                let location = answer.location.unwrap_or_else(|| location.to_owned());
                Ok(Some((location, kept)))
            }
            404 => Ok(None),
            _ => Err(self.refusal("GET", &url, &answer)),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or failed [`ATTEMPTS`] times.
    fn retrying<T>(
        &self,
        digest: &str,
        progress: &dyn Progress,
        mut attempt: impl FnMut() -> Result<T, Failure>,
    ) -> Result<T, ClientError> {
        let mut failures = 0;
        loop {
            match attempt() {
                Ok(value) => return Ok(value),
                Err(failure) if failure.transient && failures + 1 < ATTEMPTS => {
                    failures += 1;
                    tracing::warn!(%digest, error = %failure.error, "retrying");
                    progress.retrying(digest, &failure.error, None);
                    std::thread::sleep(pause(failures));
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Answer, Failure> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("Authorization", &self.authorization);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let unsendable = |e: ureq::http::Error| {
            Failure::from(ClientError::Usage(format!(
                "{method} {} cannot be sent: {e}",
                path_of(url)
            )))
        };
        let response = match body {
            Body::None => self.agent.run(request.body(()).map_err(unsendable)?),
            Body::Bytes(bytes) => self.agent.run(request.body(bytes).map_err(unsendable)?),
            Body::Blob {
                file,
                start,
                from,
                len,
                report,
            } => {
                let mut slice = Slice {
                    file,
                    start,
                    position: from,
                    end: from + len,
                    reported: from,
                    report,
                };
                let body = SendBody::from_reader(&mut slice);
                self.agent.run(request.body(body).map_err(unsendable)?)
            }
        }
        .map_err(|e| self.broken(e))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = response.status().as_u16();
        let (location, range, digest) = (
            header("location"),
            header("range"),
            header("docker-content-digest"),
        );
        let body = response
            .into_body()
            .with_config()
            .limit(ERROR_BODY_LIMIT)
            .read_to_string()
            .map_err(|e| self.broken(e))?;
        Ok(Answer {
            status,
            location,
            range,
            digest,
            body,
        })
    }

    /// No answer: the registry could not be reached, or the connection broke.
    fn broken(&self, error: ureq::Error) -> Failure {
        Failure {
            error: ClientError::Unreachable {
                url: self.origin.clone(),
                reason: error.to_string(),
            },
            transient: true,
        }
    }

    /// An answer other than the one expected, with the registry's code and message.
    fn refusal(&self, method: &str, url: &str, answer: &Answer) -> Failure {
        Failure {
            error: refused(method, &path_of(url), answer.status, &answer.body),
            transient: answer.status >= 500 || matches!(answer.status, 408 | 429),
        }
    }

    fn location(&self, answer: &Answer, method: &str, url: &str) -> Result<String, Failure> {
        answer.location.clone().ok_or_else(|| {
            Failure::from(ClientError::Answer {
                path: path_of(url),
                reason: format!("{method} answered {} without a Location", answer.status),
            })
        })
    }

    /// A `Location` as a URL: relative ones are on the manager.
    fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}/{}", self.origin, location.trim_start_matches('/'))
        }
    }
}

/// The pause before the `failures`-th attempt again.
fn pause(failures: u32) -> Duration {
    FIRST_PAUSE
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(LONGEST_PAUSE)
}

/// `url` with `digest=`, its own query kept as it is.
fn with_digest(url: &str, digest: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}digest={digest}")
}

/// The path of `url`, without its query (which may carry a session's signature).
fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split('?').next().unwrap_or(path).to_owned()
}

/// The last byte a `Range: 0-<last>` names.
fn range_end(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    range.split_once('-')?.1.trim().parse().ok()
}

/// A blob's bytes from a file, read where they are, the position reported as they go out.
struct Slice<'a> {
    file: &'a File,
    start: u64,
    position: u64,
    end: u64,
    reported: u64,
    report: &'a dyn Fn(u64),
}

impl Read for Slice<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let left = self.end - self.position;
        if left == 0 || buffer.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(left).map_or(buffer.len(), |left| left.min(buffer.len()));
        let n = self
            .file
            .read_at(&mut buffer[..want], self.start + self.position)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file ends before the blob does",
            ));
        }
        self.position += n as u64;
        if self.position - self.reported >= REPORT_EVERY || self.position == self.end {
            self.reported = self.position;
            (self.report)(self.position);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_urls_keep_their_query_and_errors_show_none() {
        let signed =
            "http://m:8080/v2/artifacts/default/web/blobs/uploads/abc?_alien_v=1&_alien_sig=x";
        assert_eq!(
            with_digest(signed, "sha256:00"),
            format!("{signed}&digest=sha256:00")
        );
        assert_eq!(
            with_digest("/v2/a/blobs/uploads/abc", "sha256:00"),
            "/v2/a/blobs/uploads/abc?digest=sha256:00"
        );
        assert_eq!(
            path_of(signed),
            "/v2/artifacts/default/web/blobs/uploads/abc"
        );
        assert_eq!(range_end("0-67108863"), Some(67_108_863));
        assert_eq!(range_end("bytes=0-0"), Some(0));
        assert_eq!(range_end("junk"), None);
    }

    #[test]
    fn pauses_double_up_to_a_limit() {
        assert_eq!(pause(1), Duration::from_millis(500));
        assert_eq!(pause(2), Duration::from_secs(1));
        assert_eq!(pause(4), Duration::from_secs(4));
        assert_eq!(pause(9), LONGEST_PAUSE);
    }
}
