//! A 256 MiB blob pushed and pulled in a stream: registryd's memory does not grow with it.
//! Alone in its binary, so that the process's peak RSS is this test's.

mod common;

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use common::{Registry, request};
use http_body_util::BodyExt;

const SIZE: usize = 256 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;
const DIGEST: &str = "sha256:c54fb1064d185dba865ef3967f6191aff1a49d189b23264d2e85d24ce623bd3f";

/// Chunk `i` of the blob: one pattern stamped with its index, cheap to make again, so the
/// whole never sits in memory.
fn chunk(pattern: &[u8], i: usize) -> Bytes {
    let mut data = pattern.to_vec();
    data[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Bytes::from(data)
}

fn pattern() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..CHUNK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_blob_streams_both_ways_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = Registry::start(dir.path()).await;
    let chunks = SIZE / CHUNK;
    let pattern = std::sync::Arc::new(pattern());
    // The digest of the 1024 chunks, computed once outside (hashing 256 MiB in a debug
    // build takes seconds); a wrong one would fail the PUT with DIGEST_INVALID.
    let digest = DIGEST;
    let before = rss_kib("VmRSS:");

    let loc = r
        .call("POST", "/v2/big/blobs/uploads/", &[], Body::empty())
        .await
        .header("location");
    let body = Body::from_stream(futures_util::stream::iter({
        let pattern = pattern.clone();
        (0..chunks).map(move |i| Ok::<_, Infallible>(chunk(&pattern, i)))
    }));
    let put = r
        .send(request(
            "PUT",
            &format!("{loc}?digest={digest}"),
            &[("content-length", &SIZE.to_string())],
            body,
        ))
        .await;
    assert_eq!(put.status, 201, "{}", put.text());

    let response = plumbing::uds::send(
        &r.socket(),
        request(
            "GET",
            &format!("/v2/big/blobs/{digest}"),
            &[],
            Body::empty(),
        ),
    )
    .await
    .expect("GET");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"],
        SIZE.to_string().as_str()
    );
    // Compare with the chunks made again (cheaper than hashing them in a debug build).
    let mut body = response.into_body();
    let mut received = 0usize;
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            pending.extend_from_slice(&data);
            while pending.len() >= CHUNK {
                let i = received / CHUNK;
                assert!(
                    pending[..CHUNK] == chunk(&pattern, i)[..],
                    "chunk {i} differs"
                );
                pending.drain(..CHUNK);
                received += CHUNK;
            }
        }
    }
    assert!(pending.is_empty());
    assert_eq!(received, SIZE);

    let peak = rss_kib("VmHWM:");
    let grown_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 48,
        "peak RSS grew by {grown_mib} MiB for a 256 MiB blob (before {before} KiB, peak {peak} KiB)"
    );
    eprintln!("RSS before {before} KiB, peak {peak} KiB");
    r.stop().await;
}
