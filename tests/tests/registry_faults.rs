//! Faults through the manager's public port: registryd killed with SIGKILL in the middle of
//! a large upload (the supervisor restarts it; the upload resumes from what was
//! acknowledged, and no partial blob is ever served), two clients pushing the same blob at
//! once, and garbage collection (the manager's admin route) running while pushes go on.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use e2e::api::Api;
use e2e::registry::{
    Cred, GC_ROUTE, Image, OCI_MANIFEST, Oci, REPOSITORY, image_manifest, random_bytes, sha256,
    with_digest,
};
use e2e::wait_for;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const MIB: usize = 1024 * 1024;
/// The supervisor restarts a daemon after 250 ms (±25%); this is a hang.
const RESTART: Duration = Duration::from_secs(15);

/// A request body that sends `data[..stall_at]`, counting what it sent, then blocks until
/// `cut` fires and fails: a client cut off in the middle of a chunk.
struct StallingBody {
    data: Arc<Vec<u8>>,
    at: usize,
    stall_at: usize,
    sent: Arc<AtomicUsize>,
    cut: Receiver<()>,
}

impl Read for StallingBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.stall_at {
            let n = buf.len().min(self.stall_at - self.at).min(256 * 1024);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            self.sent.store(self.at, Ordering::SeqCst);
            return Ok(n);
        }
        let _ = self.cut.recv();
        Err(io::Error::other("the client was cut off"))
    }
}

#[test]
fn kill_9_of_registryd_in_the_middle_of_a_large_upload_serves_no_partial_blob() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let repo = format!("{REPOSITORY}/big");
    let blob = Arc::new(random_bytes(7, 128 * MIB));
    let digest = sha256(&blob);
    let acked = 32 * MIB;
    let blob_path = format!("/v2/{repo}/blobs/{digest}");

    // Whatever happens from here until the upload completes, the blob is never served.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = std::thread::spawn({
        let (oci, admin, path, done) =
            (oci.clone(), admin.clone(), blob_path.clone(), done.clone());
        move || {
            let mut looks = Vec::new();
            while !done.load(Ordering::SeqCst) {
                if let Ok(reply) = oci.try_call("HEAD", &path, &admin, &[], Vec::new()) {
                    looks.push(reply.status);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            looks
        }
    });

    let session = oci.start_upload(&repo, &admin);
    let first = oci.call(
        "PATCH",
        &session,
        &admin,
        &[
            ("content-type", "application/octet-stream"),
            ("content-range", &format!("0-{}", acked - 1)),
        ],
        &blob[..acked],
    );
    assert_eq!(first.status, 202, "first chunk: {}", first.summary());
    assert_eq!(
        first.header("range"),
        Some(format!("0-{}", acked - 1).as_str())
    );
    let session = e2e::registry::location(&first);

    // The second chunk: 48 MiB go out, then the client stalls and registryd is killed.
    let (cut, cut_rx) = mpsc::channel();
    let sent = Arc::new(AtomicUsize::new(acked));
    let stall_at = acked + 48 * MIB;
    let patch = std::thread::spawn({
        let (oci, admin, session, blob, sent) = (
            oci.clone(),
            admin.clone(),
            session.clone(),
            blob.clone(),
            sent.clone(),
        );
        move || {
            let range = format!("{acked}-{}", blob.len() - 1);
            let body = StallingBody {
                data: blob,
                at: acked,
                stall_at,
                sent,
                cut: cut_rx,
            };
            oci.call_streaming(
                "PATCH",
                &session,
                &admin,
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-range", &range),
                ],
                body,
            )
            .map(|reply| reply.status)
        }
    });
    wait_for(Duration::from_secs(60), || {
        (sent.load(Ordering::SeqCst) >= stall_at).then_some(())
    })
    .expect("the second chunk went out");
    std::thread::sleep(Duration::from_millis(500));
    let server = api.server();
    let old = server.daemon_pid("registryd").expect("a registryd process");
    kill(Pid::from_raw(old), Signal::SIGKILL).expect("kill -9 registryd");
    let new = server.wait_daemon_pid("registryd", Some(old), RESTART);
    assert_ne!(new, old);
    let _ = cut.send(());
    let cut_off = patch.join().expect("the cut PATCH's thread");
    assert!(
        !matches!(cut_off, Ok(202)),
        "a PATCH cut off by the kill was acknowledged"
    );
    wait_for(RESTART, || {
        (server.get("/health").status == 200).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "not healthy after registryd's restart:\n{}",
            server.stderr()
        )
    });

    // Nothing of it is served, and the session stands where the last acknowledgement left it.
    let head = oci.head(&blob_path, &admin);
    assert_eq!(head.status, 404, "after the kill: {}", head.summary());
    let get = oci.get(&blob_path, &admin);
    assert_eq!(
        get.code().as_deref(),
        Some("BLOB_UNKNOWN"),
        "{}",
        get.summary()
    );
    let status = oci.get(&session, &admin);
    assert_eq!(status.status, 204, "upload status: {}", status.summary());
    let range = status.header("range").expect("a Range").to_owned();
    assert_eq!(
        range,
        format!("0-{}", acked - 1),
        "only acknowledged bytes count"
    );

    // The client resumes where the registry says the upload stands.
    let offset: usize = range
        .rsplit('-')
        .next()
        .and_then(|end| end.parse::<usize>().ok())
        .expect("Range end")
        + 1;
    let session = e2e::registry::location(&status);
    // From here on the blob may be served: the watcher stops before the upload completes.
    done.store(true, Ordering::SeqCst);
    let looks = watcher.join().expect("the watcher's thread");
    let rest = oci.call(
        "PUT",
        &with_digest(&session, &digest),
        &admin,
        &[
            ("content-type", "application/octet-stream"),
            ("content-range", &format!("{offset}-{}", blob.len() - 1)),
        ],
        &blob[offset..],
    );
    assert_eq!(rest.status, 201, "resumed upload: {}", rest.summary());
    assert!(
        !looks.contains(&200),
        "the blob was served before its upload completed: {looks:?}"
    );
    assert!(looks.contains(&404), "the watcher saw nothing: {looks:?}");

    let got = oci.blob(&repo, &digest, &admin);
    assert_eq!(got.status, 200, "{}", got.summary());
    assert_eq!(got.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(
        sha256(&got.body),
        digest,
        "the completed blob is the one pushed"
    );
}

