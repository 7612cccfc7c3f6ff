//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>` (end-3, end-7, end-9).
//!
//! A manifest's bytes are stored as received, as the blob named by their digest, and served
//! with the media type they were pushed with.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use rusqlite::TransactionBehavior;

use super::{DOCKER_CONTENT_DIGEST, OCI_SUBJECT, empty, value};
use crate::digest::{Algorithm, Digest};
use crate::error::Error;
use crate::manifest::{self, MAX_BYTES};
use crate::meta;
use crate::names::{Name, valid_tag};
use crate::state::Registry;

/// A tag, or a digest (which has a `:`, which no tag has).
enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    fn parse(s: &str) -> Result<Reference, Error> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else if valid_tag(s) {
            Ok(Reference::Tag(s.to_owned()))
        } else {
            Err(Error::TagInvalid(s.to_owned()))
        }
    }

    /// A reference to read or delete: one that can name no manifest names none that is
    /// there, so it is `MANIFEST_UNKNOWN` (404), as clients expect of a missing manifest;
    /// only a `PUT` is told its reference is invalid.
    fn lookup(s: &str) -> Result<Reference, Error> {
        Reference::parse(s).map_err(|_| Error::ManifestUnknown)
    }
}

pub async fn get(
    registry: &Registry,
    name: Name,
    reference: &str,
    head: bool,
) -> Result<Response, Error> {
    let reference = Reference::lookup(reference)?;
    let found = registry
        .meta
        .call(move |conn| match &reference {
            Reference::Tag(tag) => meta::manifests::by_tag(conn, &name, tag),
            Reference::Digest(d) => meta::manifests::by_digest(conn, name.as_str(), &d.to_string()),
        })
        .await?
        .ok_or(Error::ManifestUnknown)?;
    let digest: Digest = found
        .digest
        .parse()
        .map_err(|_| Error::Inconsistent(format!("stored digest {:?}", found.digest)))?;
    let body = if head {
        Body::empty()
    } else {
        registry.storage.stream_blob(&digest, 0, found.size).await?
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, value(&found.media_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(found.size));
    h.insert(DOCKER_CONTENT_DIGEST, value(&found.digest));
    h.insert(header::ETAG, value(&format!("\"{}\"", found.digest)));
    Ok(response)
}

pub async fn put(
    registry: &Registry,
    name: Name,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let reference = Reference::parse(reference)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = declared.filter(|&s| s > MAX_BYTES) {
        return Err(Error::ManifestTooLarge {
            size,
            limit: MAX_BYTES,
        });
    }
    let bytes = Limited::new(body, MAX_BYTES as usize)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Error::ManifestTooLarge {
                    size: MAX_BYTES + 1,
                    limit: MAX_BYTES,
                }
            } else {
                Error::Body(e.to_string())
            }
        })?
        .to_bytes();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let storage = registry.storage.clone();
    // Hashing, parsing and writing a few MiB is blocking work.
    let (digest, parsed, temp) = tokio::task::spawn_blocking(move || {
        let algorithm = match &reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => Algorithm::Sha256,
        };
        let digest = Digest::of(algorithm, &bytes);
        if let Reference::Digest(d) = &reference
            && *d != digest
        {
            return Err(Error::DigestInvalid(format!(
                "the manifest was pushed as {d} but is {digest}"
            )));
        }
        let parsed = manifest::parse(&bytes, content_type.as_deref())?;
        let temp = storage.write_temp(&bytes)?;
        let tag = match reference {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        };
        Ok::<_, Error>((digest, (parsed, tag, bytes.len() as u64), temp))
    })
    .await??;
    let (parsed, tag, size) = parsed;
    let subject = parsed.subject.clone();
    let storage = registry.storage.clone();
    let (repo, key) = (name.clone(), digest.clone());
    registry
        .meta
        .call(move |conn| {
            // One transaction checks the references and records them, inside the commit
            // lock: see crate::gc for why a concurrent sweep cannot slip in between.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let key_s = key.to_string();
            let stored = meta::manifests::check_refs(&tx, &repo, &parsed).and_then(|()| {
                if meta::blobs::size(&tx, &key_s)?.is_some() {
                    storage.remove_temp(&temp)
                } else {
                    storage.publish(&temp, &key)
                }
            });
            if let Err(e) = stored {
                let _ = storage.remove_temp(&temp);
                return Err(e);
            }
            meta::manifests::insert(&tx, &repo, &key_s, size, &parsed, tag.as_deref())?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    let d = digest.to_string();
    let mut headers = vec![
        (
            header::LOCATION,
            value(&format!("/v2/{name}/manifests/{d}")),
        ),
        (DOCKER_CONTENT_DIGEST, value(&d)),
    ];
    if let Some(subject) = subject {
        headers.push((OCI_SUBJECT, value(&subject.to_string())));
    }
    Ok(empty(StatusCode::CREATED, headers))
}

pub async fn delete(registry: &Registry, name: Name, reference: &str) -> Result<Response, Error> {
    let reference = Reference::lookup(reference)?;
    let deleted = registry
        .meta
        .call(move |conn| match &reference {
            Reference::Tag(tag) => meta::manifests::delete_tag(conn, &name, tag),
            Reference::Digest(d) => {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let deleted = meta::manifests::delete(&tx, name.as_str(), &d.to_string())?;
                tx.commit()?;
                Ok(deleted)
            }
        })
        .await?;
    if !deleted {
        return Err(Error::ManifestUnknown);
    }
    Ok(empty(StatusCode::ACCEPTED, []))
}
