//! commandd's SQLite file, `<data>/commands/commands.db`: the command registry (the source of
//! truth for state, attempt, target, deadline and lease, spec §1.1), idempotency keys, and
//! the local backend's key-value table. This module is the only code that speaks SQL.
//!
//! One connection serves the process, behind a mutex, and every call runs on tokio's
//! blocking pool, never on the reactor. WAL and `synchronous=FULL`: a command acknowledged to
//! a client survives a kill -9 or a power cut.

mod migrations;
pub mod registry;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tracing::info;

use crate::Error;

#[derive(Debug, Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    pub async fn open(path: PathBuf) -> Result<Db, Error> {
        let conn = tokio::task::spawn_blocking(move || open_blocking(&path)).await??;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool; no other call interleaves with it.
    pub async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic unwinds through (and so rolls back) any transaction it was in; the
            // connection itself stays sound.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await?
    }

    /// [`Db::call`] inside one immediate transaction, committed when `f` succeeds.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }
}

fn open_blocking(path: &Path) -> Result<Connection, Error> {
    let conn = migrations::open(path)?;
    conn.set_prepared_statement_cache_capacity(64);
    info!(path = %path.display(), "commands database open");
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pragmas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path().join("commands.db"))
            .await
            .expect("open");
        let (journal, synchronous): (String, i64) = db
            .call(|conn| {
                Ok((
                    conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?,
                    conn.pragma_query_value(None, "synchronous", |row| row.get(0))?,
                ))
            })
            .await
            .expect("pragmas");
        assert_eq!(journal, "wal");
        assert_eq!(synchronous, 2, "FULL");
    }
}
