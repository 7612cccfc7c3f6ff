//! The state file: what a caller that restarts reads to adopt a running runtime.

use std::io;
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
        plumbing::durable::replace(path, &bytes)
    }
}
