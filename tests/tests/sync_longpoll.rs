//! The agent sync's long poll (docs/compatibility.md, Extension: the agent sync's long poll):
//! `POST /v1/sync` with `waitSeconds` holds an answer with nothing in it until the deployment
//! changes or the wait ends, and a change wakes every waiting agent at once.

use std::time::{Duration, Instant};

use e2e::api::{Api, Deployment, NewDeployment, Reply, Request, keys, stack, state, string};
use serde_json::{Value, json};

/// How soon after the change's answer a waiting sync must have answered.
const PROMPT: Duration = Duration::from_secs(1);

/// How long a test lets a sync reach the manager and be held before it changes anything.
const SETTLE: Duration = Duration::from_millis(500);

/// Where the wait goes: the query string or the body.
#[derive(Debug, Clone)]
enum Wait {
    None,
    Query(&'static str),
    Body(Value),
}

/// `POST /v1/sync` of `deployment` with its own token, reporting `report`.
fn sync_request(deployment: &Deployment, report: Option<&Value>, wait: &Wait) -> Request {
    let mut body = json!({"deploymentId": deployment.id});
    if let Some(report) = report {
        body["currentState"] = report.clone();
    }
    let path = match wait {
        Wait::Query(seconds) => format!("/v1/sync?waitSeconds={seconds}"),
        Wait::None | Wait::Body(_) => "/v1/sync".to_owned(),
    };
    if let Wait::Body(seconds) = wait {
        body["waitSeconds"] = seconds.clone();
    }
    Request::post(path, body).bearer(&deployment.token)
}

/// The sync's answer and the moment it came.
fn sync_at(api: &Api, request: &Request) -> (Reply, Instant) {
    let reply = api.send(request);
    (reply, Instant::now())
}

/// A running state on release `release`, as an agent that reached it reports.
fn running_on(release: &str) -> Value {
    let mut running = state("running", "local");
    running["currentRelease"] = json!({"releaseId": release, "stack": stack()});
    running
}

/// A pull deployment whose agent reached `release`: a sync has nothing new for it.
fn settled(api: &Api, release: &str) -> Deployment {
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let reply = api.expect(
        &sync_request(&deployment, Some(&running_on(release)), &Wait::None),
        200,
    );
    assert_eq!(keys(&reply), ["commandsUrl"], "nothing new: {reply}");
    deployment
}

/// Checks that a sync held while `change` ran answered after the change began and within
/// [`PROMPT`] of its answer.
fn assert_woken(what: &str, began: Instant, changed: Instant, answered: Instant) {
    assert!(
        answered > began,
        "{what}: answered before the change, so it was not held"
    );
    assert!(
        answered.saturating_duration_since(changed) < PROMPT,
        "{what}: answered {:?} after the change's answer",
        answered.saturating_duration_since(changed)
    );
}

/// A server with a release and a deployment settled on it.
fn start_settled() -> (Api, String, Deployment) {
    let api = Api::start();
    let release = string(&api.create_release(&["local"]), "id");
    let deployment = settled(&api, &release);
    (api, release, deployment)
}

/// `POST /v1/deployments/{id}/delete` with `action`, as the admin.
fn delete(api: &Api, deployment: &Deployment, action: &str) -> Request {
    Request::post(
        format!("/v1/deployments/{}/delete", deployment.id),
        json!({"action": action}),
    )
    .auth(api.admin())
}

/// The answer to a sync of `deployment` reporting `report`, held while `change` was sent;
/// checks that the change woke it.
fn held_through(api: &Api, deployment: &Deployment, report: &Value, change: Request) -> Reply {
    let request = sync_request(deployment, Some(report), &Wait::Query("20"));
    std::thread::scope(|s| {
        let waiting = s.spawn(|| sync_at(api, &request));
        std::thread::sleep(SETTLE);
        let began = Instant::now();
        let answer = api.send(&change);
        assert!(
            (200..300).contains(&answer.status),
            "{change}: {}",
            answer.summary()
        );
        let changed = Instant::now();
        let (reply, answered) = waiting.join().expect("joined");
        assert_woken(&change.to_string(), began, changed, answered);
        reply
    })
}

#[test]
fn a_new_release_reaches_a_waiting_sync_at_once() {
    let (api, first, deployment) = start_settled();
    let report = running_on(&first);
    for wait in [Wait::Query("20"), Wait::Body(json!(20))] {
        let request = sync_request(&deployment, Some(&report), &wait);
        let (reply, answered, began, released, release) = std::thread::scope(|s| {
            let waiting = s.spawn(|| sync_at(&api, &request));
            std::thread::sleep(SETTLE);
            let began = Instant::now();
            let release = string(&api.create_release(&["local"]), "id");
            let released = Instant::now();
            let (reply, answered) = waiting.join().expect("joined");
            (reply, answered, began, released, release)
        });
        assert_eq!(reply.status, 200, "{wait:?}: {}", reply.summary());
        assert_woken(&format!("{wait:?}"), began, released, answered);
        let body = reply.json();
        assert_eq!(
            body["target"]["releaseInfo"]["releaseId"],
            release.as_str(),
            "{wait:?}: {body}"
        );
        assert_eq!(
            body["target"]["config"]["deploymentToken"],
            deployment.token.as_str()
        );
        // The agent reaches it, and the next sync has nothing new again.
        api.expect(
            &sync_request(&deployment, Some(&running_on(&release)), &Wait::None),
            200,
        );
    }
}

#[test]
fn a_sync_with_nothing_new_answers_as_at_once_when_its_wait_ends() {
    let (api, release, deployment) = start_settled();
    let report = running_on(&release);

    let started = Instant::now();
    let now = api.expect(&sync_request(&deployment, Some(&report), &Wait::None), 200);
    let immediate = started.elapsed();
    assert!(immediate < PROMPT, "no wait asked: {immediate:?}");
    let zero = api.expect(
        &sync_request(&deployment, Some(&report), &Wait::Query("0")),
        200,
    );
    assert_eq!(zero, now, "0 is no wait");

    for (wait, seconds) in [(Wait::Query("2"), 2), (Wait::Body(json!(1)), 1)] {
        let started = Instant::now();
        let held = api.expect(&sync_request(&deployment, Some(&report), &wait), 200);
        let took = started.elapsed();
        let asked = Duration::from_secs(seconds);
        assert!(took >= asked, "{wait:?}: answered after {took:?}");
        assert!(took < asked + PROMPT, "{wait:?}: answered after {took:?}");
        assert_eq!(held, now, "{wait:?}: the same answer as at once");
    }
    // A poll without a report is held too.
    let started = Instant::now();
    let held = api.expect(&sync_request(&deployment, None, &Wait::Query("1")), 200);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(held, now);
    assert_eq!(api.status_of(&deployment.id), "running");
}

/// The requests an operator makes of a deployment wake its waiting agent: a redeploy (whose
/// answer has nothing more in it), a retry, a cleanup and a forget.
#[test]
fn what_is_asked_of_a_deployment_wakes_its_waiting_sync() {
    let api = Api::start();
    let release = string(&api.create_release(&["local"]), "id");
    let report = running_on(&release);

    let deployment = settled(&api, &release);
    let reply = held_through(
        &api,
        &deployment,
        &report,
        Request::post_empty(format!("/v1/deployments/{}/redeploy", deployment.id))
            .auth(api.admin()),
    );
    assert_eq!(reply.status, 200, "{}", reply.summary());
    // A redeploy of the release the agent runs: the manager's record says so, and the
    // release comes again as the target; the agent's `running`, older than the request,
    // does not end it.
    let body = reply.json();
    assert_eq!(body["currentState"]["status"], "update-pending", "{body}");
    assert_eq!(
        body["target"]["releaseInfo"]["releaseId"],
        release.as_str(),
        "{body}"
    );
    assert_eq!(api.status_of(&deployment.id), "update-pending");
    let again = api.expect(&sync_request(&deployment, Some(&report), &Wait::None), 200);
    assert_eq!(again["currentState"]["status"], "update-pending", "{again}");
    let mut taken_up = running_on(&release);
    taken_up["status"] = json!("updating");
    api.expect(
        &sync_request(&deployment, Some(&taken_up), &Wait::None),
        200,
    );
    let done = api.expect(&sync_request(&deployment, Some(&report), &Wait::None), 200);
    assert_eq!(keys(&done), ["commandsUrl"], "{done}");
    assert_eq!(api.status_of(&deployment.id), "running");

    let deployment = settled(&api, &release);
    let reply = held_through(
        &api,
        &deployment,
        &report,
        delete(&api, &deployment, "cleanup"),
    );
    let body = reply.json();
    assert_eq!(body["currentState"]["status"], "delete-pending", "{body}");
    assert_eq!(
        body["target"]["releaseInfo"]["releaseId"],
        release.as_str(),
        "{body}"
    );

    // A failure on the release it has: nothing to do until a retry is asked for.
    let failed = settled(&api, &release);
    let mut failure = running_on(&release);
    failure["status"] = json!("provisioning-failed");
    let now = api.expect(&sync_request(&failed, Some(&failure), &Wait::None), 200);
    assert_eq!(keys(&now), ["commandsUrl"], "{now}");
    let reply = held_through(
        &api,
        &failed,
        &failure,
        Request::post_empty(format!("/v1/deployments/{}/retry", failed.id)).auth(api.admin()),
    );
    let body = reply.json();
    assert_eq!(body["currentState"]["retryRequested"], true, "{body}");

    let forgotten = settled(&api, &release);
    let reply = held_through(
        &api,
        &forgotten,
        &report,
        delete(&api, &forgotten, "forget"),
    );
    assert_eq!(reply.status, 404, "{}", reply.summary());
    assert_eq!(reply.code().as_deref(), Some("DEPLOYMENT_NOT_FOUND"));
}

/// A report that moves the deployment wakes its waiting agent too: a push client's
/// reconcile, and another agent's sync.
#[test]
fn a_report_that_moves_a_deployment_wakes_its_waiting_sync() {
    let api = Api::start();
    let release = string(&api.create_release(&["local"]), "id");
    let report = running_on(&release);
    let mut failed = running_on(&release);
    failed["status"] = json!("update-failed");

    let deployment = settled(&api, &release);
    let reconcile = Request::post(
        "/v1/sync/reconcile",
        json!({"deploymentId": deployment.id, "session": "push-client", "state": failed}),
    )
    .auth(api.admin());
    let reply = held_through(&api, &deployment, &report, reconcile);
    assert_eq!(reply.status, 200, "{}", reply.summary());
    assert_eq!(api.status_of(&deployment.id), "update-failed");

    let other = settled(&api, &release);
    let another_agent = sync_request(&other, Some(&failed), &Wait::None);
    let reply = held_through(&api, &other, &report, another_agent);
    assert_eq!(reply.status, 200, "{}", reply.summary());
    assert_eq!(api.status_of(&other.id), "update-failed");
}

#[test]
fn a_wait_that_is_not_whole_seconds_is_refused_before_the_report() {
    let (api, _, deployment) = start_settled();
    let report = state("provisioning", "local");
    let bad = [
        Wait::Query("soon"),
        Wait::Query("-1"),
        Wait::Query("1.5"),
        Wait::Query(""),
        Wait::Body(json!("10")),
        Wait::Body(json!(-1)),
        Wait::Body(json!(1.5)),
        Wait::Body(json!(true)),
    ];
    for wait in bad {
        let body = api.expect_error(
            &sync_request(&deployment, Some(&report), &wait),
            400,
            "BAD_REQUEST",
        );
        assert_eq!(
            body["message"], "waitSeconds must be a whole number of seconds up to 30",
            "{wait:?}: {body}"
        );
    }
    assert_eq!(
        api.status_of(&deployment.id),
        "running",
        "no refused report was applied"
    );
    // More than 30 is cut to 30, not refused.
    let request = sync_request(&deployment, None, &Wait::Query("3600"));
    let (reply, answered, changed) = std::thread::scope(|s| {
        let waiting = s.spawn(|| sync_at(&api, &request));
        std::thread::sleep(SETTLE);
        api.create_release(&["local"]);
        let changed = Instant::now();
        let (reply, answered) = waiting.join().expect("joined");
        (reply, answered, changed)
    });
    assert_eq!(reply.status, 200, "{}", reply.summary());
    assert!(answered.saturating_duration_since(changed) < PROMPT);
}

#[test]
fn fifty_waiting_agents_all_get_a_new_release_at_once() {
    const AGENTS: usize = 50;
    let api = Api::start();
    let first = string(&api.create_release(&["local"]), "id");
    let report = running_on(&first);
    let deployments: Vec<Deployment> = (0..AGENTS).map(|_| settled(&api, &first)).collect();
    let (replies, began, released, release) = std::thread::scope(|s| {
        let waiting: Vec<_> = deployments
            .iter()
            .map(|deployment| {
                let request = sync_request(deployment, Some(&report), &Wait::Query("20"));
                let api = &api;
                s.spawn(move || sync_at(api, &request))
            })
            .collect();
        // Fifty syncs, each a report written, on two shared cores.
        std::thread::sleep(Duration::from_secs(2));
        let began = Instant::now();
        let release = string(&api.create_release(&["local"]), "id");
        let released = Instant::now();
        let replies: Vec<(Reply, Instant)> = waiting
            .into_iter()
            .map(|waiting| waiting.join().expect("joined"))
            .collect();
        (replies, began, released, release)
    });
    let mut slowest = Duration::ZERO;
    for (n, (reply, answered)) in replies.iter().enumerate() {
        assert_eq!(reply.status, 200, "agent {n}: {}", reply.summary());
        assert_eq!(
            reply.json()["target"]["releaseInfo"]["releaseId"],
            release.as_str(),
            "agent {n}: {}",
            reply.summary()
        );
        assert_woken(&format!("agent {n}"), began, released, *answered);
        slowest = slowest.max(answered.saturating_duration_since(released));
    }
    eprintln!("{AGENTS} waiting agents: the last answered {slowest:?} after the release");
}

/// An orderly stop answers a waiting sync at once, with what it held, instead of keeping the
/// manager up until its share of the stop budget runs out.
#[test]
fn a_stop_answers_a_waiting_sync_at_once() {
    let (api, release, deployment) = start_settled();
    let request = sync_request(&deployment, Some(&running_on(&release)), &Wait::Query("30"));
    let (reply, answered, stopped) = std::thread::scope(|s| {
        let waiting = s.spawn(|| {
            let reply = api.try_send(&request);
            (reply, Instant::now())
        });
        std::thread::sleep(SETTLE);
        let stopped = Instant::now();
        api.server().sigterm();
        let (reply, answered) = waiting.join().expect("joined");
        (reply, answered, stopped)
    });
    let reply = reply.unwrap_or_else(|e| panic!("no answer to the waiting sync: {e}"));
    assert_eq!(reply.status, 200, "{}", reply.summary());
    assert_eq!(keys(&reply.json()), ["commandsUrl"], "{}", reply.summary());
    assert!(
        answered > stopped,
        "answered before the stop, so it was not held"
    );
    let took = answered.saturating_duration_since(stopped);
    assert!(
        took < Duration::from_secs(2),
        "answered {took:?} after the stop"
    );
    let left = api.server().wait_all_gone(Duration::from_secs(10));
    assert!(left.is_empty(), "still running: {left:?}");
}
