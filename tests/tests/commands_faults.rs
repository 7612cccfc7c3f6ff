//! Faults in the commands protocol: commandd killed with SIGKILL between create and lease and
//! between lease and response loses nothing it accepted, and concurrent receivers never hold
//! one command at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use e2e::api::{Api, NewDeployment, Request, string};
use e2e::commands::{Receiver, Target, create_body, wait_terminal};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

fn kill_commandd(api: &Api) {
    let pid = api.server().daemon_pid("commandd").expect("commandd runs");
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 commandd");
    api.server()
        .wait_daemon_pid("commandd", Some(pid), Duration::from_secs(20));
}

#[test]
fn nothing_accepted_is_lost_when_commandd_is_killed() {
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &[("jobs", "container", true)]);
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    let ids: Vec<String> = (0..5)
        .map(|i| {
            let body = create_body(
                &target,
                json!({"command": format!("job-{i}"), "idempotencyKey": format!("k{i}")}),
            );
            string(
                &api.expect(&Request::post("/v1/commands", body).auth(api.admin()), 200),
                "commandId",
            )
        })
        .collect();
    // Between create and lease.
    kill_commandd(&api);
    let leases = receiver.lease(10, 60, None);
    let leased: BTreeSet<&str> = leases.iter().map(|l| l.command_id.as_str()).collect();
    assert_eq!(
        leased,
        ids.iter().map(String::as_str).collect(),
        "every accepted command survived"
    );
    // Between lease and response: the leases hold, and the answers are taken.
    kill_commandd(&api);
    assert!(
        receiver.lease(10, 60, None).is_empty(),
        "leases survived the crash"
    );
    for lease in &leases {
        assert_eq!(receiver.respond(lease, lease.command_id.as_bytes()), 200);
    }
    kill_commandd(&api);
    for id in &ids {
        let done = wait_terminal(&api, id, Duration::from_secs(30));
        assert_eq!(done["state"], "SUCCEEDED", "{done}");
    }
    // The idempotency keys survived too.
    let again = api.expect(
        &Request::post(
            "/v1/commands",
            create_body(&target, json!({"command": "job-0", "idempotencyKey": "k0"})),
        )
        .auth(api.admin()),
        200,
    );
    assert_eq!(again["commandId"], ids[0].as_str());
}

/// When a receiver got a lease, when the lease ran out, and which receiver it was.
type Held = (std::time::Instant, std::time::Instant, usize);

#[test]
fn concurrent_receivers_never_share_a_command_through_crashes() {
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &[("jobs", "container", true)]);
    const COMMANDS: usize = 40;
    let ids: Vec<String> = (0..COMMANDS)
        .map(|_| {
            string(
                &api.expect(
                    &Request::post("/v1/commands", create_body(&target, json!({})))
                        .auth(api.admin()),
                    200,
                ),
                "commandId",
            )
        })
        .collect();
    // Who held which command, and when its lease would have run out.
    let held: Mutex<BTreeMap<String, Vec<Held>>> = Mutex::default();
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for receiver_no in 0..4 {
            let (api, target, held, done) = (&api, &target, &held, &done);
            s.spawn(move || {
                let receiver = Receiver::new(api, target, "jobs", "container");
                let deadline = std::time::Instant::now() + Duration::from_secs(90);
                while done.load(std::sync::atomic::Ordering::SeqCst) < COMMANDS
                    && std::time::Instant::now() < deadline
                {
                    let (status, body) = receiver.try_lease(2, 5, Some(1));
                    if status != 200 {
                        continue; // commandd restarting: retry, as receivers do on 5xx
                    }
                    for lease in body["leases"].as_array().expect("leases") {
                        let id = string(lease, "commandId");
                        let start = std::time::Instant::now();
                        held.lock()
                            .expect("lock")
                            .entry(id.clone())
                            .or_default()
                            .push((start, start + Duration::from_secs(5), receiver_no));
                        let lease = e2e::commands::Lease::answered(lease, receiver.leases_url());
                        std::thread::sleep(Duration::from_millis(20));
                        if receiver.respond(&lease, b"x") == 200 {
                            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                }
            });
        }
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(700));
            kill_commandd(&api);
        }
    });
    for id in &ids {
        assert_eq!(
            wait_terminal(&api, id, Duration::from_secs(30))["state"],
            "SUCCEEDED"
        );
    }
    // No two leases of one command overlapped in time.
    for (id, mut spans) in held.into_inner().expect("lock") {
        spans.sort();
        for pair in spans.windows(2) {
            // The receivers' clocks start after the server's: allow for the round trip.
            assert!(
                pair[1].0 + Duration::from_millis(200) >= pair[0].1,
                "{id} leased to receivers {} and {} at once",
                pair[0].2,
                pair[1].2
            );
        }
    }
}
