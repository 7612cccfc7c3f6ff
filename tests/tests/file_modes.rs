//! The data directory is the service user's alone (docs/architecture.md, The data volume):
//! every file and socket 0600, every directory 0700, whatever umask `alien serve` starts
//! with, and files an earlier start left readable by others are made private at start.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::api::{Api, NewDeployment, Request, string};
use e2e::commands::{Receiver, Target, create_body, presigned, wait_terminal};
use e2e::registry::{Cred, Image, Oci, REPOSITORY, random_bytes};
use e2e::server::{set_mode, with_umask};
use e2e::telemetry::{Backend, Ingest, config, protobuf, spans};
use e2e::{Options, Server, wait_for};
use serde_json::json;

const HEALTHY: Duration = Duration::from_secs(30);

/// Every entry under `root` (itself included) with its file type and permission bits.
fn entries(root: &Path) -> Vec<(PathBuf, std::fs::FileType, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    // Bounded: a data directory of a few tests holds a few hundred entries.
    for _ in 0..100_000 {
        let Some(path) = pending.pop() else {
            return found;
        };
        let metadata =
            std::fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read_dir") {
                pending.push(entry.expect("entry").path());
            }
        }
        found.push((
            path,
            metadata.file_type(),
            metadata.permissions().mode() & 0o777,
        ));
    }
    panic!("more than 100000 entries under {}", root.display());
}

/// The entries whose mode is not the service user's alone: 0700 for a directory, 0600 for
/// anything else (files, sockets).
fn not_private(root: &Path) -> Vec<String> {
    entries(root)
        .into_iter()
        .filter(|(_, kind, mode)| *mode != if kind.is_dir() { 0o700 } else { 0o600 })
        .map(|(path, kind, mode)| {
            let what = if kind.is_socket() { "socket" } else { "" };
            format!("{mode:03o} {what} {}", path.display())
        })
        .collect()
}

fn exists(root: &Path, relative: &str) -> bool {
    root.join(relative).exists()
}

/// Some file under `root/relative` (at any depth).
fn has_file_under(root: &Path, relative: &str) -> bool {
    entries(&root.join(relative))
        .iter()
        .any(|(_, kind, _)| kind.is_file())
}

#[test]
fn every_writer_creates_private_files_under_a_permissive_umask() {
    let backend = Backend::start();
    let api = Api::start_with(Options {
        config: Some(config(Some(&backend.url()), "")),
        exec_through: with_umask(0o022),
        ..Options::default()
    });
    let data = api.server().data_dir().to_path_buf();
    let admin = Cred::bearer(api.admin_token());

    // manager.db: a release, a deployment and its token.
    let target = Target::new(&api, NewDeployment::pull(), &[("jobs", "container", true)]);

    // registryd: an image (blobs, a manifest through tmp/, a tag), and a session with a chunk.
    let oci = Oci::new(&api);
    let repo = format!("{REPOSITORY}/app");
    Image::generate(61, &[64 * 1024]).push(&oci, &repo, "v1", &admin);
    let session = oci.start_upload(&repo, &admin);
    let chunk = oci.call(
        "PATCH",
        &session,
        &admin,
        &[("content-type", "application/octet-stream")],
        random_bytes(62, 4096),
    );
    assert_eq!(chunk.status, 202, "{}", chunk.summary());

    // commandd: params uploaded to storage, and a response too large for a document.
    let large = random_bytes(63, 200_000);
    let created = api.expect(
        &Request::post(
            "/v1/commands",
            create_body(
                &target,
                json!({"params": {"mode": "storage", "size": large.len()}}),
            ),
        )
        .auth(api.admin()),
        200,
    );
    let id = string(&created, "commandId");
    let (status, _) = presigned(
        &created["storageUpload"]["putRequest"],
        &api.base_url(),
        large,
    );
    assert_eq!(status, 200);
    api.expect(
        &Request::post(
            format!("/v1/commands/{id}/upload-complete"),
            json!({"size": 200_000}),
        )
        .auth(api.admin()),
        200,
    );
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    let lease = receiver.lease(1, 60, None).remove(0);
    assert_eq!(receiver.respond(&lease, &random_bytes(64, 300_000)), 200);
    assert_eq!(
        wait_terminal(&api, &id, Duration::from_secs(30))["state"],
        "SUCCEEDED"
    );

    // otelfwd: a queue segment, and its cursor once delivered.
    let traces = protobuf(&spans(&["modes".to_owned()], Vec::new()));
    let reply = Ingest::new("traces", traces, &target.deployment.token).send(&api);
    assert!(reply.accepted(), "{}", reply.summary());
    backend.wait(Duration::from_secs(20), "the span", |b| {
        !b.delivered("traces").is_empty()
    });
    let cursor = wait_for(Duration::from_secs(10), || {
        exists(&data, "telemetry/traces/cursor").then_some(())
    });
    assert!(cursor.is_some(), "no telemetry cursor");

    // Each writer has written (so that the check below cannot pass on an empty directory).
    for file in [
        "serve.lock",
        "manager.db",
        "manager.db-wal",
        "manager.db-shm",
        "signing-key",
        "registry/registry.db",
        "registry/registry.db-wal",
        "commands/commands.db",
        "commands/commands.db-wal",
        "run/commandd.sock",
        "run/manager.notify",
        "run/registryd.sock",
        "run/registryd.lock",
    ] {
        assert!(exists(&data, file), "{file} is missing");
    }
    for dir in [
        "registry/blobs",
        "registry/uploads",
        "commands/blobs",
        "telemetry/traces",
    ] {
        assert!(has_file_under(&data, dir), "nothing under {dir}");
    }
    let loose = not_private(&data);
    assert!(
        loose.is_empty(),
        "readable by others under umask 022:\n{}",
        loose.join("\n")
    );
}

