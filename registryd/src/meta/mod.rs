//! registryd's SQLite file, `<data>/registry/registry.db`: repositories, which blobs each
//! repository may read, manifests and what they reference, tags, referrers and upload
//! sessions. This module is the only code that speaks SQL.
//!
//! One connection serves the process. SQLite blocks, so every call runs on tokio's blocking
//! pool through [`Meta::call`]. Holding that connection is also the registry's commit lock:
//! the code that moves a blob file into place or removes one does so inside a `call`, so
//! that a file's presence and its `blobs` row change together as far as any other request or
//! the garbage collector can tell (see [`crate::gc`]). Every time is stored as Unix
//! milliseconds from [`plumbing::clock::now_ms`].

pub mod blobs;
pub mod manifests;
mod migrations;
pub mod uploads;

use std::path::PathBuf;

use plumbing::clock;
use plumbing::sqlite::Database;
use rusqlite::{Connection, params};

use crate::error::Error;
use crate::names::Name;

/// The registry's database, with registryd's error type.
#[derive(Debug, Clone)]
pub struct Meta(Database);

impl Meta {
    /// Opens and migrates the database at `path`, creating it if needed.
    pub async fn open(path: PathBuf) -> Result<Meta, Error> {
        Ok(Meta(Database::open(path, migrations::MIGRATIONS).await?))
    }

    /// Runs `f` with the connection on the blocking pool; no other call interleaves with it.
    pub async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        self.0.call(f).await
    }
}

/// Records that `name` exists (from its first blob or manifest on).
pub fn ensure_repo(conn: &Connection, name: &Name) -> Result<(), Error> {
    conn.execute(
        "INSERT OR IGNORE INTO repositories (name, created_at) VALUES (?1, ?2)",
        params![name.as_str(), clock::now_ms()],
    )?;
    Ok(())
}

pub fn repo_exists(conn: &Connection, name: &Name) -> Result<bool, Error> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM repositories WHERE name = ?1)",
        [name.as_str()],
        |row| row.get(0),
    )?)
}

/// Up to `limit` repository names after `last`, in lexical order.
pub fn list_repos(conn: &Connection, last: &str, limit: u64) -> Result<Vec<String>, Error> {
    let mut stmt = conn
        .prepare_cached("SELECT name FROM repositories WHERE name > ?1 ORDER BY name LIMIT ?2")?;
    let rows = stmt.query_map(params![last, clamp(limit)], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A `u64` count as an SQLite integer.
pub fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An SQLite integer that holds a size or an offset (never negative when we wrote it).
pub fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
