//! The `uploads` table: one row per upload session, bound to its repository.

use plumbing::clock;
use rusqlite::{Connection, OptionalExtension, params};

use super::{clamp, unsigned};
use crate::digest::Algorithm;
use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub repo: String,
    /// Bytes acknowledged so far: the file holds at least these, fsynced.
    pub length: u64,
    /// What the session hashes with while bytes arrive.
    pub algorithm: Algorithm,
}

pub fn insert(conn: &Connection, id: &str, repo: &str, algorithm: Algorithm) -> Result<(), Error> {
    let now = clock::now_ms();
    conn.prepare_cached(
        "INSERT INTO uploads (id, repo, length, algorithm, created_at, updated_at)
         VALUES (?1, ?2, 0, ?3, ?4, ?4)",
    )?
    .execute(params![id, repo, algorithm.name(), now])?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Upload>, Error> {
    let row: Option<(String, i64, String)> = conn
        .prepare_cached("SELECT repo, length, algorithm FROM uploads WHERE id = ?1")?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    row.map(|(repo, length, algorithm)| {
        let algorithm = Algorithm::from_name(&algorithm).ok_or_else(|| {
            Error::Inconsistent(format!("upload {id} has algorithm {algorithm:?}"))
        })?;
        Ok(Upload {
            repo,
            length: unsigned(length),
            algorithm,
        })
    })
    .transpose()
}

pub fn set_length(conn: &Connection, id: &str, length: u64) -> Result<(), Error> {
    conn.prepare_cached("UPDATE uploads SET length = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, clamp(length), clock::now_ms()])?;
    Ok(())
}

pub fn delete(conn: &Connection, id: &str) -> Result<bool, Error> {
    Ok(conn
        .prepare_cached("DELETE FROM uploads WHERE id = ?1")?
        .execute([id])?
        > 0)
}

/// Deletes a session not written to since `before`; true if it did.
pub fn delete_if_idle(conn: &Connection, id: &str, before: i64) -> Result<bool, Error> {
    Ok(conn
        .prepare_cached("DELETE FROM uploads WHERE id = ?1 AND updated_at < ?2")?
        .execute(params![id, before])?
        > 0)
}

/// Sessions not written to since `before`.
pub fn idle_since(conn: &Connection, before: i64) -> Result<Vec<String>, Error> {
    let mut stmt = conn.prepare_cached("SELECT id FROM uploads WHERE updated_at < ?1")?;
    let rows = stmt.query_map([before], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn exists(conn: &Connection, id: &str) -> Result<bool, Error> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM uploads WHERE id = ?1)")?
        .query_row([id], |row| row.get(0))?)
}
