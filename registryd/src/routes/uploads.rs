//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (end-4a; with `?digest=` end-4b; with
//! `?mount=&from=` end-11), and on the session `PATCH` (end-5), `PUT` (end-6), `GET`
//! (end-13) and `DELETE`.
//!
//! A session belongs to the repository it was started in: its id under any other name is
//! unknown. Its row (repository, acknowledged length, hash algorithm) is in SQLite and its
//! bytes in `uploads/<id>`, so it survives a restart; the running hash is kept in memory
//! and recomputed from the file when it is not there.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use rusqlite::TransactionBehavior;
use tokio::sync::OwnedMutexGuard;

use super::{DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID, Query, UPLOAD_SESSION_ID, empty, value};
use crate::digest::{Algorithm, Digest};
use crate::error::Error;
use crate::headers::upload_range;
use crate::meta::{self, uploads::Upload};
use crate::names::Name;
use crate::state::{Live, Registry};
use crate::storage::uploads::Resume;
use crate::storage::{is_id, random_id};

fn location(name: &Name, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// 202 (or 204) with where the upload stands.
fn progress(status: StatusCode, name: &Name, id: &str, length: u64) -> Response {
    empty(
        status,
        [
            (header::LOCATION, value(&location(name, id))),
            (header::RANGE, upload_range(length)),
            (DOCKER_UPLOAD_UUID, value(id)),
            (UPLOAD_SESSION_ID, value(id)),
        ],
    )
}

/// 201 for a blob now in the repository.
fn created(name: &Name, digest: &Digest) -> Response {
    let d = digest.to_string();
    empty(
        StatusCode::CREATED,
        [
            (header::LOCATION, value(&format!("/v2/{name}/blobs/{d}"))),
            (DOCKER_CONTENT_DIGEST, value(&d)),
        ],
    )
}

pub async fn start(
    registry: &Registry,
    name: Name,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    if let Some(mounted) = mount(registry, &name, query).await? {
        return Ok(mounted);
    }
    // Parse the digest before creating anything: a bad one leaves nothing behind.
    let digest = query.get("digest").map(str::parse::<Digest>).transpose()?;
    let algorithm = digest.as_ref().map_or(Algorithm::Sha256, Digest::algorithm);
    let id = random_id()?;
    let (repo, sid) = (name.to_string(), id.clone());
    registry
        .meta
        .call(move |conn| meta::uploads::insert(conn, &sid, &repo, algorithm))
        .await?;
    let Some(digest) = digest else {
        return Ok(progress(StatusCode::ACCEPTED, &name, &id, 0));
    };
    // A single POST with ?digest=: the body is the whole blob.
    let live = registry.sessions.lock(&id).await;
    let session = Upload {
        repo: name.to_string(),
        length: 0,
        algorithm,
    };
    let body = has_body(headers).then_some(body);
    let done = complete(registry, &name, &id, live, session, digest, None, body).await;
    if done.is_err() {
        discard(registry, &id).await;
    }
    done
}

/// `?mount=<digest>&from=<name>`: links a blob `from` may read into `name`. `None` when the
/// mount cannot be done (bad arguments, no such blob there): the caller starts an upload
/// instead, as the distribution spec asks. Without `from` nothing is mounted: that would let anyone who
/// knows a digest read it, past the manager's per-repository checks.
async fn mount(registry: &Registry, name: &Name, query: &Query) -> Result<Option<Response>, Error> {
    let (Some(digest), Some(from)) = (query.get("mount"), query.get("from")) else {
        return Ok(None);
    };
    let (Ok(digest), Ok(from)) = (digest.parse::<Digest>(), Name::parse(from)) else {
        return Ok(None);
    };
    let (repo, key) = (name.clone(), digest.to_string());
    let mounted = registry
        .meta
        .call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if meta::blobs::readable_size(&tx, &from, &key)?.is_none() {
                return Ok(false);
            }
            meta::ensure_repo(&tx, &repo)?;
            meta::blobs::link(&tx, &repo, &key)?;
            meta::blobs::touch(&tx, &key)?;
            tx.commit()?;
            Ok(true)
        })
        .await?;
    Ok(mounted.then(|| created(name, &digest)))
}

