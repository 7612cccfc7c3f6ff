//! The commands protocol end to end: an invoker with the admin token and a receiver with the
//! deployment token, as the public CLI and agents use them (docs/compatibility.md, Commands).

use std::time::Duration;

use e2e::api::{Api, NewDeployment, Request, string};
use e2e::commands::{
    Receiver, Target, create_body, inline, response_bytes, unbase64, wait_terminal,
};
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

fn container() -> [(&'static str, &'static str, bool); 1] {
    [("jobs", "container", true)]
}

#[test]
fn an_inline_command_goes_round_trip() {
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &container());
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    let created = api.expect(
        &Request::post(
            "/v1/commands",
            create_body(
                &target,
                json!({"command": "generate-report", "params": inline(br#"{"month":"may"}"#)}),
            ),
        )
        .auth(api.admin()),
        200,
    );
    assert_eq!(created["state"], "PENDING", "{created}");
    assert_eq!(created["next"], "poll");
    assert_eq!(created["inlineAllowedUpTo"], 150000);
    assert!(created.get("storageUpload").is_none(), "{created}");
    let id = string(&created, "commandId");
    assert!(e2e::api::is_lowercase_id(&id, "cmd_"), "{id}");

    let leases = receiver.lease(1, 60, None);
    assert_eq!(leases.len(), 1);
    let lease = &leases[0];
    assert!(lease.lease_id.starts_with("lease_"), "{}", lease.lease_id);
    assert_eq!(lease.command_id, id);
    assert_eq!(lease.attempt, 1);
    let envelope = &lease.envelope;
    assert_eq!(envelope["protocol"], "arc.v1");
    assert_eq!(envelope["deploymentId"], target.deployment.id.as_str());
    assert_eq!(
        envelope["target"],
        json!({"resourceId": "jobs", "resourceType": "container"})
    );
    assert_eq!(envelope["command"], "generate-report");
    assert_eq!(envelope["responseHandling"]["maxInlineBytes"], 150000);
    let submit = envelope["responseHandling"]["submitResponseUrl"]
        .as_str()
        .expect("url");
    assert!(
        submit.starts_with(&format!("{id}/response?response_token=")),
        "relative: {submit}"
    );
    assert_eq!(lease.params(), br#"{"month":"may"}"#);

    let status = api.expect(
        &Request::get(format!("/v1/commands/{id}")).auth(api.admin()),
        200,
    );
    assert_eq!(status["state"], "DISPATCHED");
    assert!(status.get("response").is_none());

    assert_eq!(receiver.respond(lease, br#"{"rows":3}"#), 200);
    let done = wait_terminal(&api, &id, LONG);
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    assert_eq!(done["attempt"], 1);
    assert_eq!(
        done["target"],
        json!({"resourceId": "jobs", "resourceType": "container"})
    );
    assert_eq!(response_bytes(&api, &done), br#"{"rows":3}"#);
    // A duplicate answer to a finished command is a 200 that changes nothing.
    assert_eq!(receiver.respond(lease, b"other"), 200);
    let again = api.expect(
        &Request::get(format!("/v1/commands/{id}")).auth(api.admin()),
        200,
    );
    assert_eq!(response_bytes(&api, &again), br#"{"rows":3}"#);
    // Nothing left to lease.
    assert!(receiver.lease(1, 60, None).is_empty());
    let payload = api.expect(
        &Request::get(format!("/v1/commands/{id}/payload")).auth(api.admin()),
        200,
    );
    assert_eq!(payload["params"]["mode"], "inline", "{payload}");
    assert_eq!(
        unbase64(payload["params"]["inlineBase64"].as_str().expect("b64")).expect("b64"),
        br#"{"month":"may"}"#
    );
}

#[test]
fn params_and_responses_over_150_kb_go_through_storage() {
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &container());
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    let big = |n: usize, seed: u8| -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    };

    // Inline params of 30 kB are promoted to a blob and re-inlined on delivery.
    let medium = big(30_000, 1);
    let created = api.expect(
        &Request::post(
            "/v1/commands",
            create_body(&target, json!({"params": inline(&medium)})),
        )
        .auth(api.admin()),
        200,
    );
    let lease = receiver.lease(1, 60, None).remove(0);
    assert_eq!(lease.envelope["params"]["mode"], "inline");
    assert_eq!(lease.params(), medium);
    let payload = api.expect(
        &Request::get(format!(
            "/v1/commands/{}/payload",
            string(&created, "commandId")
        ))
        .auth(api.admin()),
        200,
    );
    assert_eq!(
        payload["params"],
        json!({"mode": "storage", "size": 30000, "storagePutUsed": true})
    );
    // A response over 150 kB is uploaded to the envelope's storage request.
    let answer = big(400_000, 2);
    assert_eq!(receiver.respond(&lease, &answer), 200);
    let done = wait_terminal(&api, &lease.command_id, LONG);
    assert_eq!(done["state"], "SUCCEEDED");
    assert_eq!(done["response"]["response"]["mode"], "storage", "{done}");
    assert_eq!(done["response"]["response"]["size"], 400000);
    assert_eq!(response_bytes(&api, &done), answer);

    // Storage params over 150 kB: PENDING_UPLOAD, the upload, then upload-complete.
    let large = big(300_000, 3);
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
    assert_eq!(created["state"], "PENDING_UPLOAD", "{created}");
    assert_eq!(created["next"], "upload");
    let id = string(&created, "commandId");
    assert!(
        receiver.lease(1, 60, None).is_empty(),
        "not leasable before its upload"
    );
    let upload = &created["storageUpload"];
    assert_eq!(upload["putRequest"]["operation"], "put");
    assert_eq!(
        upload["putRequest"]["path"],
        format!("arc/commands/{id}/params")
    );
    let (status, _) =
        e2e::commands::presigned(&upload["putRequest"], &api.base_url(), large.clone());
    assert_eq!(status, 200);
    let completed = api.expect(
        &Request::post(
            format!("/v1/commands/{id}/upload-complete"),
            json!({"size": large.len()}),
        )
        .auth(api.admin()),
        200,
    );
    assert_eq!(completed, json!({"commandId": id, "state": "PENDING"}));
    let lease = receiver.lease(1, 60, None).remove(0);
    assert_eq!(lease.envelope["params"]["mode"], "storage");
    let url = lease.envelope["params"]["storageGetRequest"]["backend"]["url"]
        .as_str()
        .expect("url");
    assert!(
        url.starts_with(&format!("storage/{id}/params?")),
        "relative to the lease URL: {url}"
    );
    assert_eq!(lease.params(), large);
    // A second upload-complete is a state transition the command cannot make.
    api.expect_error(
        &Request::post(
            format!("/v1/commands/{id}/upload-complete"),
            json!({"size": 1}),
        )
        .auth(api.admin()),
        400,
        "INVALID_STATE_TRANSITION",
    );
}

#[test]
fn an_idempotency_key_returns_the_first_command() {
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &container());
    let body = create_body(&target, json!({"idempotencyKey": "report-2026-05"}));
    let first = api.expect(
        &Request::post("/v1/commands", body.clone()).auth(api.admin()),
        200,
    );
    let again = api.expect(
        &Request::post("/v1/commands", body.clone()).auth(api.admin()),
        200,
    );
    assert_eq!(again["commandId"], first["commandId"]);
    assert_eq!(again["next"], "poll");
    assert!(again.get("storageUpload").is_none());
    // Another command name is another key.
    let mut other = body;
    other["command"] = json!("other");
    let third = api.expect(&Request::post("/v1/commands", other).auth(api.admin()), 200);
    assert_ne!(third["commandId"], first["commandId"]);
    // Concurrent creates with one key all get one command.
    let body = create_body(&target, json!({"idempotencyKey": "race"}));
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (api, body) = (&api, body.clone());
                s.spawn(move || {
                    string(
                        &api.expect(&Request::post("/v1/commands", body).auth(api.admin()), 200),
                        "commandId",
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("joined"))
            .collect()
    });
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

#[test]
fn a_deadline_expires_the_command() {
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &container());
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    let soon = time_in(Duration::from_millis(1500));
    let created = api.expect(
        &Request::post(
            "/v1/commands",
            create_body(&target, json!({"deadline": soon})),
        )
        .auth(api.admin()),
        200,
    );
    let id = string(&created, "commandId");
    // The long poll answers when the state changes: at the deadline.
    let started = std::time::Instant::now();
    let status = api.expect(
        &Request::get(format!("/v1/commands/{id}?waitSeconds=10")).auth(api.admin()),
        200,
    );
    assert_eq!(status["state"], "EXPIRED", "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(status.get("response").is_none(), "{status}");
    assert!(receiver.lease(1, 60, None).is_empty());
    // A dispatched command expires too, and a late answer is a duplicate.
    let created = api.expect(
        &Request::post(
            "/v1/commands",
            create_body(
                &target,
                json!({"deadline": time_in(Duration::from_secs(2))}),
            ),
        )
        .auth(api.admin()),
        200,
    );
    let lease = receiver.lease(1, 60, None).remove(0);
    assert_eq!(lease.command_id, string(&created, "commandId"));
    assert_eq!(
        lease.envelope["deadline"].as_str().map(str::len),
        Some(24),
        "{}",
        lease.envelope
    );
    let done = wait_terminal(&api, &lease.command_id, LONG);
    assert_eq!(done["state"], "EXPIRED");
    assert_eq!(receiver.respond(&lease, b"late"), 200);
    assert_eq!(
        wait_terminal(&api, &lease.command_id, LONG)["state"],
        "EXPIRED"
    );
}

#[test]
fn an_expired_lease_is_redelivered_and_a_released_one_at_once() {
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &container());
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    let created = api.expect(
        &Request::post("/v1/commands", create_body(&target, json!({}))).auth(api.admin()),
        200,
    );
    let id = string(&created, "commandId");
    let first = receiver.lease(1, 1, None).remove(0);
    assert_eq!(first.attempt, 1);
    assert!(
        receiver.lease(1, 1, None).is_empty(),
        "held by the first lease"
    );
    // The long poll answers when the lease runs out.
    let started = std::time::Instant::now();
    let second = receiver.lease(1, 60, Some(10)).remove(0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (second.command_id.as_str(), second.attempt),
        (id.as_str(), 2)
    );
    assert_eq!(second.envelope["attempt"], 2);
    // Released: back to PENDING with the next attempt, offered again at once.
    assert_eq!(receiver.release(&second.lease_id), 200);
    let status = api.expect(
        &Request::get(format!("/v1/commands/{id}")).auth(api.admin()),
        200,
    );
    assert_eq!(
        (status["state"].as_str(), status["attempt"].as_u64()),
        (Some("PENDING"), Some(3))
    );
    assert_eq!(
        receiver.release(&second.lease_id),
        404,
        "a lease is released once"
    );
    // An answer to a command put back is a transition it cannot make.
    assert_eq!(receiver.respond(&second, b"x"), 400);
    let third = receiver.lease(1, 60, None).remove(0);
    assert_eq!(third.attempt, 3);
    assert_eq!(receiver.respond(&third, b"done"), 200);
    assert_eq!(wait_terminal(&api, &id, LONG)["attempt"], 3);
}

#[test]
fn long_polls_answer_when_there_is_something() {
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &container());
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    // Nothing to lease: the wait runs its course.
    let started = std::time::Instant::now();
    assert!(receiver.lease(1, 60, Some(1)).is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    std::thread::scope(|s| {
        let waiting = s.spawn(|| {
            let started = std::time::Instant::now();
            (receiver.lease(1, 60, Some(20)), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(500));
        api.expect(
            &Request::post("/v1/commands", create_body(&target, json!({}))).auth(api.admin()),
            200,
        );
        let (leases, took) = waiting.join().expect("joined");
        assert_eq!(leases.len(), 1);
        assert!(took < Duration::from_secs(5), "{took:?}");
        let id = leases[0].command_id.clone();
        let api = &api;
        let watching = s.spawn(move || {
            api.expect(
                &Request::get(format!("/v1/commands/{id}?waitSeconds=20")).auth(api.admin()),
                200,
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(receiver.respond(&leases[0], b"ok"), 200);
        let status = watching.join().expect("joined");
        assert_eq!(status["state"], "SUCCEEDED", "{status}");
    });
    // More than 30 s is cut to 30; a word is a 400.
    api.expect_error(
        &Request::get("/v1/commands/cmd_x?waitSeconds=soon").auth(api.admin()),
        400,
        "BAD_REQUEST",
    );
}

/// RFC 3339 for now + `after`, as the CLI sends deadlines.
fn time_in(after: Duration) -> String {
    let at = std::time::SystemTime::now() + after;
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    // Days from the civil date algorithm (Howard Hinnant's), for a timestamp without a crate.
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
