//! The `blobs` and `repo_blobs` tables: which content files exist, and who may read them.

use plumbing::clock;
use rusqlite::{Connection, OptionalExtension, params};

use super::{clamp, unsigned};
use crate::error::Error;
use crate::names::Name;

/// A blob check (`HEAD`) refreshes `touched_at` at most this often, so that a push that
/// checks hundreds of existing layers does not write hundreds of times.
pub const TOUCH_SLACK_MS: i64 = 10_000;

/// The size of `digest` if `repo` may read it: a blob uploaded or mounted there, or the bytes
/// of one of its manifests.
pub fn readable_size(conn: &Connection, repo: &Name, digest: &str) -> Result<Option<u64>, Error> {
    let size: Option<i64> = conn
        .prepare_cached(
            "SELECT b.size FROM blobs b WHERE b.digest = ?2 AND (
                 EXISTS (SELECT 1 FROM repo_blobs WHERE repo = ?1 AND digest = ?2)
                 OR EXISTS (SELECT 1 FROM manifests WHERE repo = ?1 AND digest = ?2))",
        )?
        .query_row(params![repo.as_str(), digest], |row| row.get(0))
        .optional()?;
    Ok(size.map(unsigned))
}

/// The size of a blob that exists in any repository.
pub fn size(conn: &Connection, digest: &str) -> Result<Option<u64>, Error> {
    let size: Option<i64> = conn
        .prepare_cached("SELECT size FROM blobs WHERE digest = ?1")?
        .query_row([digest], |row| row.get(0))
        .optional()?;
    Ok(size.map(unsigned))
}

/// Marks a blob as in use by a push now (throttled by [`TOUCH_SLACK_MS`]).
pub fn touch(conn: &Connection, digest: &str) -> Result<(), Error> {
    let now = clock::now_ms();
    conn.prepare_cached("UPDATE blobs SET touched_at = ?2 WHERE digest = ?1 AND touched_at < ?3")?
        .execute(params![digest, now, now - TOUCH_SLACK_MS])?;
    Ok(())
}

/// Records a blob whose file has just been put in place, as touched now.
pub fn record(conn: &Connection, digest: &str, size: u64) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO blobs (digest, size, touched_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at",
    )?
    .execute(params![digest, clamp(size), clock::now_ms()])?;
    Ok(())
}

pub fn link(conn: &Connection, repo: &Name, digest: &str) -> Result<(), Error> {
    conn.prepare_cached("INSERT OR IGNORE INTO repo_blobs (repo, digest) VALUES (?1, ?2)")?
        .execute(params![repo.as_str(), digest])?;
    Ok(())
}

/// Removes `repo`'s link to a blob; true if there was one. The file stays until the
/// collector finds nothing else uses it.
pub fn unlink(conn: &Connection, repo: &Name, digest: &str) -> Result<bool, Error> {
    let n = conn
        .prepare_cached("DELETE FROM repo_blobs WHERE repo = ?1 AND digest = ?2")?
        .execute(params![repo.as_str(), digest])?;
    Ok(n > 0)
}

/// What makes a blob garbage: untouched since the cutoff, referenced by no manifest, and not
/// itself a manifest's bytes.
const GARBAGE: &str = "b.touched_at < :cutoff
    AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.child = b.digest)
    AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)";

/// Up to `limit` garbage blobs after `after`, in digest order: the mark phase, one page.
pub fn garbage_after(
    conn: &Connection,
    cutoff: i64,
    after: &str,
    limit: usize,
) -> Result<Vec<String>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT b.digest FROM blobs b WHERE {GARBAGE} AND b.digest > :after
         ORDER BY b.digest LIMIT :limit"
    ))?;
    let rows = stmt.query_map(
        rusqlite::named_params! {":cutoff": cutoff, ":after": after, ":limit": clamp(limit as u64)},
        |row| row.get(0),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes `digest`'s row and links if it is still garbage, deciding afresh inside the
/// caller's transaction; returns its size if it was deleted.
pub fn delete_if_garbage(
    conn: &Connection,
    digest: &str,
    cutoff: i64,
) -> Result<Option<u64>, Error> {
    let size: Option<i64> = conn
        .prepare_cached(&format!(
            "DELETE FROM blobs AS b WHERE b.digest = :digest AND {GARBAGE} RETURNING size"
        ))?
        .query_row(
            rusqlite::named_params! {":digest": digest, ":cutoff": cutoff},
            |row| row.get(0),
        )
        .optional()?;
    if size.is_some() {
        conn.prepare_cached("DELETE FROM repo_blobs WHERE digest = ?1")?
            .execute([digest])?;
    }
    Ok(size.map(unsigned))
}
