//! SQLite as every daemon keeps its state: write-ahead logging, `synchronous=FULL` (what a
//! daemon acknowledges survives a power cut), a busy timeout, and a schema brought up to date
//! by numbered migrations in `PRAGMA user_version`, one transaction each.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};
use tracing::{info, warn};

/// How long a statement waits for a lock another connection holds before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {} has schema version {found}, but this build knows versions up to {supported}; refusing to start (run the version that wrote it, or restore a backup)",
        path.display()
    )]
    UnknownSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot migrate database {} to version {version}: {source}", path.display())]
    Migrate {
        path: PathBuf,
        version: i64,
        source: rusqlite::Error,
    },
    #[error("database worker: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

/// A daemon's one connection to its database, behind a mutex. Every call runs on tokio's
/// blocking pool, never on the reactor, and no other call interleaves with it.
#[derive(Debug, Clone)]
pub struct Database {
    conn: Arc<Mutex<Connection>>,
}

impl Database {
    /// Opens (creating it) and migrates the database at `path`, on the blocking pool.
    pub async fn open(
        path: PathBuf,
        migrations: &'static [&'static str],
    ) -> Result<Database, SqliteError> {
        let conn = tokio::task::spawn_blocking(move || {
            let mut conn = open(&path)?;
            migrate(&mut conn, &path, migrations)?;
            info!(path = %path.display(), "database open");
            Ok::<_, SqliteError>(conn)
        })
        .await??;
        Ok(Database {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<tokio::task::JoinError> + Send + 'static,
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

    /// [`Database::call`] inside one immediate transaction, committed when `f` succeeds.
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<tokio::task::JoinError> + From<rusqlite::Error> + Send + 'static,
    {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }
}

/// Opens (creating it and its directory) the database at `path` for writing.
pub fn open(path: &Path) -> Result<Connection, SqliteError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| SqliteError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let failed = |source| SqliteError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(failed)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(failed)?;
    let journal: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(failed)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(failed)?;
    if !journal.eq_ignore_ascii_case("wal") {
        warn!(
            path = %path.display(),
            journal,
            "no write-ahead logging on this file system; readers will wait for writers"
        );
    }
    Ok(conn)
}

enum Step {
    Current,
    Applied(i64),
    TooNew(i64),
}

/// Applies the `migrations` the database at `path` has not had yet, in order, each in its own
/// transaction, so that a crash leaves it at some whole version. A database newer than
/// `migrations` is refused rather than misread.
pub fn migrate(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<(), SqliteError> {
    loop {
        match apply_next(conn, migrations) {
            Ok(Step::Current) => return Ok(()),
            Ok(Step::Applied(version)) => {
                info!(path = %path.display(), version, "database migrated");
            }
            Ok(Step::TooNew(found)) => {
                return Err(SqliteError::UnknownSchema {
                    path: path.to_path_buf(),
                    found,
                    supported: i64::try_from(migrations.len()).unwrap_or(i64::MAX),
                });
            }
            Err(source) => {
                // The failed transaction rolled back: the version is still the last whole one.
                let version = user_version(conn).unwrap_or_default() + 1;
                return Err(SqliteError::Migrate {
                    path: path.to_path_buf(),
                    version,
                    source,
                });
            }
        }
    }
}

fn apply_next(conn: &mut Connection, migrations: &[&str]) -> rusqlite::Result<Step> {
    // IMMEDIATE takes the write lock before the version is read, so two processes cannot
    // both apply the same migration.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = user_version(&tx)?;
    let applied = usize::try_from(found).ok();
    let Some(next) = applied.and_then(|n| migrations.get(n)) else {
        return Ok(if applied == Some(migrations.len()) {
            Step::Current
        } else {
            Step::TooNew(found)
        });
    };
    tx.execute_batch(next)?;
    tx.pragma_update(None, "user_version", found + 1)?;
    tx.commit()?;
    Ok(Step::Applied(found + 1))
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATIONS: [&str; 2] = [
        "CREATE TABLE a (x INTEGER);",
        "ALTER TABLE a ADD COLUMN y INTEGER;",
    ];

    fn version(conn: &Connection) -> i64 {
        user_version(conn).expect("user_version")
    }

    #[test]
    fn migrations_apply_once_in_order_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/state.db");
        let mut conn = open(&path).expect("open");
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .expect("journal_mode");
        let synchronous: i64 = conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .expect("synchronous");
        assert_eq!((mode.as_str(), synchronous), ("wal", 2));

        migrate(&mut conn, &path, &MIGRATIONS[..1]).expect("first");
        assert_eq!(version(&conn), 1);
        migrate(&mut conn, &path, &MIGRATIONS).expect("upgrade in place");
        migrate(&mut conn, &path, &MIGRATIONS).expect("again: nothing to do");
        assert_eq!(version(&conn), 2);
        conn.execute("INSERT INTO a (x, y) VALUES (1, 2)", [])
            .expect("both migrations applied");

        let refused = migrate(&mut conn, &path, &MIGRATIONS[..1]);
        assert!(matches!(
            refused,
            Err(SqliteError::UnknownSchema {
                found: 2,
                supported: 1,
                ..
            })
        ));
    }

    #[test]
    fn a_failed_migration_leaves_the_last_whole_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let mut conn = open(&path).expect("open");
        let broken = [MIGRATIONS[0], "CREATE TABLE b (x); THIS IS NOT SQL;"];
        let error = migrate(&mut conn, &path, &broken).expect_err("second fails");
        assert!(
            matches!(error, SqliteError::Migrate { version: 2, .. }),
            "{error}"
        );
        assert_eq!(version(&conn), 1);
        let b_exists: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'b')",
                [],
                |row| row.get(0),
            )
            .expect("query");
        assert!(!b_exists, "half a migration was kept");
    }
}
