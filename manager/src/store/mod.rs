//! The SQLite system of record. This module is the only owner of the database file.
//!
//! One connection writes, on its own thread ([`writer`]), so writes never wait on each
//! other's locks and share fsyncs; a small pool of connections reads, which WAL lets run
//! beside the writer, on tokio's blocking pool. No query runs on the reactor, and a caller
//! waiting for a connection waits asynchronously and holds no thread.

pub mod deployment_groups;
pub mod deployments;
mod migrations;
pub mod overview;
pub mod releases;
pub mod tokens;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;
use tracing::info;

use crate::{Error, StartError};
use writer::Writer;

/// Prepared statements kept per connection: every query the API runs fits.
const STATEMENT_CACHE: usize = 64;

/// Readers beyond the machine's parallelism only queue on the CPU, and two keep a slow read
/// from stalling every other one.
const MAX_READERS: usize = 8;
const MIN_READERS: usize = 2;

/// An SQL expression for the current time as RFC 3339 in the `+00:00` form the public
/// manager writes in REST answers.
pub const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')";

/// [`NOW`] moved by the seconds in the SQL parameter `seconds` (`?` or `?N`): lock staleness
/// and `next_step_after` compare as text against `NOW`, so they must have its exact form.
pub fn now_plus(seconds: &str) -> String {
    format!("strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', printf('%+.3f seconds', {seconds}))")
}

/// A JSON column as raw JSON, handed to the client without being parsed into a tree.
pub fn json_column(
    table: &'static str,
    id: &str,
    column: &'static str,
    text: String,
) -> Result<Box<RawValue>, Error> {
    RawValue::from_string(text).map_err(|source| Error::CorruptRecord {
        table,
        id: id.to_owned(),
        column,
        source,
    })
}

/// An optional JSON column, see [`json_column`].
pub fn optional_json_column(
    table: &'static str,
    id: &str,
    column: &'static str,
    text: Option<String>,
) -> Result<Option<Box<RawValue>>, Error> {
    text.map(|text| json_column(table, id, column, text))
        .transpose()
}

#[derive(Debug, Clone)]
pub struct Store {
    writer: Writer,
    readers: Arc<Readers>,
}

#[derive(Debug)]
struct Readers {
    path: PathBuf,
    /// One permit per idle connection, so that taking one never finds the stack empty.
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Connection>>,
}

impl Store {
    /// Opens (creating it and its directory if needed) and migrates the database at `path`.
    pub async fn open(path: PathBuf) -> Result<Store, StartError> {
        let (writer, readers, path) = tokio::task::spawn_blocking(move || {
            let writer = open_writer(&path)?;
            let count = std::thread::available_parallelism()
                .map_or(MIN_READERS, usize::from)
                .clamp(MIN_READERS, MAX_READERS);
            let readers = (0..count)
                .map(|_| open_reader(&path))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, Error>((writer, readers, path))
        })
        .await??;
        Ok(Store {
            writer: Writer::start(writer)?,
            readers: Arc::new(Readers {
                path,
                permits: Arc::new(Semaphore::new(readers.len())),
                idle: Mutex::new(readers),
            }),
        })
    }

    /// Runs `f` with the writing connection to itself, for work that manages its own
    /// transactions (and may fail in ways of its own, `E`).
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        self.writer.write(f).await
    }

    /// Runs `f` in a write transaction that is on disk when this returns `Ok` and rolled back
    /// when `f` fails. What `f` reads still holds when it writes, also against another
    /// process sharing the file.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        self.writer.transaction(f).await
    }

    /// Runs `f` on a reading connection inside one read transaction, so that its queries see
    /// a single snapshot. Writes from `f` fail (`query_only`).
    pub async fn read<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let permit = Arc::clone(&self.readers.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::ReadersClosed)?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let mut conn = readers.take()?;
            let tx = conn.transaction()?;
            let value = f(&tx);
            // After a failed `f` this ends the snapshot all the same: nothing was written.
            tx.commit()?;
            readers.give_back(conn);
            drop(permit);
            value
        })
        .await?
    }
}

impl Readers {
    /// An idle connection. The stack is empty only after a call panicked and its connection
    /// was dropped while unwinding; a new one takes its place.
    fn take(&self) -> Result<Connection, Error> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }
}

/// Pragmas every connection needs: a wait for locks instead of an immediate failure, and
/// room for the API's prepared statements.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(plumbing::sqlite::BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "foreign_keys", "ON")
}

/// The writer: WAL and `synchronous=FULL` (rather than the public manager's NORMAL: a token
/// or deployment acknowledged to a client must survive a power cut), then our pragmas and
/// the migrations.
fn open_writer(path: &Path) -> Result<Connection, Error> {
    let mut conn = plumbing::sqlite::open(path)?;
    configure(&conn).map_err(|source| Error::OpenDatabase {
        path: path.to_path_buf(),
        source,
    })?;
    migrations::apply(&mut conn, path)?;
    info!(path = %path.display(), "database open");
    Ok(conn)
}

/// A connection that cannot write, so that a mistake in a read path fails loudly instead of
/// writing beside the single writer.
fn open_reader(path: &Path) -> Result<Connection, Error> {
    let opened = || -> rusqlite::Result<Connection> {
        let conn = Connection::open(path)?;
        configure(&conn)?;
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(conn)
    };
    opened().map_err(|source| Error::OpenDatabase {
        path: path.to_path_buf(),
        source,
    })
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
            .write(|conn| {
                let get = |name| conn.pragma_query_value(None, name, |row| row.get::<_, i64>(0));
                Ok::<_, Error>((
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
    async fn readers_see_committed_writes_and_cannot_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("manager.db"))
            .await
            .expect("open");
        store
            .transaction(|tx| {
                tx.execute(
                    "INSERT INTO tokens (id, type, key_prefix, key_hash) VALUES ('tok_1', 'admin', 'p', 'h')",
                    [],
                )?;
                Ok(())
            })
            .await
            .expect("insert");
        let count: i64 = store
            .read(|conn| Ok(conn.query_row("SELECT count(*) FROM tokens", [], |row| row.get(0))?))
            .await
            .expect("count");
        assert_eq!(count, 1);
        let refused = store
            .read(|conn| Ok(conn.execute("DELETE FROM tokens", [])?))
            .await;
        assert!(refused.is_err(), "{refused:?}");
    }

    #[tokio::test]
    async fn a_panicking_read_leaves_the_pool_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("manager.db"))
            .await
            .expect("open");
        let readers = store.readers.permits.available_permits();
        for _ in 0..=readers {
            let panicked = store
                .read(|_| -> Result<(), Error> { panic!("a bug in a read path") })
                .await;
            assert!(
                matches!(panicked, Err(Error::DatabaseWorker(_))),
                "{panicked:?}"
            );
        }
        for _ in 0..=readers {
            store.read(|_| Ok(())).await.expect("a reader is there");
        }
    }

    #[tokio::test]
    async fn now_is_rfc3339_utc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("manager.db"))
            .await
            .expect("open");
        let now: String = store
            .read(|conn| Ok(conn.query_row(&format!("SELECT {NOW}"), [], |row| row.get(0))?))
            .await
            .expect("now");
        // 2026-01-02T03:04:05.123+00:00
        assert_eq!(now.len(), 29, "{now}");
        assert_eq!(&now[10..11], "T");
        assert!(now.ends_with("+00:00"), "{now}");
    }
}
