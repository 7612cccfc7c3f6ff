//! A full data volume (issue 10), on a tmpfs of a few MiB that the test fills with a file of
//! its own and frees again: every write refused while it is full is refused clearly (507, or
//! 503 with `Retry-After` where the sender retries by itself) and leaves nothing half-written,
//! `/health` says which volume is full and recovers by itself, and nothing acknowledged is
//! lost, the telemetry queue above all.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::api::{Api, NewDeployment, Request, release_body};
use e2e::registry::{
    Cred, OCI_MANIFEST, Oci, OciReply, REPOSITORY, image_manifest, random_bytes, registry_files,
    sha256, with_digest,
};
use e2e::small_disk::SmallDisk;
use e2e::telemetry::{
    Answer, Backend, Ingest, config, counter, log, protobuf, signal_status, try_counter,
};
use e2e::{Options, wait_for};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;
/// Room for the four daemons' databases and logs, and some data.
const DISK: u64 = 48 * MIB;
const DELIVERY: Duration = Duration::from_secs(30);
/// The supervisor restarts a daemon after 250 ms (±25%); this is a hang.
const RESTART: Duration = Duration::from_secs(15);

fn start(disk: &SmallDisk, config: Option<String>) -> Api {
    Api::start_with(Options {
        config,
        data_dir: Some(disk.data_dir()),
        ..Options::default()
    })
}

fn accepted(api: &Api, token: &str, body: &str) {
    let reply = Ingest::new("logs", protobuf(&log(body, 200)), token).send(api);
    assert!(reply.accepted(), "{body}: {}", reply.summary());
}

fn wait_logs(backend: &Backend, bodies: &[String]) {
    backend.wait(DELIVERY, "every acknowledged log", |b| {
        let got: BTreeSet<String> = b.log_bodies().into_iter().collect();
        bodies.iter().all(|body| got.contains(body))
    });
}

fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// The exact sequence of the issue: delivered, disk full, a 1 MiB export refused with 503,
/// space freed, ten more acknowledged: all ten reach the backend, and so do ten more held in
/// the queue across a restart of otelfwd.
#[test]
fn telemetry_acknowledged_after_a_full_disk_reaches_the_backend_also_across_a_restart() {
    let disk = SmallDisk::mount(DISK);
    let backend = Backend::start();
    let api = start(&disk, Some(config(Some(&backend.url()), "")));
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let token = &deployment.token;

    let before = bodies("before", 3);
    for body in &before {
        accepted(&api, token, body);
    }
    wait_logs(&backend, &before);

    // Less room than the export needs, so that its write fails part way.
    let filler = disk.fill(256 * 1024);
    Ingest::new("logs", protobuf(&log("too-big", MIB as usize)), token)
        .send(&api)
        .assert_retry_later();
    filler.remove();

    let after = bodies("after", 10);
    for body in &after {
        accepted(&api, token, body);
    }
    wait_logs(&backend, &after);
    let status = signal_status(&api, "logs");
    assert_eq!(status["corruptRecords"], 0, "{status}");

    // Held in the queue while the backend refuses, then otelfwd killed and started again:
    // its queue is read back from disk.
    backend.set_default("logs", Answer::Status(503));
    let held = bodies("held", 10);
    for body in &held {
        accepted(&api, token, body);
    }
    let first = api.server().daemon_pid("otelfwd").expect("otelfwd runs");
    kill(Pid::from_raw(first), Signal::SIGKILL).expect("kill -9 otelfwd");
    api.server()
        .wait_daemon_pid("otelfwd", Some(first), RESTART);
    let reopened = wait_for(RESTART, || try_counter(&api, "logs", "queueRecords"));
    assert!(
        reopened.is_some_and(|records| records >= 10),
        "{:?}: {}",
        reopened,
        api.server().stderr()
    );
    assert_eq!(counter(&api, "logs", "corruptRecords"), 0);
    assert!(
        !api.server().stderr().contains("damaged"),
        "{}",
        api.server().stderr()
    );
    backend.set_default("logs", Answer::Status(200));
    wait_logs(&backend, &held);
}

