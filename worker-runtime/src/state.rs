//! The state file: what a caller that restarts reads to adopt a running runtime.

use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeState {
    /// The runtime's own process.
    pub pid: u32,
    /// The app (or the OCI runtime running it), once started.
    pub child_pid: Option<u32>,
    pub grpc_port: u16,
    pub transport_port: u16,
    /// The app registered its HTTP server and subscribed to tasks: the transport port
    /// reaches it.
    pub ready: bool,
}

impl RuntimeState {
    /// Reads a state file a runtime wrote.
    pub fn read(path: &Path) -> io::Result<RuntimeState> {
        serde_json::from_slice(&std::fs::read(path)?).map_err(io::Error::other)
    }

    /// Replaces the file at `path` with this state. Blocking.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        write_atomically(path, &bytes)
    }
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees the old file or the new
/// one, never a mix: a temporary file beside it, fsynced, renamed over it, and the directory
/// fsynced so the rename itself survives a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}
