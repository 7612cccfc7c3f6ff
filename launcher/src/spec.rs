//! What the caller asks for: one workload, described independently of the backend.

use std::net::IpAddr;
use std::path::PathBuf;

/// Everything needed to start one workload.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Unique among running workloads, e.g. `dep_x-api-v3`: the container's name.
    pub id: String,
    /// The unpacked image root. Shared and never modified.
    pub rootfs: PathBuf,
    /// The command; an absolute `args[0]` names a file inside `rootfs`.
    pub args: Vec<String>,
    /// The working directory inside `rootfs` (the image's `WorkingDir`), `/` when empty.
    pub cwd: String,
    /// The whole environment: nothing of the caller's own is added.
    pub env: Vec<(String, String)>,
    /// Host directories visible inside (OCI backend only).
    pub mounts: Vec<Mount>,
    /// OCI backend only.
    pub memory_limit_bytes: Option<u64>,
    /// CPUs worth of time per period, e.g. `0.5` (OCI backend only).
    pub cpus: Option<f64>,
    pub network: Network,
    /// The container's host name (OCI backend only).
    pub hostname: String,
    /// Extra `/etc/hosts` lines, `(name, address)` (OCI backend only).
    pub hosts_entries: Vec<(String, IpAddr)>,
    /// Appended to; created when missing.
    pub stdout: PathBuf,
    /// Appended to; created when missing.
    pub stderr: PathBuf,
    /// Private to this workload: what `start` records, the bundle, the overlay's upper and
    /// work directories. `stop` removes what the launcher put there.
    pub state_dir: PathBuf,
}

/// A host directory bound into the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    /// An absolute path inside the workload.
    pub target: String,
    pub read_only: bool,
}

/// Which network the workload sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// The host's network namespace.
    Host,
    /// A namespace of its own with only loopback up; reach it with
    /// [`crate::connect_in`] and let it reach out through [`crate::listen_in`]. The process
    /// backend has no namespaces and treats this as `Host`.
    Private,
}
