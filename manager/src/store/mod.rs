//! The SQLite system of record. This module is the only owner of the database file.
//!
//! One connection serves the whole process. SQLite calls block, so every query runs on
//! tokio's blocking pool through [`Store::call`], never on the reactor.

mod migrations;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;
use tracing::{info, warn};

use crate::Error;

/// How long a statement waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An SQL expression for the current time as RFC 3339 in the `+00:00` form the public
/// manager writes (spec §1.2).
pub const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')";

#[derive(Debug, Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating it and its directory if needed) and migrates the database at `path`.
    pub async fn open(path: PathBuf) -> Result<Store, Error> {
        let conn = tokio::task::spawn_blocking(move || open_blocking(&path)).await??;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool. Whatever `f` does in one call is
    /// not interleaved with any other call; for atomicity on disk, open a transaction in it.
    pub async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A call that panicked has unwound through its transaction, which rolled back:
            // the connection is still sound, so the poison is not passed on.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await?
    }
}

fn open_blocking(path: &Path) -> Result<Connection, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let opened = || -> rusqlite::Result<(Connection, String)> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let journal_mode =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        // FULL rather than the public manager's NORMAL: a token or deployment acknowledged to
        // a client must survive a power cut.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok((conn, journal_mode))
    };
    let (mut conn, journal_mode) = opened().map_err(|source| Error::OpenDatabase {
        path: path.to_path_buf(),
        source,
    })?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        warn!(
            path = %path.display(),
            journal_mode,
            "the database's file system does not support write-ahead logging; readers will wait for writers"
        );
    }
    migrations::apply(&mut conn, path)?;
    info!(path = %path.display(), "database open");
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opening_creates_the_directory_and_sets_the_pragmas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("nested/manager.db"))
            .await
            .expect("open");
        let (journal, synchronous, foreign_keys, busy): (String, i64, i64, i64) = store
            .call(|conn| {
                let get = |name| conn.pragma_query_value(None, name, |row| row.get::<_, i64>(0));
                Ok((
                    conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?,
                    get("synchronous")?,
                    get("foreign_keys")?,
                    get("busy_timeout")?,
                ))
            })
            .await
            .expect("pragmas");
        assert_eq!(journal, "wal");
        assert_eq!(synchronous, 2, "FULL");
        assert_eq!(foreign_keys, 1);
        assert_eq!(busy, 5000);
    }

    #[tokio::test]
    async fn now_is_rfc3339_utc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("manager.db"))
            .await
            .expect("open");
        let now: String = store
            .call(|conn| Ok(conn.query_row(&format!("SELECT {NOW}"), [], |row| row.get(0))?))
            .await
            .expect("now");
        // 2026-01-02T03:04:05.123+00:00
        assert_eq!(now.len(), 29, "{now}");
        assert_eq!(&now[10..11], "T");
        assert!(now.ends_with("+00:00"), "{now}");
    }
}