#[test]
fn files_left_readable_by_others_are_made_private_at_start() {
    let options = Options {
        exec_through: with_umask(0o022),
        ..Options::default()
    };
    let mut first = Server::start(options.clone());
    first.wait_healthy(HEALTHY);
    first.stop_cleanly(Duration::from_secs(15));
    let data = first.data_dir().to_path_buf();
    // As an earlier version under umask 022 left them. Below deployd's trees (the unpacked
    // images and the workloads' files) modes are the images' own: those directories are made
    // private themselves, and what is below them is left as it is.
    let sealed = [data.join("images"), data.join("deployments")];
    let is_sealed = |path: &Path| {
        sealed
            .iter()
            .any(|dir| path.starts_with(dir) && path != dir)
    };
    let mut loosened = 0;
    let mut left_alone = Vec::new();
    for (path, kind, _) in entries(&data) {
        if kind.is_dir() {
            set_mode(&path, 0o755);
        } else if kind.is_file() {
            set_mode(&path, 0o644);
        } else {
            continue;
        }
        if is_sealed(&path) {
            left_alone.push(path);
        } else {
            loosened += 1;
        }
    }
    assert!(
        loosened >= 10,
        "only {loosened} entries: {:?}",
        entries(&data)
    );
    assert!(!left_alone.is_empty(), "nothing under {sealed:?}");

    let mut second = Server::start(Options {
        data_dir: Some(data.clone()),
        ..options
    });
    second.wait_healthy(HEALTHY);
    let line = second.wait_log_line(Duration::from_secs(5), |line| {
        line.contains("made files and directories that other users could read private")
    });
    let count: u64 = line
        .split_once("count=")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    assert_eq!(count, loosened, "{line}");
    let loose: Vec<String> = not_private(&data)
        .into_iter()
        .filter(|line| {
            !sealed
                .iter()
                .any(|dir| line.contains(&format!("{}/", dir.display())))
        })
        .collect();
    assert!(
        loose.is_empty(),
        "still readable by others:\n{}",
        loose.join("\n")
    );
    for path in &left_alone {
        let mode = std::fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777;
        assert!(
            mode == 0o755 || mode == 0o644,
            "{} was changed to {mode:03o}",
            path.display()
        );
    }
    assert_eq!(
        second
            .stderr()
            .matches("made files and directories that other users could read private")
            .count(),
        1,
        "one line"
    );
    second.stop_cleanly(Duration::from_secs(15));
}
