//! A full volume: recognising one in an error (`ENOSPC`, `EDQUOT`, `SQLITE_FULL`), reading
//! how much room a volume has, and the state of one the manager reports in `/health`.
//!
//! A write refused for lack of space is the client's answer (507, or 503 with `Retry-After`
//! to a sender that retries by itself), never a 500, and leaves nothing half-written; each
//! daemon maps it to its wire error in one place. The daemons keep running, as a database
//! server does on a full disk: reads go on, and writes work again once space is freed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// What a client is told of a write refused for lack of space. Where the data lives and how
/// much room is left go to the operator (the log, `/health`), not to the client.
pub const FULL_MESSAGE: &str =
    "No space left on the server's data volume: nothing was stored; retry once space is freed";

/// A volume counts as full again only after this much more room than when a write last
/// failed for lack of it, so that a volume a few bytes short does not flap.
pub const RECOVERY_MARGIN: u64 = 1024 * 1024;

/// The error of a write that found no room: the file system is full (`ENOSPC`) or the
/// user's quota is spent (`EDQUOT`).
pub fn is_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// SQLite's `SQLITE_FULL`: the database (or its write-ahead log) could not grow. SQLite
/// reports `ENOSPC` this way; a spent quota comes as an I/O error it does not tell apart.
pub fn sqlite_is_full(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// The room on a volume, as an unprivileged writer has it (less what is reserved for root).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Space {
    pub available_bytes: u64,
    pub total_bytes: u64,
}

/// The room on the volume that holds `path`.
pub fn space(path: &Path) -> io::Result<Space> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let unit = stat.fragment_size() as u64;
    Ok(Space {
        available_bytes: (stat.blocks_available() as u64).saturating_mul(unit),
        total_bytes: (stat.blocks() as u64).saturating_mul(unit),
    })
}

/// A full volume, as `/health` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FullVolume {
    pub path: PathBuf,
    /// Always `full`: a field of its own, so that other states can follow.
    pub status: String,
    #[serde(flatten)]
    pub space: Space,
}

/// A volume the daemons write to: full from the moment a write to it failed for lack of
/// space, until it has [`RECOVERY_MARGIN`] more room than it had then. One line is logged
/// when it fills and one when it has room again, whatever the number of requests refused.
#[derive(Debug, Clone)]
pub struct Volume {
    path: Arc<Path>,
    /// The room it had when a write last failed; `None` while it is not full.
    full: Arc<Mutex<Option<Space>>>,
}

impl Volume {
    pub fn new(path: impl Into<PathBuf>) -> Volume {
        Volume {
            path: Arc::from(path.into()),
            full: Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A write to this volume failed for lack of space. Reads the room left: call it off
    /// the reactor.
    pub fn report_full(&self) {
        let space = space(&self.path).unwrap_or_default();
        let mut full = self.full.lock().unwrap_or_else(PoisonError::into_inner);
        self.mark_full(&mut full, space);
    }

    fn mark_full(&self, full: &mut Option<Space>, space: Space) {
        if full.is_none() {
            warn!(
                path = %self.path.display(),
                available_bytes = space.available_bytes,
                total_bytes = space.total_bytes,
                "the data volume is full: writes are refused until space is freed (reads go on)"
            );
        }
        *full = Some(space);
    }

    /// `Some` while the volume is full; one that has room again is no longer reported. Reads
    /// the room left: call it off the reactor.
    pub fn check(&self) -> Option<FullVolume> {
        let now = space(&self.path).ok();
        let mut full = self.full.lock().unwrap_or_else(PoisonError::into_inner);
        // Less room than the margin is full before any write failed here: a volume that was
        // full when the manager started, or that a sidecar's own writes filled, which no
        // answer to a client reported.
        if full.is_none()
            && let Some(now) = now.filter(|now| now.available_bytes < RECOVERY_MARGIN)
        {
            self.mark_full(&mut full, now);
        }
        let then = (*full)?;
        if let Some(now) = now
            && now.available_bytes >= then.available_bytes.saturating_add(RECOVERY_MARGIN)
        {
            info!(
                path = %self.path.display(),
                available_bytes = now.available_bytes,
                total_bytes = now.total_bytes,
                "the data volume has space again"
            );
            *full = None;
            return None;
        }
        Some(FullVolume {
            path: self.path.to_path_buf(),
            status: "full".into(),
            space: now.unwrap_or(then),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_quota_errors_are_told_apart_from_other_failures() {
        use nix::errno::Errno;
        assert!(is_full(&io::Error::from_raw_os_error(Errno::ENOSPC as i32)));
        assert!(is_full(&io::Error::from_raw_os_error(Errno::EDQUOT as i32)));
        assert!(!is_full(&io::Error::from_raw_os_error(Errno::EIO as i32)));
        assert!(!is_full(&io::Error::other("no space left on device")));
        let sqlite = |code| {
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("x".into()))
        };
        assert!(sqlite_is_full(&sqlite(rusqlite::ffi::SQLITE_FULL)));
        assert!(!sqlite_is_full(&sqlite(rusqlite::ffi::SQLITE_IOERR)));
        assert!(!sqlite_is_full(&rusqlite::Error::QueryReturnedNoRows));
    }

    #[test]
    fn a_volume_is_full_from_a_failed_write_until_it_has_room_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = Volume::new(dir.path());
        assert_eq!(volume.check(), None);
        let room = space(dir.path()).expect("statvfs");
        assert!(room.total_bytes > 0 && room.available_bytes <= room.total_bytes);

        // As if a write had failed when there was far more room than now.
        *volume.full.lock().expect("lock") = Some(Space {
            available_bytes: room.total_bytes,
            total_bytes: room.total_bytes,
        });
        let full = volume.check().expect("still full");
        assert_eq!(full.path, dir.path());
        assert_eq!(full.status, "full");
        assert_eq!(
            serde_json::to_value(&full).expect("JSON")["availableBytes"],
            full.space.available_bytes
        );
        assert!(volume.check().is_some(), "stays full without more room");

        // A write failed with the room there is now: once that grows by the margin (here,
        // as if it had failed with less than nothing), the volume is no longer full.
        volume.report_full();
        assert!(volume.check().is_some());
        *volume.full.lock().expect("lock") = Some(Space {
            available_bytes: room.available_bytes.saturating_sub(2 * RECOVERY_MARGIN),
            total_bytes: room.total_bytes,
        });
        assert_eq!(volume.check(), None);
        assert_eq!(volume.check(), None, "and stays so");
    }
}
