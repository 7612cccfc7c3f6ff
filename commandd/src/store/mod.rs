//! commandd's SQLite file, `<data>/commands/commands.db`: the command registry (the source of
//! truth for state, attempt, target, deadline and lease), idempotency keys, and
//! the local backend's key-value table. This module is the only code that speaks SQL.
//!
//! One connection serves the process, behind a mutex, and every call runs on tokio's
//! blocking pool, never on the reactor. WAL and `synchronous=FULL`: a command acknowledged to
//! a client survives a kill -9 or a power cut.

mod migrations;
pub mod registry;

use std::path::PathBuf;

use plumbing::sqlite::Database;
use rusqlite::Connection;

use crate::Error;

/// The commands database, with commandd's error type.
#[derive(Debug, Clone)]
pub struct Db(Database);

impl Db {
    pub async fn open(path: PathBuf) -> Result<Db, Error> {
        let db = Db(Database::open(path, migrations::MIGRATIONS).await?);
        // Room for every statement the protocol prepares.
        db.call(|conn| {
            conn.set_prepared_statement_cache_capacity(64);
            Ok(())
        })
        .await?;
        Ok(db)
    }

    /// Runs `f` with the connection on the blocking pool; no other call interleaves with it.
    pub async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        self.0.call(f).await
    }

    /// [`Db::call`] inside one immediate transaction, committed when `f` succeeds.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        self.0.transaction(f).await
    }
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
