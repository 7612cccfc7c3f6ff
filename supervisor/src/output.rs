//! Re-emits what the daemons write. A daemon's stderr is its log: each line goes to our
//! stderr tagged with the daemon's name. Its stdout is for the person running the system (the
//! first-run admin key) and is passed through untouched, so that `export ...` lines can be
//! copied as they are.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;
use plumbing::Daemon;
use plumbing::logging::LogFormat;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// Longer log lines are cut; a daemon cannot make the supervisor buffer without bound.
const MAX_LINE: usize = 64 * 1024;

/// The output of one daemon process being followed.
#[derive(Debug)]
pub struct Followed {
    last_line: Arc<Mutex<Option<String>>>,
    stderr_done: JoinHandle<()>,
}

impl Followed {
    pub fn start(
        daemon: Daemon,
        stdout: OwnedFd,
        stderr: OwnedFd,
        format: LogFormat,
    ) -> std::io::Result<Followed> {
        let stdout = pipe::Receiver::from_owned_fd(stdout)?;
        let stderr = pipe::Receiver::from_owned_fd(stderr)?;
        tokio::spawn(for_each_line(stdout, |line| {
            crate::console::message_line(&line)
        }));
        let last_line: Arc<Mutex<Option<String>>> = Arc::default();
        let last = last_line.clone();
        let stderr_done = tokio::spawn(for_each_line(stderr, move |line| {
            if line.trim().is_empty() {
                return;
            }
            crate::console::log_line(&tag(daemon, &line, format));
            *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(summary(&line));
        }));
        Ok(Followed {
            last_line,
            stderr_done,
        })
    }

    /// The last thing the process logged, once its stderr is closed (or `wait` has passed:
    /// a grandchild may hold the pipe open).
    pub async fn last_line(self, wait: std::time::Duration) -> Option<String> {
        let _ = tokio::time::timeout(wait, self.stderr_done).await;
        self.last_line
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

async fn for_each_line(source: pipe::Receiver, mut each: impl FnMut(String)) {
    let mut lines = FramedRead::new(source, LinesCodec::new_with_max_length(MAX_LINE));
    while let Some(line) = lines.next().await {
        match line {
            Ok(line) => each(line),
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                each(format!("[line longer than {MAX_LINE} bytes cut]"))
            }
            Err(LinesCodecError::Io(_)) => return,
        }
    }
}

/// One daemon log line as the supervisor prints it.
pub fn tag(daemon: Daemon, line: &str, format: LogFormat) -> String {
    match format {
        LogFormat::Text => format!("{:<9} | {line}", daemon.name()),
        LogFormat::Json => {
            let mut object = match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(object)) => object,
                _ => {
                    let mut object = serde_json::Map::new();
                    object.insert("level".into(), "INFO".into());
                    object.insert("message".into(), line.into());
                    object
                }
            };
            object.insert("daemon".into(), daemon.name().into());
            serde_json::Value::Object(object).to_string()
        }
    }
}

/// The readable part of a log line, for "last error" in a failure report.
fn summary(line: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(object)) => {
            let text = |key: &str| object.get(key).and_then(|v| v.as_str()).map(str::to_owned);
            match (text("message"), text("error")) {
                (Some(message), Some(error)) => format!("{message}: {error}"),
                (Some(message), None) => message,
                (None, _) => line.to_owned(),
            }
        }
        _ => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_tagged_with_the_daemon() {
        let cases = [
            (
                LogFormat::Text,
                "INFO listening",
                "registryd | INFO listening",
            ),
            (
                LogFormat::Json,
                r#"{"level":"INFO","message":"listening"}"#,
                r#"{"daemon":"registryd","level":"INFO","message":"listening"}"#,
            ),
            (
                LogFormat::Json,
                "thread 'main' panicked",
                r#"{"daemon":"registryd","level":"INFO","message":"thread 'main' panicked"}"#,
            ),
        ];
        for (format, line, expected) in cases {
            let tagged = tag(Daemon::Registryd, line, format);
            let same = match format {
                LogFormat::Text => tagged == expected,
                LogFormat::Json => {
                    serde_json::from_str::<serde_json::Value>(&tagged).ok()
                        == serde_json::from_str::<serde_json::Value>(expected).ok()
                }
            };
            assert!(same, "{line:?} became {tagged:?}");
        }
    }

    #[test]
    fn the_summary_of_a_json_line_is_its_message_and_error() {
        assert_eq!(
            summary(r#"{"level":"ERROR","message":"cannot start","error":"disk full"}"#),
            "cannot start: disk full"
        );
        assert_eq!(summary("plain text"), "plain text");
    }
}
