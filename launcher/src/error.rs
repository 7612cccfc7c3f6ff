//! The launcher's one error type.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("workload spec is invalid: {0}")]
    InvalidSpec(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state directory {0} already holds a workload")]
    StateDirInUse(PathBuf),
    #[error("no workload recorded in {0}")]
    NotRecorded(PathBuf),
    #[error("workload record {path} is unreadable: {reason}")]
    BadRecord { path: PathBuf, reason: String },
    #[error("{runtime} {action} failed: {message}")]
    Runtime {
        runtime: String,
        action: &'static str,
        message: String,
    },
    #[error("failed to start {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("workload {id} still runs after SIGKILL")]
    WontDie { id: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Attaches the path an I/O error happened on.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