#[test]
fn two_clients_pushing_the_same_blob_at_once_both_succeed() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let repo = format!("{REPOSITORY}/same");
    for round in 0..3u64 {
        let blob = random_bytes(100 + round, 8 * MIB);
        let digest = sha256(&blob);
        let start = Barrier::new(2);
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let pushes: Vec<_> = (0..2)
                .map(|client| {
                    let (oci, admin, repo, blob, digest, start) =
                        (&oci, &admin, &repo, &blob, &digest, &start);
                    scope.spawn(move || {
                        let started = oci.call(
                            "POST",
                            &format!("/v2/{repo}/blobs/uploads/"),
                            admin,
                            &[],
                            Vec::new(),
                        );
                        // Both wait here whatever they got, so that neither waits forever.
                        start.wait();
                        assert_eq!(started.status, 202, "{}", started.summary());
                        let session = e2e::registry::location(&started);
                        // The last round: one client monolithic, the other in chunks.
                        if round == 2 && client == 1 {
                            let mut session = session;
                            for (i, chunk) in blob.chunks(MIB).enumerate() {
                                let range = format!("{}-{}", i * MIB, i * MIB + chunk.len() - 1);
                                let reply = oci.call(
                                    "PATCH",
                                    &session,
                                    admin,
                                    &[("content-range", &range)],
                                    chunk,
                                );
                                assert_eq!(reply.status, 202, "{}", reply.summary());
                                session = e2e::registry::location(&reply);
                            }
                            oci.call(
                                "PUT",
                                &with_digest(&session, digest),
                                admin,
                                &[],
                                Vec::new(),
                            )
                            .status
                        } else {
                            oci.call(
                                "PUT",
                                &with_digest(&session, digest),
                                admin,
                                &[],
                                blob.as_slice(),
                            )
                            .status
                        }
                    })
                })
                .collect();
            pushes
                .into_iter()
                .map(|p| p.join().expect("a pushing thread"))
                .collect()
        });
        assert_eq!(statuses, [201, 201], "round {round}");
        let got = oci.blob(&repo, &digest, &admin);
        assert!(
            got.status == 200 && got.body == blob,
            "round {round}: {}",
            got.status
        );
    }
}

#[test]
fn the_collection_route_is_the_admins_and_frees_only_garbage() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let group = api.create_group();
    let deployment = api.create_deployment(&group, e2e::api::NewDeployment::pull());
    assert_eq!(
        oci.gc("", &Cred::none()).status,
        401,
        "anonymous {GC_ROUTE}"
    );
    for (who, cred) in [
        ("group token", Cred::bearer(&group.token)),
        ("deployment token", Cred::bearer(&deployment.token)),
    ] {
        let reply = oci.gc("", &cred);
        assert_eq!(reply.status, 403, "{who} {GC_ROUTE}: {}", reply.summary());
    }

    let repo = format!("{REPOSITORY}/kept");
    let image = Image::generate(51, &[4096, 100]);
    image.push(&oci, &repo, "v1", &admin);
    let orphan = oci.push_blob(&repo, b"referenced by nothing", &admin);
    let report = oci.gc(r#"{"gracePeriodSecs":0}"#, &admin);
    assert_eq!(report.status, 200, "{GC_ROUTE}: {}", report.summary());
    assert_eq!(report.json()["blobsDeleted"], 1, "{}", report.summary());
    assert_eq!(
        oci.blob_status(&repo, &orphan, &admin),
        404,
        "garbage is gone"
    );
    for (digest, bytes) in image.blobs() {
        assert_eq!(
            oci.blob(&repo, digest, &admin).body,
            bytes,
            "{digest} is kept"
        );
    }
    assert_eq!(oci.manifest(&repo, "v1", &admin).body, image.manifest);
}

