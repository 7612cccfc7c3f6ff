//! Runs a workload (a container, daemon or worker app) from an unpacked image root,
//! detached from the caller: it keeps running when the caller is killed, writes its output to
//! files, is found again from its state directory after the caller restarts, and is stopped
//! with a grace period.
//!
//! Two backends: an OCI runtime (`runc` or `crun`), detected by really running a tiny
//! container, and plain processes when no runtime can run here (no root, no runtime, a cgroup
//! setup the runtime refuses). Every call blocks (it runs the runtime, sleeps while waiting
//! for a stop): call it from a blocking thread.

mod detect;
mod error;
mod files;
mod netns;
mod oci;
mod process;
mod procfs;
mod record;
mod rootpath;
mod spec;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{Error, Result};
pub use netns::{connect_in, listen_in};
pub use record::{RootMode, Workload};
pub use spec::{Mount, Network, WorkloadSpec};

use record::RecordedBackend;

/// The OCI runtimes tried by [`Launcher::detect`], in order.
pub const RUNTIMES: [&str; 2] = ["runc", "crun"];

/// The whole environment an OCI runtime is run with. Nothing of the caller's reaches it: a
/// `NOTIFY_SOCKET` (the supervisor's or systemd's, for the caller's own readiness) makes
/// `runc` wait for the container to send `READY=1`, which a workload never does.
pub(crate) const RUNTIME_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a workload is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running {
        pid: u32,
    },
    /// Its main process ended; the code is known only to the launcher that started a plain
    /// process and is still its parent.
    Exited {
        code: Option<i32>,
    },
    /// Nothing is recorded or the runtime knows no such container.
    Missing,
}

/// Which backend new workloads start in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The runtime binary's path.
    Oci { runtime: PathBuf },
    /// Plain processes, and why no runtime could be used.
    Process { reason: String },
}

/// Starts, finds and stops workloads.
#[derive(Debug, Clone)]
pub struct Launcher {
    backend: Backend,
}

impl Launcher {
    /// The first of [`RUNTIMES`] that runs a container on this host, else plain processes.
    /// `probe_binary` runs as `[probe, "--version"]` in the probe container and must exit 0.
    pub fn detect(probe_binary: &Path) -> Launcher {
        let candidates: Vec<PathBuf> = RUNTIMES.iter().map(PathBuf::from).collect();
        Launcher::detect_among(&candidates, probe_binary)
    }

    /// As [`Launcher::detect`], among the given runtimes (names on `PATH` or paths).
    pub fn detect_among(candidates: &[PathBuf], probe_binary: &Path) -> Launcher {
        let mut reasons = Vec::new();
        for candidate in candidates {
            let Some(runtime) = detect::find_binary(candidate) else {
                reasons.push(format!("{}: not installed", candidate.display()));
                continue;
            };
            match detect::probe(&runtime, probe_binary) {
                Ok(()) => return Launcher::oci(runtime),
                Err(reason) => reasons.push(format!("{}: {reason}", runtime.display())),
            }
        }
        let reason = if reasons.is_empty() {
            "no OCI runtime was named".to_owned()
        } else {
            reasons.join("; ")
        };
        Launcher::process(reason)
    }

    /// A launcher on this runtime, without probing it.
    pub fn oci(runtime: impl Into<PathBuf>) -> Launcher {
        Launcher {
            backend: Backend::Oci {
                runtime: runtime.into(),
            },
        }
    }

    /// A launcher of plain processes; `reason` is reported by [`Launcher::backend`].
    pub fn process(reason: impl Into<String>) -> Launcher {
        Launcher {
            backend: Backend::Process {
                reason: reason.into(),
            },
        }
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Starts the workload detached and records it in `spec.state_dir`, which must hold no
    /// workload yet. Fails when the program cannot be started; a program that starts and
    /// then exits shows as [`Status::Exited`].
    pub fn start(&self, spec: &WorkloadSpec) -> Result<Workload> {
        match &self.backend {
            Backend::Oci { runtime } => oci::start(runtime, spec),
            Backend::Process { .. } => process::start(spec),
        }
    }

    /// Rebuilds the handle `start` returned from what it recorded in `state_dir`.
    pub fn adopt(&self, state_dir: &Path) -> Result<Workload> {
        let state_dir = std::path::absolute(state_dir).map_err(|source| Error::Io {
            path: state_dir.to_path_buf(),
            source,
        })?;
        record::Workload::read(&state_dir)
    }

    /// The workload's state, by the backend it was started in.
    pub fn status(&self, workload: &Workload) -> Result<Status> {
        status(workload)
    }

    /// SIGTERM to the workload (the container's init, or the whole process group), up to
    /// `grace` to end, then SIGKILL; then removes the container and what `start` put in the
    /// state directory (the directory too, when nothing else is in it).
    pub fn stop(&self, workload: &Workload, grace: Duration) -> Result<()> {
        match &workload.backend {
            RecordedBackend::Oci { runtime, .. } => oci::stop(runtime, workload, grace),
            RecordedBackend::Process { start_time } => process::stop(workload, *start_time, grace),
        }
    }
}

fn status(workload: &Workload) -> Result<Status> {
    if !workload.state_dir.join(record::RECORD_FILE).exists() {
        return Ok(Status::Missing);
    }
    match &workload.backend {
        RecordedBackend::Oci { runtime, .. } => oci::status(runtime, workload),
        RecordedBackend::Process { start_time } => process::status(workload, *start_time),
    }
}
