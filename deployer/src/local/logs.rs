//! Workloads' output: each version of a compute resource writes its stdout and stderr to
//! files in its own directory (so that it keeps running, and writing, while deployd is
//! down). The shipper follows those files and hands complete lines to a sink, which deployd
//! turns into OTLP log records; a file's read offset is kept beside it, so a restart of
//! deployd neither repeats nor skips lines.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How often the files are looked at.
const POLL: Duration = Duration::from_millis(500);
/// The most bytes read from one file per look.
const READ_LIMIT: u64 = 1 << 20;
/// A file fully shipped and larger than this is emptied (its writer appends, so it goes on
/// at the new end).
const TRUNCATE_AT: u64 = 8 << 20;
/// Marks a line the public SDKs write for the runtime, not for the user.
const SYSTEM_MARKER: &str = "\u{1e}ALIEN_SYSTEM\u{1f}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: Stream,
    pub text: String,
    pub time_unix_nano: u64,
}

/// Lines of one resource of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    pub deployment_id: String,
    pub resource_id: String,
    pub lines: Vec<LogLine>,
}

/// OTLP severity numbers of an INFO and an ERROR record.
const INFO: i32 = 9;
const ERROR: i32 = 17;

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// The batch as one OTLP/protobuf logs request: the resource is the workload (`service.name` is its
/// id), each line a record with its stream.
pub fn encode(batch: &LogBatch) -> Vec<u8> {
    let records = batch
        .lines
        .iter()
        .map(|line| {
            let stderr = line.stream == Stream::Stderr;
            LogRecord {
                time_unix_nano: line.time_unix_nano,
                observed_time_unix_nano: line.time_unix_nano,
                severity_number: if stderr { ERROR } else { INFO },
                severity_text: if stderr { "ERROR" } else { "INFO" }.to_owned(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(line.text.clone())),
                }),
                attributes: vec![attribute("log.iostream", line.stream.name())],
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", &batch.resource_id),
                    attribute("alien.resource_id", &batch.resource_id),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

pub trait LogSink: Send + Sync {
    /// Delivers `batch`; an error leaves the lines to be sent again.
    fn send(&self, batch: LogBatch) -> impl Future<Output = Result<(), String>> + Send;
}

#[derive(Debug, Clone)]
struct Source {
    deployment_id: String,
    resource_id: String,
    stream: Stream,
}

/// The files being followed.
#[derive(Debug, Default)]
pub struct Shipper {
    files: Mutex<BTreeMap<PathBuf, Source>>,
}

impl Shipper {
    pub fn follow(&self, path: PathBuf, deployment_id: &str, resource_id: &str, stream: Stream) {
        self.lock().insert(
            path,
            Source {
                deployment_id: deployment_id.to_owned(),
                resource_id: resource_id.to_owned(),
                stream,
            },
        );
    }

    /// Stops following every file under `dir` (a version or a deployment that is gone).
    pub fn forget_under(&self, dir: &Path) {
        self.lock().retain(|path, _| !path.starts_with(dir));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, Source>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ships until `shutdown`, then once more.
    pub async fn run<S: LogSink>(self: Arc<Self>, sink: S, shutdown: CancellationToken) {
        loop {
            let stopping = shutdown.is_cancelled();
            let files: Vec<(PathBuf, Source)> = self
                .lock()
                .iter()
                .map(|(p, s)| (p.clone(), s.clone()))
                .collect();
            for (path, source) in files {
                let read = {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || read_new(&path)).await
                };
                let Ok(Ok(Some((lines, offset)))) = read else {
                    continue;
                };
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                let lines: Vec<LogLine> = lines
                    .into_iter()
                    .filter(|line| !line.starts_with(SYSTEM_MARKER))
                    .map(|text| LogLine {
                        stream: source.stream,
                        text,
                        time_unix_nano: now,
                    })
                    .collect();
                let delivered = lines.is_empty()
                    || sink
                        .send(LogBatch {
                            deployment_id: source.deployment_id.clone(),
                            resource_id: source.resource_id.clone(),
                            lines,
                        })
                        .await
                        .inspect_err(|error| debug!(%error, "cannot ship workload output yet"))
                        .is_ok();
                if delivered {
                    let _ = tokio::task::spawn_blocking(move || commit(&path, offset)).await;
                }
            }
            if stopping {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
}

fn offset_file(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".offset");
    path.with_file_name(name)
}

/// The complete lines after the shipped offset, and the offset after them.
fn read_new(path: &Path) -> std::io::Result<Option<(Vec<String>, u64)>> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut offset: u64 = std::fs::read_to_string(offset_file(path))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if offset > len {
        // Emptied since: start again from the beginning.
        offset = 0;
    }
    if offset == len {
        if len > TRUNCATE_AT {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(0)?;
            std::fs::write(offset_file(path), "0")?;
        }
        return Ok(None);
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.take(READ_LIMIT).read_to_end(&mut bytes)?;
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(last) => last + 1,
        // One line longer than a whole read is shipped as it is.
        None if bytes.len() as u64 == READ_LIMIT => bytes.len(),
        None => return Ok(None),
    };
    let lines = String::from_utf8_lossy(&bytes[..complete])
        .lines()
        .map(str::to_owned)
        .collect();
    Ok(Some((lines, offset + complete as u64)))
}

fn commit(path: &Path, offset: u64) -> std::io::Result<()> {
    let file = offset_file(path);
    let temp = file.with_extension("offset.tmp");
    std::fs::write(&temp, offset.to_string())?;
    std::fs::rename(temp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_lines_are_read_and_the_offset_resumes_after_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, "one\ntwo\nthr").expect("write");
        let (lines, offset) = read_new(&path).expect("read").expect("lines");
        assert_eq!(lines, ["one", "two"]);
        commit(&path, offset).expect("commit");
        assert_eq!(read_new(&path).expect("read"), None);
        std::fs::write(&path, "one\ntwo\nthree\n").expect("write");
        let (lines, _) = read_new(&path).expect("read").expect("lines");
        assert_eq!(lines, ["three"]);
    }
}
