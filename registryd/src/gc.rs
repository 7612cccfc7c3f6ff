//! Garbage collection: mark and sweep while the registry keeps serving.
//!
//! What is kept: every manifest (or, with `deleteUntagged`, every manifest reachable from
//! a tag, from an index that is kept, or as a referrer of a kept subject); every blob such a
//! manifest references; every manifest's own bytes; and anything touched within the grace
//! period. A blob is *touched* when a push uploads it, mounts it, or checks it with `HEAD`
//! (at most every [`meta::blobs::TOUCH_SLACK_MS`]). Upload sessions idle for longer than the
//! upload TTL are removed, and so are files that no row accounts for (left by a crash
//! between a rename and its commit) once they are older than the grace period.
//!
//! # Why a sweep never loses a blob a push is about to use
//!
//! A push uploads (or finds, with `HEAD`, or mounts) its blobs, then `PUT`s a manifest that
//! references them. The classic race is a sweep that decides a blob is unreferenced, a
//! manifest `PUT` that then references it and succeeds, and the sweep that deletes it
//! anyway: a manifest pointing at nothing. Three things rule it out here:
//!
//! 1. **One lock for decisions and files.** Every SQLite call runs on one connection
//!    behind one mutex ([`meta::Meta::call`]). The manifest `PUT` checks that each referenced
//!    blob exists and records its references in *one* `IMMEDIATE` transaction. The sweep
//!    decides, per blob, *again* inside its own `IMMEDIATE` transaction (the `DELETE ...
//!    WHERE <still garbage>` in [`meta::blobs::delete_if_garbage`]), commits, and unlinks
//!    the files before it releases the connection. Transactions on one connection are
//!    serial, so either the `PUT` commits first, and the sweep's re-check sees the reference
//!    and keeps the blob; or the sweep commits first, and the `PUT`'s check finds no row and
//!    answers `MANIFEST_BLOB_UNKNOWN`, so the client uploads the blob again. Never both.
//!    The mark phase's list of candidates can be stale; only the re-check decides.
//! 2. **Files move under the same lock.** Completing an upload renames its file into
//!    `blobs/` and records the row inside one `call`, and the sweep unlinks inside one. So
//!    a sweep cannot unlink a file that an upload of the same digest has just put back, and
//!    a blob's row always has its file.
//! 3. **The grace period.** Between a push's upload (or `HEAD`) of a blob and its manifest
//!    `PUT`, the blob is referenced by nothing, so rule 1 alone would let a sweep remove it
//!    and fail the push. A blob touched within the grace period (default one hour) is not
//!    garbage, so a push that takes less than the grace period, less the touch slack, from
//!    checking or uploading a blob to referencing it, is never failed by a collection; one
//!    that takes longer at worst gets `MANIFEST_BLOB_UNKNOWN`, never a dangling manifest.
//!    The same holds for `deleteUntagged`: an index's manifests are pushed untagged first,
//!    and are spared while they are younger than the grace period.

use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use plumbing::clock;
use rusqlite::TransactionBehavior;
use tracing::{info, warn};

use protocol::registryd::{GcOptions, GcReport};

use crate::digest::Digest;
use crate::error::Error;
use crate::meta;
use crate::state::Registry;
use crate::storage::is_id;

pub const DEFAULT_GRACE_SECS: u64 = 3600;
pub const DEFAULT_UPLOAD_TTL_SECS: u64 = 24 * 3600;
const TEMP_GRACE_MS: i64 = 10 * 60 * 1000;
/// Blobs decided and deleted per transaction, so that requests wait at most one page.
const PAGE: usize = 256;

fn ms(secs: u64) -> i64 {
    meta::clamp(secs.saturating_mul(1000))
}

/// Runs one collection; concurrent calls wait their turn.
pub async fn collect(registry: &Registry, options: GcOptions) -> Result<GcReport, Error> {
    let _one_at_a_time = registry.gc.lock().await;
    let started = Instant::now();
    let grace = options.grace_period_secs.unwrap_or(DEFAULT_GRACE_SECS);
    let cutoff = clock::now_ms().saturating_sub(ms(grace));
    let upload_cutoff = clock::now_ms().saturating_sub(ms(options
        .upload_ttl_secs
        .unwrap_or(DEFAULT_UPLOAD_TTL_SECS)));
    let mut report = GcReport {
        grace_period_secs: grace,
        ..GcReport::default()
    };
    report.uploads_purged = purge_uploads(registry, upload_cutoff).await?;
    if options.delete_untagged {
        report.manifests_deleted = registry
            .meta
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let n = meta::manifests::delete_unreachable(&tx, cutoff)?;
                tx.commit()?;
                Ok(n)
            })
            .await?;
    }
    let (blobs, bytes) = sweep_blobs(registry, cutoff).await?;
    report.blobs_deleted = blobs;
    report.bytes_freed = bytes;
    report.orphan_files_deleted = sweep_orphans(registry, cutoff).await?;
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    info!(?report, "garbage collected");
    Ok(report)
}