/// Locks session `id` and loads it, if it exists and belongs to `name`.
async fn open(
    registry: &Registry,
    name: &Name,
    id: &str,
) -> Result<(OwnedMutexGuard<Live>, Upload), Error> {
    if !is_id(id) {
        return Err(Error::BlobUploadUnknown);
    }
    let live = registry.sessions.lock(id).await;
    let sid = id.to_owned();
    let session = registry
        .meta
        .call(move |conn| meta::uploads::get(conn, &sid))
        .await?;
    match session {
        Some(s) if s.repo == name.as_str() => Ok((live, s)),
        Some(_) => Err(Error::BlobUploadUnknown),
        None => {
            drop(live);
            registry.sessions.forget(id);
            Err(Error::BlobUploadUnknown)
        }
    }
}

pub async fn status(registry: &Registry, name: Name, id: &str) -> Result<Response, Error> {
    let (_live, session) = open(registry, &name, id).await?;
    Ok(progress(StatusCode::NO_CONTENT, &name, id, session.length))
}

/// `Content-Range: <start>-<end>`: where a chunk says it goes. It must start where the
/// upload stands; anything else (or an unreadable header) is a 416 telling where that is.
fn chunk_range(
    headers: &HeaderMap,
    name: &Name,
    id: &str,
    length: u64,
) -> Result<Option<u64>, Error> {
    let Some(range) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let out_of_order = || Error::ChunkOutOfOrder {
        location: location(name, id),
        offset: length,
    };
    let spec = range.to_str().map_err(|_| out_of_order())?;
    let spec = spec.strip_prefix("bytes ").unwrap_or(spec);
    let spec = spec.split('/').next().unwrap_or(spec);
    let (start, end) = spec.split_once('-').ok_or_else(out_of_order)?;
    let (start, end) = match (start.trim().parse::<u64>(), end.trim().parse::<u64>()) {
        (Ok(s), Ok(e)) if s <= e => (s, e),
        _ => return Err(out_of_order()),
    };
    if start != length {
        return Err(out_of_order());
    }
    Ok(Some(end - start + 1))
}

