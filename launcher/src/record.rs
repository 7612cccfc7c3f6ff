//! What `start` records in the state directory, so that a launcher in a restarted caller can
//! find, query and stop the workload.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::spec::Network;

/// The record's file name inside the state directory.
pub(crate) const RECORD_FILE: &str = "workload.json";

/// A started workload: a handle that stays valid across the caller's restarts (see
/// [`crate::Launcher::adopt`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub id: String,
    /// Its main process as the host sees it: the container's init, or the process-group
    /// leader. 0 while an OCI start is under way.
    pub pid: u32,
    pub state_dir: PathBuf,
    pub network: Network,
    pub(crate) backend: RecordedBackend,
}

/// How the workload was started; status and stop follow this, not the caller's current
/// launcher, so a workload outlives a change of backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum RecordedBackend {
    Oci {
        runtime: PathBuf,
        root: RootMode,
    },
    /// `start_time`: field 22 of `/proc/<pid>/stat`, telling our process from a later one
    /// that got the same pid.
    Process {
        start_time: u64,
    },
}

/// How an OCI workload's root is made writable without touching the shared image root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootMode {
    /// An overlay: the image root below, `upper/` in the state directory above.
    Overlay,
    /// The image root read-only, with a tmpfs `/tmp`: overlay could not mount here.
    ReadOnly,
}

impl Workload {
    /// `runc`, `crun` or `process`.
    pub fn backend_name(&self) -> String {
        match &self.backend {
            RecordedBackend::Oci { runtime, .. } => runtime
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| runtime.display().to_string()),
            RecordedBackend::Process { .. } => "process".to_owned(),
        }
    }

    /// The OCI root's kind; `None` for a plain process.
    pub fn root_mode(&self) -> Option<RootMode> {
        match &self.backend {
            RecordedBackend::Oci { root, .. } => Some(*root),
            RecordedBackend::Process { .. } => None,
        }
    }

    pub(crate) fn write(&self) -> Result<()> {
        let path = self.state_dir.join(RECORD_FILE);
        let bytes = serde_json::to_vec_pretty(self).map_err(|error| Error::BadRecord {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        write_durably(&path, &bytes)
    }

    pub(crate) fn read(state_dir: &Path) -> Result<Workload> {
        let path = state_dir.join(RECORD_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotRecorded(state_dir.to_path_buf()));
            }
            Err(error) => return Err(error).at(&path),
        };
        serde_json::from_slice(&bytes).map_err(|error| Error::BadRecord {
            path,
            reason: error.to_string(),
        })
    }
}

/// A record we act on, replaced so that it survives a crash ([`plumbing::durable::replace`]).
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    plumbing::durable::replace(path, bytes).at(path)
}