async fn purge_uploads(registry: &Registry, cutoff: i64) -> Result<u64, Error> {
    let idle = registry
        .meta
        .call(move |conn| meta::uploads::idle_since(conn, cutoff))
        .await?;
    let mut purged = 0;
    for id in idle {
        // A session a request is using is not idle.
        let Some(guard) = registry.sessions.try_lock(&id) else {
            continue;
        };
        let storage = registry.storage.clone();
        let sid = id.clone();
        let removed = registry
            .meta
            .call(move |conn| {
                let removed = meta::uploads::delete_if_idle(conn, &sid, cutoff)?;
                if removed {
                    storage.remove_upload(&sid)?;
                }
                Ok(removed)
            })
            .await?;
        drop(guard);
        if removed {
            registry.sessions.forget(&id);
            purged += 1;
        }
    }
    Ok(purged)
}

async fn sweep_blobs(registry: &Registry, cutoff: i64) -> Result<(u64, u64), Error> {
    let (mut blobs, mut bytes) = (0, 0);
    let mut after = String::new();
    loop {
        let from = after.clone();
        let page = registry
            .meta
            .call(move |conn| meta::blobs::garbage_after(conn, cutoff, &from, PAGE))
            .await?;
        let Some(last) = page.last() else {
            return Ok((blobs, bytes));
        };
        after = last.clone();
        let storage = registry.storage.clone();
        let (n, freed) = registry
            .meta
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut deleted = Vec::new();
                for digest in &page {
                    if let Some(size) = meta::blobs::delete_if_garbage(&tx, digest, cutoff)? {
                        deleted.push((digest, size));
                    }
                }
                tx.commit()?;
                // Still inside the commit lock: see the module documentation.
                let mut freed = 0;
                for (digest, size) in &deleted {
                    let removed = digest
                        .parse::<Digest>()
                        .and_then(|d| storage.remove_blob(&d));
                    match removed {
                        Ok(()) => freed += size,
                        // Its row is gone: the orphan sweep will retry.
                        Err(error) => warn!(%digest, %error, "cannot remove blob file"),
                    }
                }
                Ok((deleted.len() as u64, freed))
            })
            .await?;
        blobs += n;
        bytes += freed;
    }
}

/// Files that no row accounts for and that are older than the cutoff: blobs a crash left
/// between rename and commit, uploads' files without a session, stray temporary files.
async fn sweep_orphans(registry: &Registry, cutoff: i64) -> Result<u64, Error> {
    let storage = registry.storage.clone();
    let candidates = tokio::task::spawn_blocking(move || {
        let mut found = Vec::new();
        let blobs = storage.blobs_dir();
        for alg in read_dir(&blobs)? {
            for shard in read_dir(&alg)? {
                for file in read_dir(&shard)? {
                    if older_than(&file, cutoff) {
                        found.push(Orphan::Blob(file));
                    }
                }
            }
        }
        for file in read_dir(&storage.uploads_dir())? {
            if older_than(&file, cutoff) {
                found.push(Orphan::Upload(file));
            }
        }
        // A manifest being pushed sits in tmp/ for milliseconds, not yet in any row: even a
        // collection with no grace period leaves recent ones alone.
        let temp_cutoff = cutoff.min(clock::now_ms().saturating_sub(TEMP_GRACE_MS));
        for file in read_dir(&storage.tmp_dir())? {
            if older_than(&file, temp_cutoff) {
                found.push(Orphan::Temp(file));
            }
        }
        Ok::<_, Error>(found)
    })
    .await??;
    if candidates.is_empty() {
        return Ok(0);
    }
    registry
        .meta
        .call(move |conn| {
            let mut removed = 0;
            for orphan in candidates {
                let (path, unowned) = match &orphan {
                    Orphan::Blob(path) => {
                        let digest = blob_digest(path);
                        let owned = match &digest {
                            Some(d) => meta::blobs::size(conn, d)?.is_some(),
                            None => false,
                        };
                        (path, !owned)
                    }
                    Orphan::Upload(path) => {
                        let id = file_name(path);
                        let owned = is_id(&id) && meta::uploads::exists(conn, &id)?;
                        (path, !owned)
                    }
                    Orphan::Temp(path) => (path, true),
                };
                if unowned {
                    match std::fs::remove_file(path) {
                        Ok(()) => removed += 1,
                        Err(error) => {
                            warn!(path = %path.display(), %error, "cannot remove orphan file");
                        }
                    }
                }
            }
            Ok(removed)
        })
        .await
}

#[derive(Debug)]
enum Orphan {
    Blob(PathBuf),
    Upload(PathBuf),
    Temp(PathBuf),
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir)(e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(Error::io("list", dir))?.path());
    }
    Ok(paths)
}

fn older_than(path: &Path, cutoff: i64) -> bool {
    let modified = std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
    modified.is_some_and(|t| meta::clamp(t.as_millis() as u64) < cutoff)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `blobs/<alg>/<xx>/<hex>` back to `<alg>:<hex>`, if it is one.
fn blob_digest(path: &Path) -> Option<String> {
    let hex = file_name(path);
    let alg = path
        .parent()?
        .parent()?
        .file_name()?
        .to_string_lossy()
        .into_owned();
    let digest = format!("{alg}:{hex}");
    digest.parse::<Digest>().ok().map(|d| d.to_string())
}