/// Whether a request carries bytes: a non-zero Content-Length, or a chunked body.
fn has_body(headers: &HeaderMap) -> bool {
    match content_length(headers) {
        Some(len) => len > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// What the session's running hash can be resumed from.
fn resume(live: &mut Live, session: &Upload, algorithm: Algorithm) -> Resume {
    match live.hasher.take() {
        Some((at, hasher)) if at == session.length && hasher.algorithm() == algorithm => {
            Resume::Live(Box::new(hasher))
        }
        _ => Resume::Rehash(algorithm),
    }
}

pub async fn patch(
    registry: &Registry,
    name: Name,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let (mut live, session) = open(registry, &name, id).await?;
    let expected = chunk_range(headers, &name, id, session.length)?;
    if let (Some(range), Some(len)) = (expected, content_length(headers))
        && range != len
    {
        return Err(Error::SizeInvalid(format!(
            "Content-Range covers {range} bytes, Content-Length says {len}"
        )));
    }
    let resume = resume(&mut live, &session, session.algorithm);
    let appended = registry
        .storage
        .append(id, session.length, resume, body, expected)
        .await?;
    let (sid, length) = (id.to_owned(), appended.length);
    let recorded = registry
        .meta
        .call(move |conn| meta::uploads::set_length(conn, &sid, length))
        .await;
    if let Err(error) = recorded {
        // Not acknowledged: cut back now rather than at the next append, so that the bytes
        // take no room on a volume that may be full.
        let storage = registry.storage.clone();
        let (sid, length) = (id.to_owned(), session.length);
        let _ = tokio::task::spawn_blocking(move || storage.truncate_upload(&sid, length)).await;
        return Err(error);
    }
    live.hasher = Some((appended.length, appended.hasher));
    Ok(progress(StatusCode::ACCEPTED, &name, id, appended.length))
}

pub async fn finish(
    registry: &Registry,
    name: Name,
    id: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let (live, session) = open(registry, &name, id).await?;
    let digest = query
        .get("digest")
        .ok_or_else(|| Error::DigestInvalid("a digest parameter is required".into()))
        .and_then(str::parse::<Digest>);
    let done = match digest {
        Ok(digest) => {
            let body = has_body(headers).then_some(body);
            match chunk_range(headers, &name, id, session.length) {
                Ok(expected) => {
                    complete(registry, &name, id, live, session, digest, expected, body).await
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    // A 4xx ends the upload (the client starts over), except a 416, after which it resumes.
    if let Err(e) = &done
        && !matches!(e, Error::ChunkOutOfOrder { .. })
        && !e.status().is_server_error()
    {
        discard(registry, id).await;
    }
    done
}

/// Appends the last chunk (if any), checks the digest and moves the bytes into the blob
/// store, linked to `name`.
#[allow(clippy::too_many_arguments)]
async fn complete(
    registry: &Registry,
    name: &Name,
    id: &str,
    mut live: OwnedMutexGuard<Live>,
    session: Upload,
    digest: Digest,
    expected: Option<u64>,
    body: Option<Body>,
) -> Result<Response, Error> {
    let algorithm = digest.algorithm();
    let resume = resume(&mut live, &session, algorithm);
    let (length, hasher) = if let Some(body) = body {
        let appended = registry
            .storage
            .append(id, session.length, resume, body, expected)
            .await?;
        (appended.length, appended.hasher)
    } else {
        let hasher = match resume {
            Resume::Live(hasher) => *hasher,
            Resume::Rehash(algorithm) => {
                let storage = registry.storage.clone();
                let (sid, length) = (id.to_owned(), session.length);
                tokio::task::spawn_blocking(move || storage.rehash_upload(&sid, algorithm, length))
                    .await??
            }
        };
        (session.length, hasher)
    };
    let actual = hasher.finish();
    if actual != digest {
        return Err(Error::DigestInvalid(format!(
            "{digest} was given, the {length} bytes uploaded are {actual}"
        )));
    }
    let storage = registry.storage.clone();
    let (repo, sid, key) = (name.clone(), id.to_owned(), digest.clone());
    registry
        .meta
        .call(move |conn| {
            // Inside the commit lock: see crate::gc.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let path = storage.upload_path(&sid);
            let key_s = key.to_string();
            let known = meta::blobs::size(&tx, &key_s)?.is_some();
            if !known {
                if !path.exists() {
                    // An empty upload never created its file.
                    let empty = storage.write_temp(&[])?;
                    std::fs::rename(&empty, &path).map_err(Error::io("rename", &path))?;
                }
                storage.publish(&path, &key)?;
            }
            let committed = (|| {
                meta::blobs::record(&tx, &key_s, length)?;
                meta::ensure_repo(&tx, &repo)?;
                meta::blobs::link(&tx, &repo, &key_s)?;
                meta::uploads::delete(&tx, &sid)?;
                tx.commit()?;
                Ok::<_, Error>(())
            })();
            match committed {
                Ok(()) => {
                    if known {
                        // Best effort: the collector removes an upload's file that has no
                        // session any more.
                        let _ = storage.remove_upload(&sid);
                    }
                    Ok(())
                }
                // Nothing was recorded (a full volume, say): the upload keeps its bytes and
                // can be completed again.
                Err(error) => {
                    if !known {
                        storage.unpublish(&key, &path)?;
                    }
                    Err(error)
                }
            }
        })
        .await?;
    drop(live);
    registry.sessions.forget(id);
    Ok(created(name, &digest))
}

pub async fn cancel(registry: &Registry, name: Name, id: &str) -> Result<Response, Error> {
    let (live, _session) = open(registry, &name, id).await?;
    drop(live);
    discard(registry, id).await;
    Ok(empty(
        StatusCode::NO_CONTENT,
        std::iter::empty::<(HeaderName, HeaderValue)>(),
    ))
}

/// Ends a session, row and bytes. Best effort: what is left, the collector removes.
async fn discard(registry: &Registry, id: &str) {
    let storage = registry.storage.clone();
    let sid = id.to_owned();
    let removed = registry
        .meta
        .call(move |conn| {
            meta::uploads::delete(conn, &sid)?;
            storage.remove_upload(&sid)
        })
        .await;
    if let Err(error) = removed {
        tracing::warn!(upload = id, %error, "cannot discard upload");
    }
    registry.sessions.forget(id);
}
