//! Shared plumbing for the alien-manager daemons.
//!
//! Every daemon (manager, registryd, commandd, otelfwd) and the supervisor agree on three
//! things through this crate: what the configuration file means ([`config`]), where each file
//! of the data directory lives and who owns it ([`layout`]), and how they talk to each other
//! (HTTP/1.1 over Unix sockets in [`uds`], readiness with the systemd notify protocol in
//! [`notify`]). It also holds the wire error envelope ([`envelope`]), what a full volume looks
//! like ([`disk`]), log setup ([`logging`]), the clock ([`clock`]), percent-encoding
//! ([`percent`]), the private file modes of the data directory ([`modes`]) and the open-file
//! limit ([`fd_limit`]) so that they are written once.

pub mod clock;
pub mod config;
pub mod disk;
pub mod durable;
pub mod envelope;
pub mod fd_limit;
pub mod layout;
pub mod lock;
pub mod logging;
pub mod modes;
pub mod notify;
pub mod percent;
pub mod shutdown;
pub mod sqlite;
pub mod uds;

pub use config::Config;
pub use layout::{Daemon, DataDir};

/// Everything a daemon needs to run: its validated configuration, the data directory it
/// shares with the others, and the token that tells it to stop.
#[derive(Debug, Clone)]
pub struct DaemonContext {
    pub config: std::sync::Arc<Config>,
    pub data: DataDir,
    pub shutdown: tokio_util::sync::CancellationToken,
}
