//! The `manifests`, `manifest_refs` and `tags` tables.

use std::collections::{HashMap, HashSet, VecDeque};

use plumbing::clock;
use rusqlite::{Connection, OptionalExtension, params};

use super::{blobs, clamp, ensure_repo, unsigned};
use crate::error::Error;
use crate::manifest::Manifest;
use crate::names::Name;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

fn stored(row: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    Ok(Stored {
        digest: row.get(0)?,
        media_type: row.get(1)?,
        size: unsigned(row.get(2)?),
    })
}

pub fn by_digest(conn: &Connection, repo: &str, digest: &str) -> Result<Option<Stored>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT digest, media_type, size FROM manifests WHERE repo = ?1 AND digest = ?2",
        )?
        .query_row(params![repo, digest], stored)
        .optional()?)
}

pub fn by_tag(conn: &Connection, repo: &Name, tag: &str) -> Result<Option<Stored>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT m.digest, m.media_type, m.size FROM tags t
             JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
             WHERE t.repo = ?1 AND t.tag = ?2",
        )?
        .query_row(params![repo.as_str(), tag], stored)
        .optional()?)
}

/// Checks that everything `manifest` references is in `repo` with the size it claims.
/// Called in the same transaction as [`insert`]: see [`crate::gc`] for why that matters.
pub fn check_refs(conn: &Connection, repo: &Name, manifest: &Manifest) -> Result<(), Error> {
    for blob in &manifest.blobs {
        let digest = blob.digest.to_string();
        match blobs::readable_size(conn, repo, &digest)? {
            None => return Err(Error::ManifestBlobUnknown(digest)),
            Some(size) if size != blob.size => {
                return Err(Error::ManifestInvalid(format!(
                    "{digest} is {size} bytes, the manifest says {}",
                    blob.size
                )));
            }
            Some(_) => {}
        }
    }
    for child in &manifest.children {
        let digest = child.digest.to_string();
        match by_digest(conn, repo.as_str(), &digest)? {
            None => return Err(Error::ManifestBlobUnknown(digest)),
            Some(found) if found.size != child.size => {
                return Err(Error::ManifestInvalid(format!(
                    "{digest} is {} bytes, the index says {}",
                    found.size, child.size
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Records a manifest whose bytes are the blob `digest`, and points `tag` at it.
pub fn insert(
    conn: &Connection,
    repo: &Name,
    digest: &str,
    size: u64,
    manifest: &Manifest,
    tag: Option<&str>,
) -> Result<(), Error> {
    let now = clock::now_ms();
    ensure_repo(conn, repo)?;
    blobs::record(conn, digest, size)?;
    conn.prepare_cached(
        "INSERT INTO manifests (repo, digest, media_type, size, artifact_type, subject, annotations, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (repo, digest) DO UPDATE SET media_type = excluded.media_type",
    )?
    .execute(params![
        repo.as_str(),
        digest,
        manifest.media_type,
        clamp(size),
        manifest.artifact_type,
        manifest.subject.as_ref().map(ToString::to_string),
        manifest.annotations,
        now
    ])?;
    let mut add_ref = conn.prepare_cached(
        "INSERT OR IGNORE INTO manifest_refs (repo, manifest, child, kind) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let blobs = manifest.blobs.iter().map(|blob| (blob, "blob"));
    let children = manifest.children.iter().map(|child| (child, "manifest"));
    for (descriptor, kind) in blobs.chain(children) {
        add_ref.execute(params![
            repo.as_str(),
            digest,
            descriptor.digest.to_string(),
            kind
        ])?;
    }
    if let Some(tag) = tag {
        conn.prepare_cached(
            "INSERT INTO tags (repo, tag, digest, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
        )?
        .execute(params![repo.as_str(), tag, digest, now])?;
    }
    Ok(())
}

/// Removes a manifest from `repo`, with its references and the tags that point at it.
pub fn delete(conn: &Connection, repo: &str, digest: &str) -> Result<bool, Error> {
    let n = conn
        .prepare_cached("DELETE FROM manifests WHERE repo = ?1 AND digest = ?2")?
        .execute(params![repo, digest])?;
    conn.prepare_cached("DELETE FROM manifest_refs WHERE repo = ?1 AND manifest = ?2")?
        .execute(params![repo, digest])?;
    conn.prepare_cached("DELETE FROM tags WHERE repo = ?1 AND digest = ?2")?
        .execute(params![repo, digest])?;
    Ok(n > 0)
}

pub fn delete_tag(conn: &Connection, repo: &Name, tag: &str) -> Result<bool, Error> {
    Ok(conn
        .prepare_cached("DELETE FROM tags WHERE repo = ?1 AND tag = ?2")?
        .execute(params![repo.as_str(), tag])?
        > 0)
}

/// Up to `limit` tags of `repo` after `last`, in lexical (byte) order.
pub fn tags(conn: &Connection, repo: &Name, last: &str, limit: u64) -> Result<Vec<String>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT tag FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![repo.as_str(), last, clamp(limit)], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// The manifests of `repo` whose subject is `subject`, optionally of one artifact type.
pub fn referrers(
    conn: &Connection,
    repo: &Name,
    subject: &str,
    artifact_type: Option<&str>,
) -> Result<Vec<Referrer>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
         WHERE repo = ?1 AND subject = ?2 AND (?3 IS NULL OR artifact_type = ?3)
         ORDER BY digest",
    )?;
    let rows = stmt.query_map(params![repo.as_str(), subject, artifact_type], |row| {
        Ok(Referrer {
            digest: row.get(0)?,
            media_type: row.get(1)?,
            size: unsigned(row.get(2)?),
            artifact_type: row.get(3)?,
            annotations: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes the manifests that nothing keeps: neither a tag, nor an index that is kept
/// listing them, nor a kept subject they refer to, nor being younger than `cutoff`.
/// Returns how many were deleted. Run inside one transaction.
pub fn delete_unreachable(conn: &Connection, cutoff: i64) -> Result<u64, Error> {
    type Key = (String, String);
    let mut all: Vec<(Key, Option<String>, bool)> = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT m.repo, m.digest, m.subject,
                    m.created_at >= ?1 OR EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)
             FROM manifests m",
        )?;
        let rows = stmt.query_map([cutoff], |row| {
            Ok(((row.get(0)?, row.get(1)?), row.get(2)?, row.get(3)?))
        })?;
        for row in rows {
            all.push(row?);
        }
    }
    // Edges from a kept manifest to what it keeps: an index to its manifests, a subject to
    // its referrers.
    let mut keeps: HashMap<Key, Vec<Key>> = HashMap::new();
    {
        let mut stmt = conn
            .prepare("SELECT repo, manifest, child FROM manifest_refs WHERE kind = 'manifest'")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (repo, parent, child) = row?;
            keeps
                .entry((repo.clone(), parent))
                .or_default()
                .push((repo, child));
        }
    }
    for ((repo, digest), subject, _) in &all {
        if let Some(subject) = subject {
            keeps
                .entry((repo.clone(), subject.clone()))
                .or_default()
                .push((repo.clone(), digest.clone()));
        }
    }
    let mut live: HashSet<Key> = HashSet::new();
    let mut queue: VecDeque<Key> = all
        .iter()
        .filter(|(_, _, root)| *root)
        .map(|(key, _, _)| key.clone())
        .collect();
    while let Some(key) = queue.pop_front() {
        if !live.insert(key.clone()) {
            continue;
        }
        if let Some(next) = keeps.get(&key) {
            queue.extend(next.iter().cloned());
        }
    }
    let mut deleted = 0;
    for ((repo, digest), _, _) in &all {
        if !live.contains(&(repo.clone(), digest.clone())) && delete(conn, repo, digest)? {
            deleted += 1;
        }
    }
    Ok(deleted)
}
