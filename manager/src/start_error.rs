//! Why the manager could not start, or stopped serving: printed once by
//! `alien daemon manager` (and, through the supervisor, `alien serve`), never sent to a
//! client. What a request can fail with is [`crate::Error`].

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    RunDir(#[from] plumbing::uds::UdsError),

    #[error(transparent)]
    Lock(#[from] plumbing::lock::LockError),

    /// Opening, migrating or first writing the database failed.
    #[error(transparent)]
    Database(#[from] crate::Error),

    #[error("cannot start the database writer: {0}")]
    WriterThread(io::Error),

    #[error("start-up task: {0}")]
    Task(#[from] tokio::task::JoinError),

    #[error("signing key {}: {source}", path.display())]
    SigningKey { path: PathBuf, source: io::Error },

    #[error(
        "signing key {} holds {len} bytes instead of {expected}; restore it from a backup, or delete it to have a new one generated (outstanding signed URLs then stop working)",
        path.display()
    )]
    SigningKeyLength {
        path: PathBuf,
        len: u64,
        expected: usize,
    },

    #[error("random number generator: {0}")]
    Random(getrandom::Error),

    #[error("legacy admin token file {}: {source}", path.display())]
    LegacyAdminToken { path: PathBuf, source: io::Error },

    #[error("cannot print the admin token on stdout: {0}")]
    AnnounceToken(io::Error),

    #[error(
        "cannot listen on {addr}: the port is in use by another process (choose another with [server] port or PORT)"
    )]
    PortInUse { addr: SocketAddr },

    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },

    #[error("serving HTTP: {0}")]
    Serve(io::Error),
}

impl From<rusqlite::Error> for StartError {
    fn from(error: rusqlite::Error) -> StartError {
        StartError::Database(error.into())
    }
}