/// A push is its blobs, then a manifest that references them; a collection may run at any
/// moment in between. With no grace period a manifest may be refused
/// (`MANIFEST_BLOB_UNKNOWN`, and the client uploads again) but is never accepted with a blob
/// the sweep then removes; with the default grace period every push succeeds. Upload
/// sessions open while collections run are not collected.
#[test]
fn gc_running_during_pushes_loses_nothing() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let repo = format!("{REPOSITORY}/race");
    for (options, rounds) in [(r#"{"gracePeriodSecs":0}"#, 12u64), ("", 8)] {
        let stop = AtomicBool::new(false);
        let runs = AtomicUsize::new(0);
        let mut accepted = Vec::new();
        std::thread::scope(|scope| {
            // Stops the collector however this scope ends, so that a failure cannot hang it.
            let _stop = StopOnDrop(&stop);
            let collector = scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let reply = oci.gc(options, &admin);
                    assert_eq!(reply.status, 200, "{GC_ROUTE}: {}", reply.summary());
                    runs.fetch_add(1, Ordering::SeqCst);
                }
            });
            for i in 0..rounds {
                let config = format!("{{\"round\":{i},\"options\":{options:?}}}").into_bytes();
                let layer = random_bytes(200 + i, 256 * 1024);
                oci.push_blob(&repo, &config, &admin);
                // The layer in four chunks, with a whole collection while the session is open.
                let mut session = oci.start_upload(&repo, &admin);
                for (n, chunk) in layer.chunks(64 * 1024).enumerate() {
                    if n == 2 {
                        let seen = runs.load(Ordering::SeqCst);
                        wait_for(Duration::from_secs(30), || {
                            (runs.load(Ordering::SeqCst) >= seen + 2).then_some(())
                        })
                        .expect("collections run");
                    }
                    let start = n * 64 * 1024;
                    let range = format!("{start}-{}", start + chunk.len() - 1);
                    let reply = oci.call(
                        "PATCH",
                        &session,
                        &admin,
                        &[("content-range", &range)],
                        chunk,
                    );
                    assert_eq!(
                        reply.status,
                        202,
                        "round {i} chunk {n}: {}",
                        reply.summary()
                    );
                    session = e2e::registry::location(&reply);
                }
                let put = oci.call(
                    "PUT",
                    &with_digest(&session, &sha256(&layer)),
                    &admin,
                    &[],
                    Vec::new(),
                );
                assert_eq!(
                    put.status,
                    201,
                    "round {i}: the upload survived: {}",
                    put.summary()
                );
                let manifest = image_manifest(
                    (&sha256(&config), config.len()),
                    &[(&sha256(&layer), layer.len())],
                );
                let tag = format!("round-{i}-{}", options.len());
                let reply = oci.push_manifest(&repo, &tag, OCI_MANIFEST, &manifest, &admin);
                match reply.status {
                    201 => accepted.push((tag, manifest, config, layer)),
                    400 if !options.is_empty() => assert_eq!(
                        reply.code().as_deref(),
                        Some("MANIFEST_BLOB_UNKNOWN"),
                        "{}",
                        reply.summary()
                    ),
                    _ => panic!("round {i} ({options:?}): {}", reply.summary()),
                }
            }
            stop.store(true, Ordering::SeqCst);
            collector.join().expect("the collector's thread");
        });
        assert!(runs.load(Ordering::SeqCst) > 0);
        if options.is_empty() {
            assert_eq!(
                accepted.len() as u64,
                rounds,
                "no push fails within the grace period"
            );
        }
        // One more collection after the pushes: what was accepted is referenced, so kept.
        assert_eq!(oci.gc(options, &admin).status, 200);
        for (tag, manifest, config, layer) in &accepted {
            let got = oci.manifest(&repo, tag, &admin);
            assert!(
                got.status == 200 && got.body == *manifest,
                "{tag}: {}",
                got.summary()
            );
            for blob in [config, layer] {
                let digest = sha256(blob);
                let got = oci.blob(&repo, &digest, &admin);
                assert!(
                    got.status == 200 && got.body == *blob,
                    "{tag}: blob {digest} of an accepted manifest: {}",
                    got.status
                );
            }
        }
    }
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
