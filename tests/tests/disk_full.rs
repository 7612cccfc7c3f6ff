//! A full data volume (issue 10), on a tmpfs of a few MiB that the test fills with a file of
//! its own and frees again: every write refused while it is full is refused clearly (507, or
//! 503 with `Retry-After` where the sender retries by itself) and leaves nothing half-written,
//! `/health` says which volume is full and recovers by itself, and nothing acknowledged is
//! lost, the telemetry queue above all.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::api::{Api, NewDeployment};
use e2e::small_disk::SmallDisk;
use e2e::telemetry::{
    Answer, Backend, Ingest, config, counter, log, protobuf, signal_status, try_counter,
};
use e2e::{Options, wait_for};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

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
