//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>` (end-2, end-10), with `Range` on `GET`.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{DOCKER_CONTENT_DIGEST, empty, value};
use crate::digest::Digest;
use crate::error::Error;
use crate::meta;
use crate::names::Name;
use crate::state::Registry;

pub async fn get(
    registry: &Registry,
    name: Name,
    digest: &str,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response, Error> {
    let digest: Digest = digest.parse()?;
    let key = digest.to_string();
    let size = registry
        .meta
        .call(move |conn| {
            let size = meta::blobs::readable_size(conn, &name, &key)?;
            // A check is how a push learns it need not upload: keep the blob a while.
            if head && size.is_some() {
                meta::blobs::touch(conn, &key)?;
            }
            Ok(size)
        })
        .await?
        .ok_or_else(|| Error::BlobUnknown(digest.to_string()))?;
    let range = match headers.get(header::RANGE) {
        Some(range) if !head => parse_range(range, size)?,
        _ => None,
    };
    let (status, start, len) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let body = if head || len == 0 {
        Body::empty()
    } else {
        registry.storage.stream_blob(&digest, start, len).await?
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(DOCKER_CONTENT_DIGEST, value(&digest.to_string()));
    h.insert(header::ETAG, value(&format!("\"{digest}\"")));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if range.is_some() {
        h.insert(
            header::CONTENT_RANGE,
            value(&format!("bytes {start}-{}/{size}", start + len - 1)),
        );
    }
    Ok(response)
}

/// One `bytes=` range, as inclusive offsets within `size`. Anything this does not
/// understand (several ranges, another unit) is ignored and the whole blob is sent, as
/// HTTP allows; a range that lies outside the blob is a 416.
fn parse_range(header: &HeaderValue, size: u64) -> Result<Option<(u64, u64)>, Error> {
    let Some(spec) = header.to_str().ok().and_then(|s| s.strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let unsatisfiable = Error::RangeNotSatisfiable { size };
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        // bytes=a-b and bytes=a-
        (Ok(a), Ok(b)) if a <= b => (a, b.min(size.saturating_sub(1))),
        (Ok(_), Ok(_)) => return Ok(None),
        (Ok(a), Err(_)) if last.is_empty() => (a, size.saturating_sub(1)),
        // bytes=-n: the last n bytes
        (Err(_), Ok(n)) if first.is_empty() => {
            if n == 0 {
                return Err(unsatisfiable);
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if range.0 >= size {
        return Err(unsatisfiable);
    }
    Ok(Some(range))
}

pub async fn delete(registry: &Registry, name: Name, digest: &str) -> Result<Response, Error> {
    let digest: Digest = digest.parse()?;
    let key = digest.to_string();
    let unlinked = registry
        .meta
        .call(move |conn| meta::blobs::unlink(conn, &name, &key))
        .await?;
    if !unlinked {
        return Err(Error::BlobUnknown(digest.to_string()));
    }
    Ok(empty(StatusCode::ACCEPTED, []))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |s: &'static str| parse_range(&HeaderValue::from_static(s), 100);
        assert_eq!(r("bytes=0-9").expect("ok"), Some((0, 9)));
        assert_eq!(r("bytes=90-").expect("ok"), Some((90, 99)));
        assert_eq!(r("bytes=-10").expect("ok"), Some((90, 99)));
        assert_eq!(r("bytes=50-1000").expect("ok"), Some((50, 99)));
        assert_eq!(r("bytes=0-1,5-6").expect("ok"), None);
        assert_eq!(r("items=0-1").expect("ok"), None);
        assert!(matches!(
            r("bytes=100-"),
            Err(Error::RangeNotSatisfiable { size: 100 })
        ));
    }
}
