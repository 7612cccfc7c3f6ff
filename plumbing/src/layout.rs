//! The data directory: one tree shared by all daemons, each file with exactly one owner.
//!
//! ```text
//! <data>/
//!   serve.lock          supervisor  held while `alien serve` runs on this directory
//!   manager.db*         manager     SQLite system of record (unless [database] path moves it)
//!   registry/           registryd   blobs and registry metadata
//!   commands/           commandd    command state and payloads
//!   telemetry/          otelfwd     durable OTLP queue
//!   deployments/        deployd     each local deployment's workloads and resource state
//!   images/             deployd     unpacked image root filesystems, shared by deployments
//!   run/                (0700)      recreated sockets and locks, nothing durable
//!     <daemon>.sock     the daemon  its HTTP/1.1 API (0600); manager.sock is the manager's
//!                                   API for deployd, where callers act as the system
//!     <daemon>.lock     the daemon  one instance per daemon and data directory
//!     <daemon>.notify   supervisor  where the daemon sends READY=1
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// The five daemons, in start order: the public port opens after the sidecars, and deployd,
/// a client of the manager, starts last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Daemon {
    Otelfwd,
    Registryd,
    Commandd,
    Manager,
    Deployd,
}

impl Daemon {
    /// Start order; stop in reverse.
    pub const ALL: [Daemon; 5] = [
        Daemon::Otelfwd,
        Daemon::Registryd,
        Daemon::Commandd,
        Daemon::Manager,
        Daemon::Deployd,
    ];

    /// The sidecars: daemons that serve only on their Unix socket.
    pub const SIDECARS: [Daemon; 3] = [Daemon::Otelfwd, Daemon::Registryd, Daemon::Commandd];

    pub fn name(self) -> &'static str {
        match self {
            Daemon::Otelfwd => "otelfwd",
            Daemon::Registryd => "registryd",
            Daemon::Commandd => "commandd",
            Daemon::Manager => "manager",
            Daemon::Deployd => "deployd",
        }
    }

    pub fn from_name(name: &str) -> Option<Daemon> {
        Daemon::ALL.into_iter().find(|d| d.name() == name)
    }

    /// A daemon without which the manager cannot do its job. Telemetry is not, nor the
    /// deployment loop: when otelfwd or deployd keeps failing, the API stays up, degraded.
    pub fn is_critical(self) -> bool {
        !matches!(self, Daemon::Otelfwd | Daemon::Deployd)
    }
}

impl fmt::Display for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Longest path a Unix socket address can hold on Linux (`sun_path` less the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// `root` should be absolute: daemons may run with another working directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn serve_lock(&self) -> PathBuf {
        self.root.join("serve.lock")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn socket(&self, daemon: Daemon) -> PathBuf {
        self.run_dir().join(format!("{daemon}.sock"))
    }

    pub fn daemon_lock(&self, daemon: Daemon) -> PathBuf {
        self.run_dir().join(format!("{daemon}.lock"))
    }

    pub fn notify_socket(&self, daemon: Daemon) -> PathBuf {
        self.run_dir().join(format!("{daemon}.notify"))
    }

    /// The directory a sidecar keeps its durable state in. The manager's state is its
    /// database, whose path comes from the configuration.
    pub fn state_dir(&self, daemon: Daemon) -> PathBuf {
        match daemon {
            Daemon::Manager => self.root.clone(),
            Daemon::Registryd => self.root.join("registry"),
            Daemon::Commandd => self.root.join("commands"),
            Daemon::Otelfwd => self.root.join("telemetry"),
            Daemon::Deployd => self.root.join("deployments"),
        }
    }

    /// The unpacked image root filesystems deployd keeps, shared by every deployment.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The longest socket path this layout produces, so that a data directory too deep for
    /// Unix socket addresses is refused at start rather than when a daemon binds.
    pub fn check_socket_paths(&self) -> Result<(), PathBuf> {
        Daemon::ALL
            .into_iter()
            .flat_map(|d| [self.socket(d), self.notify_socket(d)])
            .find(|p| p.as_os_str().len() > MAX_SOCKET_PATH)
            .map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_order_opens_the_public_port_after_the_sidecars_and_before_deployd() {
        let position = |daemon| Daemon::ALL.iter().position(|d| *d == daemon);
        for sidecar in Daemon::SIDECARS {
            assert!(position(sidecar) < position(Daemon::Manager));
        }
        assert_eq!(Daemon::ALL.last(), Some(&Daemon::Deployd));
        assert!(Daemon::SIDECARS.iter().all(|d| *d != Daemon::Manager));
        for d in Daemon::ALL {
            assert_eq!(Daemon::from_name(d.name()), Some(d));
        }
    }

    #[test]
    fn deep_data_directories_are_refused() {
        assert!(DataDir::new("/var/lib/alien").check_socket_paths().is_ok());
        let deep = format!("/{}", "d".repeat(100));
        assert!(DataDir::new(deep).check_socket_paths().is_err());
    }
}