/// `/health` while the volume is full: 200 (reads still work, and a restart would not free
/// anything), `degraded`, and the volume with its free space.
fn assert_degraded(api: &Api, disk: &SmallDisk) -> Value {
    let health = wait_for(Duration::from_secs(5), || {
        let reply = api.send(&Request::get("/health"));
        (reply.json()["status"] == "degraded").then_some(reply)
    })
    .unwrap_or_else(|| {
        panic!(
            "/health never said degraded: {}",
            api.send(&Request::get("/health")).summary()
        )
    });
    assert_eq!(health.status, 200, "{}", health.summary());
    let body = health.json();
    let volumes = body["volumes"].as_array().cloned().unwrap_or_default();
    assert_eq!(volumes.len(), 1, "{body}");
    let volume = &volumes[0];
    assert_eq!(volume["status"], "full", "{body}");
    assert_eq!(
        volume["path"],
        disk.data_dir().display().to_string(),
        "{body}"
    );
    assert!(volume["availableBytes"].as_u64().is_some(), "{body}");
    assert!(volume["totalBytes"].as_u64().is_some(), "{body}");
    body
}

fn assert_recovers(api: &Api) {
    let healthy = wait_for(Duration::from_secs(10), || {
        let reply = api.send(&Request::get("/health"));
        (reply.status == 200 && reply.json() == json!({"status": "healthy"})).then_some(())
    });
    assert!(
        healthy.is_some(),
        "/health did not recover once space was freed: {}",
        api.send(&Request::get("/health")).summary()
    );
}

/// A release too large for what is left of the disk, but well within the body limit.
fn big_release() -> Value {
    let mut body = release_body(&["local"]);
    body["stack"]["local"]["resources"]["api"]["config"]["environment"]["PADDING"] =
        json!("p".repeat(3 * MIB as usize / 2));
    body
}

