//! Faults: restarts and kill -9 in the middle of uploads, concurrent pushes of one blob,
//! and garbage collection while pushes run.

mod common;

use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::body::{Body, Bytes};
use common::{Registry, files, image_manifest, request, sha256};
use plumbing::{Daemon, DaemonContext, DataDir};
use tokio_util::sync::CancellationToken;

/// Deterministic bytes that do not compress or repeat: blob content for the tests.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn an_upload_survives_a_restart_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blob = bytes(1, 3 * 1024 * 1024 + 17);
    let digest = sha256(&blob);
    let half = blob.len() / 2;

    let r = Registry::start(dir.path()).await;
    let loc = r
        .call("POST", "/v2/a/b/blobs/uploads/", &[], Body::empty())
        .await
        .header("location");
    let first = r
        .call(
            "PATCH",
            &loc,
            &[("content-range", &format!("0-{}", half - 1))],
            blob[..half].to_vec(),
        )
        .await;
    assert_eq!(first.status, 202, "{}", first.text());
    r.stop().await;

    let r = Registry::start(dir.path()).await;
    let status = r.get(&loc).await;
    assert_eq!(status.status, 204);
    assert_eq!(status.header("range"), format!("0-{}", half - 1));
    let rest = r
        .call(
            "PATCH",
            &loc,
            &[("content-range", &format!("{half}-{}", blob.len() - 1))],
            blob[half..].to_vec(),
        )
        .await;
    assert_eq!(rest.status, 202, "{}", rest.text());
    r.stop().await;

    // And once more, with nothing left to send: the digest is recomputed from disk.
    let r = Registry::start(dir.path()).await;
    let put = r
        .call("PUT", &format!("{loc}?digest={digest}"), &[], Body::empty())
        .await;
    assert_eq!(put.status, 201, "{}", put.text());
    let got = r.get(&format!("/v2/a/b/blobs/{digest}")).await;
    assert_eq!(got.status, 200);
    assert!(got.body[..] == blob[..], "blob intact");
    r.stop().await;
}

/// Not a test of its own: the child process the kill -9 test starts and kills. It runs
/// registryd only when the parent asks, through the environment.
#[test]
fn child_registryd() {
    let Ok(root) = std::env::var("REGISTRYD_TEST_CHILD_DATA") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let ctx = DaemonContext {
            config: Default::default(),
            data: DataDir::new(root),
            shutdown: CancellationToken::new(),
        };
        registryd::run(ctx).await.expect("registryd ran");
    });
}

struct ChildRegistry(Child);

