//! Telemetry faults (issue #6): a backend that is down for a while, otelfwd killed with
//! SIGKILL in the middle of a stream, a backend that asks to retry and then refuses, one
//! signal refused while the others flow, and a queue that fills up. Nothing acknowledged to
//! a sender is ever lost, and nothing is acknowledged that was not queued.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::server::free_port;
use e2e::telemetry::{
    Answer, Backend, Ingest, IngestReply, config, counter, log, protobuf, signal_status, spans,
    start_api, try_counter,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn span(name: &str) -> Vec<u8> {
    protobuf(&spans(&[name.to_owned()], Vec::new()))
}

#[test]
fn a_backend_that_is_down_gets_everything_acknowledged_once_it_is_back() {
    let port = free_port();
    let api = start_api(config(Some(&format!("http://127.0.0.1:{port}")), ""));
    let group = api.create_group();
    let deployment = api.create_deployment(&group, e2e::api::NewDeployment::pull());
    let names: Vec<String> = (0..30).map(|i| format!("down-{i}")).collect();
    for name in &names {
        let reply = Ingest::new("traces", span(name), &deployment.token).send(&api);
        assert!(reply.accepted(), "{}", reply.summary());
    }
    let retried = e2e::wait_for(Duration::from_secs(10), || {
        (counter(&api, "traces", "retried") > 0).then_some(())
    });
    assert!(retried.is_some(), "{}", signal_status(&api, "traces"));
    let queued = signal_status(&api, "traces");
    assert_eq!(queued["queueRecords"], 30, "{queued}");
    assert!(queued["oldestRecordAgeSecs"].as_f64().is_some(), "{queued}");
    assert!(queued["lastError"].is_string(), "{queued}");

    let backend = Backend::start_on(port);
    backend.wait(Duration::from_secs(20), "every span", |b| {
        let got: BTreeSet<String> = b.span_names().into_iter().collect();
        names.iter().all(|n| got.contains(n))
    });
    let drained = e2e::wait_for(Duration::from_secs(10), || {
        (counter(&api, "traces", "queueRecords") == 0).then_some(())
    });
    assert!(drained.is_some(), "{}", signal_status(&api, "traces"));
    let after = signal_status(&api, "traces");
    assert_eq!(after["sentRecords"], 30, "{after}");
    assert_eq!(after["droppedRecords"], 0, "{after}");
    assert!(after.get("lastError").is_none(), "{after}");
}

#[test]
fn kill_9_of_otelfwd_in_the_middle_of_a_stream_loses_nothing_acknowledged() {
    let backend = Backend::start();
    // The backend refuses until the end, so that the stream stays in otelfwd's queue.
    backend.set_default("logs", Answer::Status(503));
    let api = start_api(config(Some(&backend.url()), ""));
    let group = api.create_group();
    let deployment = api.create_deployment(&group, e2e::api::NewDeployment::pull());
    let first = api.server().daemon_pid("otelfwd").expect("otelfwd runs");

    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut killed = false;
    for i in 0..400 {
        let body = format!("kill-{i}");
        let reply = Ingest::new("logs", protobuf(&log(&body, 2000)), &deployment.token)
            .try_send(&api)
            .unwrap_or_else(|e| panic!("request {i}: no answer: {e}"));
        if reply.accepted() {
            acknowledged.push(body);
        } else {
            reply.assert_retry_later();
            refused += 1;
        }
        if i == 100 {
            kill(Pid::from_raw(first), Signal::SIGKILL).expect("kill -9 otelfwd");
            killed = true;
        }
        if killed && refused > 0 && acknowledged.len() > 250 {
            break;
        }
    }
    let second = api
        .server()
        .wait_daemon_pid("otelfwd", Some(first), Duration::from_secs(10));
    assert_ne!(first, second);
    assert!(
        acknowledged.len() > 100,
        "{} acknowledged",
        acknowledged.len()
    );

    backend.set_default("logs", Answer::Status(200));
    backend.wait(Duration::from_secs(30), "every acknowledged log", |b| {
        let got: BTreeSet<String> = b.log_bodies().into_iter().collect();
        acknowledged.iter().all(|a| got.contains(a))
    });
}

#[test]
fn a_retry_after_is_honoured_and_a_400_is_dropped_and_counted() {
    let backend = Backend::start();
    backend.queue(
        "traces",
        &[
            Answer::RetryAfter(503, 1),
            Answer::Hangup,
            Answer::Status(400),
        ],
    );
    let api = start_api(config(Some(&backend.url()), ""));
    let group = api.create_group();
    let deployment = api.create_deployment(&group, e2e::api::NewDeployment::pull());
    let reply = Ingest::new("traces", span("refused"), &deployment.token).send(&api);
    assert!(reply.accepted(), "{}", reply.summary());
    backend.wait(Duration::from_secs(15), "the batch three times", |b| {
        b.received().len() >= 3
    });
    let dropped = e2e::wait_for(Duration::from_secs(10), || {
        (counter(&api, "traces", "droppedRecords") == 1).then_some(())
    });
    assert!(dropped.is_some(), "{}", signal_status(&api, "traces"));
    let attempts = backend.received();
    assert_eq!(attempts.len(), 3);
    assert!(
        attempts.iter().all(|a| a.body == attempts[0].body),
        "the same batch each time"
    );
    let waited = attempts[1].at - attempts[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 honoured over a 400 ms backoff: waited {waited:?}"
    );
    let after = signal_status(&api, "traces");
    assert_eq!(after["retried"], 2, "{after}");
    assert_eq!(after["droppedItems"], 1, "{after}");
    assert_eq!(after["queueRecords"], 0, "{after}");
    assert!(
        after["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("400")),
        "{after}"
    );

    // The next one goes through.
    let reply = Ingest::new("traces", span("accepted"), &deployment.token).send(&api);
    assert!(reply.accepted(), "{}", reply.summary());
    backend.wait(Duration::from_secs(10), "the next span", |b| {
        b.span_names() == ["accepted"]
    });
    assert_eq!(counter(&api, "traces", "sentRecords"), 1);
}

#[test]
fn a_backend_refusing_one_signal_holds_up_no_other() {
    let backend = Backend::start();
    backend.set_default("traces", Answer::Status(503));
    let api = start_api(config(Some(&backend.url()), ""));
    let group = api.create_group();
    let deployment = api.create_deployment(&group, e2e::api::NewDeployment::pull());
    for i in 0..5 {
        let traces = Ingest::new("traces", span(&format!("held-{i}")), &deployment.token);
        assert!(traces.send(&api).accepted());
        let logs = Ingest::new(
            "logs",
            protobuf(&log(&format!("flows-{i}"), 200)),
            &deployment.token,
        );
        assert!(logs.send(&api).accepted());
    }
    backend.wait(Duration::from_secs(10), "every log", |b| {
        b.log_bodies().len() >= 5
    });
    assert!(backend.span_names().is_empty());
    assert_eq!(counter(&api, "traces", "queueRecords"), 5);
    assert_eq!(counter(&api, "logs", "queueRecords"), 0);
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_takes_data_again_once_drained() {
    let backend = Backend::start();
    backend.set_default("logs", Answer::Status(503));
    // 256 KiB of queue per signal, and requests of some 20 KiB.
    let api = start_api(config(
        Some(&backend.url()),
        "max-body-bytes = 65536\nmax-decompressed-bytes = 65536\nqueue-segment-bytes = 65536\nqueue-max-bytes = 786432",
    ));
    let group = api.create_group();
    let deployment = api.create_deployment(&group, e2e::api::NewDeployment::pull());
    let send = |body: &str| {
        Ingest::new("logs", protobuf(&log(body, 20_000)), &deployment.token).send(&api)
    };
    let mut acknowledged = Vec::new();
    let mut full = None;
    for i in 0..100 {
        let body = format!("fill-{i}");
        let reply = send(&body);
        if reply.accepted() {
            acknowledged.push(body);
        } else {
            full = Some(reply);
            break;
        }
    }
    let full = full.expect("the queue never filled");
    full.assert_retry_later();
    assert!(
        (10..=13).contains(&acknowledged.len()),
        "{} acknowledged",
        acknowledged.len()
    );
    send("still-full").assert_retry_later();
    let status = signal_status(&api, "logs");
    assert_eq!(status["refusedFull"], 2, "{status}");
    assert_eq!(status["queueRecords"], acknowledged.len(), "{status}");

    backend.set_default("logs", Answer::Status(200));
    backend.wait(Duration::from_secs(20), "every acknowledged log", |b| {
        let got: BTreeSet<String> = b.log_bodies().into_iter().collect();
        acknowledged.iter().all(|a| got.contains(a))
    });
    assert!(
        !backend.log_bodies().iter().any(|b| b == "still-full"),
        "a refused request must not be forwarded"
    );
    let reply = e2e::wait_for(Duration::from_secs(10), || {
        Some(send("after")).filter(IngestReply::accepted)
    });
    assert!(
        reply.is_some(),
        "ingest did not recover: {}",
        signal_status(&api, "logs")
    );
}

#[test]
fn what_is_queued_survives_an_orderly_restart_of_otelfwd() {
    let backend = Backend::start();
    backend.set_default("traces", Answer::Status(503));
    let api = start_api(config(Some(&backend.url()), ""));
    let group = api.create_group();
    let deployment = api.create_deployment(&group, e2e::api::NewDeployment::pull());
    let names: Vec<String> = (0..20).map(|i| format!("restart-{i}")).collect();
    for name in &names {
        let reply = Ingest::new("traces", span(name), &deployment.token).send(&api);
        assert!(reply.accepted(), "{}", reply.summary());
    }
    let first = api.server().daemon_pid("otelfwd").expect("otelfwd runs");
    kill(Pid::from_raw(first), Signal::SIGTERM).expect("SIGTERM otelfwd");
    api.server()
        .wait_daemon_pid("otelfwd", Some(first), Duration::from_secs(10));
    // The new process answers once it has reopened its queue.
    let reopened = e2e::wait_for(Duration::from_secs(10), || {
        (try_counter(&api, "traces", "queueRecords") == Some(20)).then_some(())
    });
    assert!(reopened.is_some(), "{}", signal_status(&api, "traces"));
    backend.set_default("traces", Answer::Status(200));
    backend.wait(Duration::from_secs(20), "every span", |b| {
        let got: BTreeSet<String> = b.span_names().into_iter().collect();
        names.iter().all(|n| got.contains(n))
    });
}