#[test]
fn an_api_write_on_a_full_disk_is_507_and_health_degrades_and_recovers() {
    let disk = SmallDisk::mount(DISK);
    let api = start(&disk, None);
    let data_dir = disk.data_dir().display().to_string();
    let filler = disk.fill(0);

    let create = Request::post("/v1/releases", big_release()).auth(api.admin());
    for _ in 0..3 {
        let refused = api.expect_error(&create, 507, "INSUFFICIENT_STORAGE");
        assert_eq!(refused["retryable"], true, "{refused}");
        assert_eq!(refused["internal"], false, "{refused}");
        assert!(
            !refused.to_string().contains(&data_dir),
            "the client is not told where the server keeps its data: {refused}"
        );
    }
    assert_degraded(&api, &disk);
    // The operator reads one line, naming the volume and its free space, not one a request.
    let full_lines = |api: &Api| {
        api.server()
            .stderr()
            .lines()
            .filter(|l| l.contains("data volume is full") && l.contains(&data_dir))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let lines = full_lines(&api);
    assert_eq!(lines.len(), 1, "{}", api.server().stderr());
    assert!(lines[0].contains("available_bytes="), "{}", lines[0]);
    // Reads go on.
    api.expect(&Request::get("/v1/releases").auth(api.admin()), 200);

    filler.remove();
    assert_recovers(&api);
    api.server().wait_log_line(Duration::from_secs(5), |l| {
        l.contains("data volume has space again") && l.contains(&data_dir)
    });
    api.expect(&create, 201);
    assert_eq!(full_lines(&api).len(), 1);
}

fn oci_error(reply: &OciReply) -> (String, String) {
    let body = reply.json();
    let error = &body["errors"][0];
    (
        error["code"].as_str().unwrap_or_default().to_owned(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn assert_insufficient_storage(reply: &OciReply) {
    assert_eq!(reply.status, 507, "{}", reply.summary());
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{}",
        reply.summary()
    );
    let (code, message) = oci_error(reply);
    assert_eq!(code, "UNKNOWN", "{}", reply.summary());
    assert!(
        message.to_lowercase().contains("no space left"),
        "a message that says why: {}",
        reply.summary()
    );
}

/// Files under `registry/` other than blobs: upload bytes and temporary manifests.
fn registry_scratch(disk: &SmallDisk) -> Vec<(String, u64)> {
    let root = disk.data_dir().join("registry");
    registry_files(&disk.data_dir())
        .into_iter()
        .filter(|f| !f.starts_with("blobs/"))
        .map(|f| {
            let len = std::fs::metadata(root.join(&f)).map_or(0, |m| m.len());
            (f, len)
        })
        .collect()
}

#[test]
fn a_registry_push_on_a_full_disk_is_507_leaves_nothing_half_written_and_resumes() {
    let disk = SmallDisk::mount(DISK);
    let api = start(&disk, None);
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let repo = format!("{REPOSITORY}/full");
    let config_blob = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let config_digest = oci.push_blob(&repo, &config_blob, &admin);
    let layer = random_bytes(10, 2 * MIB as usize);
    let layer_digest = sha256(&layer);
    let session = oci.start_upload(&repo, &admin);
    let filler = disk.fill(0);

    // A chunk, then the whole blob in the closing PUT: both refused, the session kept at
    // what it had acknowledged (nothing), and no byte of them left on disk.
    let upload = |method, target: &str| {
        oci.call(
            method,
            target,
            &admin,
            &[("content-type", "application/octet-stream")],
            layer.clone(),
        )
    };
    let no_bytes_left = || {
        let scratch = registry_scratch(&disk);
        assert!(scratch.iter().all(|(_, len)| *len == 0), "{scratch:?}");
    };
    assert_insufficient_storage(&upload("PATCH", &session));
    assert_insufficient_storage(&upload("PUT", &with_digest(&session, &layer_digest)));
    no_bytes_left();
    // A manifest, whose blobs are there: refused too, and no temporary file stays.
    let manifest = image_manifest(
        (&config_digest, config_blob.len()),
        &[(&config_digest, config_blob.len())],
    );
    let pushed = oci.push_manifest(&repo, "v1", OCI_MANIFEST, &manifest, &admin);
    assert_insufficient_storage(&pushed);
    no_bytes_left();
    assert_degraded(&api, &disk);

    filler.remove();
    assert_recovers(&api);
    let status = oci.get(&session, &admin);
    assert_eq!(status.status, 204, "{}", status.summary());
    assert_eq!(status.header("range"), Some("0-0"), "{}", status.summary());
    let chunk = upload("PATCH", &session);
    assert_eq!(chunk.status, 202, "{}", chunk.summary());
    let done = oci.call(
        "PUT",
        &with_digest(&session, &layer_digest),
        &admin,
        &[],
        Vec::new(),
    );
    assert_eq!(done.status, 201, "{}", done.summary());
    let pulled = oci.blob(&repo, &layer_digest, &admin);
    assert!(
        pulled.body == layer,
        "the blob pulled is not the one pushed"
    );
    let pushed = oci.push_manifest(&repo, "v1", OCI_MANIFEST, &manifest, &admin);
    assert_eq!(pushed.status, 201, "{}", pushed.summary());
    assert_eq!(registry_scratch(&disk), Vec::<(String, u64)>::new());
}

/// A volume with no room is reported before any write fails on it: one that was full when
/// the manager started, or that the sidecars' own writes filled, which no answer to a
/// client says.
#[test]
fn health_reports_a_full_volume_before_any_write_fails() {
    let disk = SmallDisk::mount(DISK);
    let api = start(&disk, None);
    let filler = disk.fill(0);
    assert_degraded(&api, &disk);
    filler.remove();
    assert_recovers(&api);
}