impl ChildRegistry {
    async fn start(root: &std::path::Path) -> ChildRegistry {
        let exe = std::env::current_exe().expect("test binary");
        let child = ChildRegistry(
            Command::new(exe)
                .args(["child_registryd", "--exact", "--nocapture"])
                .env("REGISTRYD_TEST_CHILD_DATA", root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn child registryd"),
        );
        let socket = DataDir::new(root).socket(Daemon::Registryd);
        for _ in 0..500 {
            if plumbing::uds::get(&socket, "/health", Duration::from_secs(1))
                .await
                .is_ok()
            {
                return child;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("child registryd did not start");
    }

    fn kill9(mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }
}

impl Drop for ChildRegistry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn kill_9_in_the_middle_of_a_large_upload_serves_no_partial_blob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = DataDir::new(dir.path()).socket(Daemon::Registryd);
    let mib = 1024 * 1024;
    let blob = bytes(2, 48 * mib);
    let digest = sha256(&blob);
    let acked = 8 * mib;

    let child = ChildRegistry::start(dir.path()).await;
    let started = common::send(
        &socket,
        request("POST", "/v2/big/blobs/uploads/", &[], Body::empty()),
    )
    .await;
    let loc = started.header("location");
    let first = common::send(
        &socket,
        request(
            "PATCH",
            &loc,
            &[("content-range", &format!("0-{}", acked - 1))],
            blob[..acked].to_vec(),
        ),
    )
    .await;
    assert_eq!(first.status, 202);

    // The second chunk: 16 MiB go out, then the sender stalls and registryd is killed.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(4);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let range = format!("{acked}-{}", blob.len() - 1);
    let patch = tokio::spawn({
        let (socket, loc) = (socket.clone(), loc.clone());
        async move {
            let req = request(
                "PATCH",
                &loc,
                &[("content-range", &range)],
                Body::from_stream(stream),
            );
            plumbing::uds::send(&socket, req).await.map(|r| r.status())
        }
    });
    for chunk in blob[acked..acked + 16 * mib].chunks(256 * 1024) {
        tx.send(Ok(Bytes::copy_from_slice(chunk)))
            .await
            .expect("sent");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill9();
    drop(tx);
    let cut = patch.await.expect("joined");
    assert!(
        cut.is_err() || cut.is_ok_and(|s| s != 202),
        "the cut PATCH was not acknowledged"
    );

    let child = ChildRegistry::start(dir.path()).await;
    let head = common::send(
        &socket,
        request(
            "HEAD",
            &format!("/v2/big/blobs/{digest}"),
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(head.status, 404, "no partial blob is served");
    let status = common::send(&socket, request("GET", &loc, &[], Body::empty())).await;
    assert_eq!(status.status, 204);
    assert_eq!(
        status.header("range"),
        format!("0-{}", acked - 1),
        "only acknowledged bytes count"
    );
    let rest = common::send(
        &socket,
        request(
            "PUT",
            &format!("{loc}?digest={digest}"),
            &[("content-range", &format!("{acked}-{}", blob.len() - 1))],
            blob[acked..].to_vec(),
        ),
    )
    .await;
    assert_eq!(rest.status, 201, "{}", rest.text());
    let got = common::send(
        &socket,
        request(
            "GET",
            &format!("/v2/big/blobs/{digest}"),
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    assert!(got.body[..] == blob[..], "blob intact after resuming");
    child.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_the_same_blob_all_succeed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = std::sync::Arc::new(Registry::start(dir.path()).await);
    let blob = std::sync::Arc::new(bytes(3, 4 * 1024 * 1024));
    let digest = sha256(&blob);
    let mut pushes = Vec::new();
    for i in 0..6 {
        let (r, blob, digest) = (r.clone(), blob.clone(), digest.clone());
        pushes.push(tokio::spawn(async move {
            let name = if i % 2 == 0 {
                "same/repo"
            } else {
                "other/repo"
            };
            let loc = r
                .call(
                    "POST",
                    &format!("/v2/{name}/blobs/uploads/"),
                    &[],
                    Body::empty(),
                )
                .await
                .header("location");
            if i < 3 {
                // Monolithic.
                r.call("PUT", &format!("{loc}?digest={digest}"), &[], blob.to_vec())
                    .await
                    .status
            } else {
                // Chunked, 1 MiB at a time.
                for (n, chunk) in blob.chunks(1024 * 1024).enumerate() {
                    let start = n * 1024 * 1024;
                    let range = format!("{start}-{}", start + chunk.len() - 1);
                    let reply = r
                        .call("PATCH", &loc, &[("content-range", &range)], chunk.to_vec())
                        .await;
                    assert_eq!(reply.status, 202, "{}", reply.text());
                }
                r.call("PUT", &format!("{loc}?digest={digest}"), &[], Body::empty())
                    .await
                    .status
            }
        }));
    }
    for push in pushes {
        assert_eq!(push.await.expect("joined"), 201);
    }
    for name in ["same/repo", "other/repo"] {
        let got = r.get(&format!("/v2/{name}/blobs/{digest}")).await;
        assert!(got.status == 200 && got.body[..] == blob[..], "{name}");
    }
    let blob_files: Vec<String> = files(&r.state_dir())
        .into_iter()
        .filter(|f| f.starts_with("blobs/"))
        .collect();
    assert_eq!(blob_files.len(), 1, "{blob_files:?}");
    assert!(files(&r.state_dir().join("uploads")).is_empty());
}

#[tokio::test]
async fn gc_frees_what_nothing_references_and_reports_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = Registry::start(dir.path()).await;
    let (config, layer, orphan) = (b"{}".to_vec(), bytes(4, 1000), bytes(5, 777));
    r.push_blob("app", &config).await;
    let dl = r.push_blob("app", &layer).await;
    let dorphan = r.push_blob("app", &orphan).await;
    let manifest = image_manifest(&config, &[&layer], "");
    assert_eq!(r.push_manifest("app", "v1", &manifest).await.status, 201);
    let untagged = image_manifest(&config, &[], "");
    assert_eq!(
        r.push_manifest("app", &sha256(untagged.as_bytes()), &untagged)
            .await
            .status,
        201
    );
    let idle = r
        .call("POST", "/v2/app/blobs/uploads/", &[], Body::empty())
        .await
        .header("location");

    // Within the default grace period nothing goes.
    let report = r.gc("").await;
    assert_eq!(report["blobsDeleted"], 0, "{report}");
    assert_eq!(report["gracePeriodSecs"], 3600);

    let report = r.gc(r#"{"gracePeriodSecs":0}"#).await;
    assert_eq!(report["blobsDeleted"], 1, "{report}");
    assert_eq!(report["bytesFreed"], orphan.len());
    assert_eq!(r.get(&format!("/v2/app/blobs/{dorphan}")).await.status, 404);
    assert_eq!(r.get(&format!("/v2/app/blobs/{dl}")).await.status, 200);
    assert_eq!(r.get("/v2/app/manifests/v1").await.status, 200);
    assert_eq!(r.get(&idle).await.status, 204, "a young upload stays");

    let report = r
        .gc(r#"{"gracePeriodSecs":0,"deleteUntagged":true,"uploadTtlSecs":0}"#)
        .await;
    assert_eq!(report["manifestsDeleted"], 1, "{report}");
    assert_eq!(report["uploadsPurged"], 1, "{report}");
    assert_eq!(
        report["blobsDeleted"], 1,
        "the untagged manifest's bytes: {report}"
    );
    assert_eq!(r.get(&idle).await.status, 404);
    assert_eq!(
        r.get("/v2/app/manifests/v1").await.status,
        200,
        "tagged stays"
    );

    let dm = sha256(manifest.as_bytes());
    assert_eq!(
        r.call(
            "DELETE",
            &format!("/v2/app/manifests/{dm}"),
            &[],
            Body::empty()
        )
        .await
        .status,
        202
    );
    let report = r.gc(r#"{"gracePeriodSecs":0}"#).await;
    assert_eq!(
        report["blobsDeleted"], 3,
        "config, layer, manifest: {report}"
    );
    assert_eq!(
        report["bytesFreed"],
        config.len() + layer.len() + manifest.len()
    );
    let left: Vec<String> = files(&r.state_dir())
        .into_iter()
        .filter(|f| !f.starts_with("tmp/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Files no row accounts for (a crash between rename and commit) go once old enough.
    let stray = r.state_dir().join("blobs/sha256/ab");
    std::fs::create_dir_all(&stray).expect("mkdir");
    let path = stray.join(format!("ab{}", "0".repeat(62)));
    std::fs::write(&path, b"stray").expect("write");
    let report = r.gc(r#"{"gracePeriodSecs":60}"#).await;
    assert_eq!(report["orphanFilesDeleted"], 0, "too young");
    let old = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(old))
        .expect("age it");
    let report = r.gc(r#"{"gracePeriodSecs":60}"#).await;
    assert_eq!(report["orphanFilesDeleted"], 1, "{report}");
    assert!(!path.exists());

    let bad = r.call("POST", "/gc", &[], r#"{"grace":1}"#).await;
    assert_eq!(bad.status, 400);
    r.stop().await;
}

/// The race between a sweep and a manifest PUT: with no grace period at all, a push may be
/// refused (MANIFEST_BLOB_UNKNOWN) but never accepted with a blob the sweep then removes.
/// With the default grace period, every push succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_during_pushes_never_leaves_a_dangling_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = std::sync::Arc::new(Registry::start(dir.path()).await);
    for (grace, rounds) in [("0", 40), ("3600", 15)] {
        let stop = CancellationToken::new();
        let collector = tokio::spawn({
            let (r, stop) = (r.clone(), stop.clone());
            async move {
                let mut runs = 0;
                while !stop.is_cancelled() {
                    r.gc(&format!(r#"{{"gracePeriodSecs":{grace}}}"#)).await;
                    runs += 1;
                }
                runs
            }
        });
        let mut accepted = Vec::new();
        for i in 0..rounds {
            let config = format!("{{\"round\":{i},\"grace\":{grace}}}").into_bytes();
            let layer = bytes(100 + i, 64 * 1024);
            r.push_blob("race", &config).await;
            r.push_blob("race", &layer).await;
            let manifest = image_manifest(&config, &[&layer], "");
            let tag = format!("g{grace}-{i}");
            let put = r.push_manifest("race", &tag, &manifest).await;
            match put.status {
                201 => accepted.push((tag, config, layer)),
                400 if grace == "0" => assert_eq!(put.code(), "MANIFEST_BLOB_UNKNOWN"),
                other => panic!("grace {grace}: {other} {}", put.text()),
            }
        }
        stop.cancel();
        let runs = collector.await.expect("joined");
        assert!(runs > 0);
        if grace != "0" {
            assert_eq!(
                accepted.len() as u64,
                rounds,
                "no push fails within the grace period"
            );
        }
        for (tag, config, layer) in &accepted {
            let m = r.get(&format!("/v2/race/manifests/{tag}")).await;
            assert_eq!(m.status, 200, "{tag}");
            for blob in [config, layer] {
                let got = r.get(&format!("/v2/race/blobs/{}", sha256(blob))).await;
                assert!(
                    got.status == 200 && got.body[..] == blob[..],
                    "{tag}: a blob of an accepted manifest is gone"
                );
            }
        }
    }
}
