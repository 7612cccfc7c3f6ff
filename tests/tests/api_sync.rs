//! The deployment-loop coordination API (docs/compatibility.md, Deployment lifecycle): leases,
//! reconcile persistence and the agent's pull sync, including the two races the rules exclude:
//! two agents both winning a lease, and a reconcile overwriting a pending delete.

use std::sync::Barrier;

use e2e::api::{
    Api, Deployment, NewDeployment, Request, STATUSES, acquired_ids, stack, state, string, unique,
};
use serde_json::{Value, json};

const WORK: [&str; 7] = [
    "pending",
    "initial-setup",
    "provisioning",
    "updating",
    "deleting",
    "update-pending",
    "delete-pending",
];
const FAILED: [&str; 6] = [
    "preflights-failed",
    "initial-setup-failed",
    "provisioning-failed",
    "refresh-failed",
    "update-failed",
    "delete-failed",
];
const TEARDOWN: [&str; 2] = ["teardown-required", "teardown-failed"];
const DELETING: [&str; 3] = ["delete-pending", "deleting", "delete-failed"];
const DELETE_REPORTS: [&str; 6] = [
    "delete-pending",
    "deleting",
    "delete-failed",
    "teardown-required",
    "teardown-failed",
    "deleted",
];

fn acquire_body(session: &str, ids: &[&str]) -> Value {
    json!({"session": session, "deploymentModel": "pull", "deploymentIds": ids})
}

fn lease(deployment: &Deployment, session: &str) -> Value {
    json!({"deploymentId": deployment.id, "session": session})
}

fn reconcile_body(deployment: &Deployment, session: &str, state: Value) -> Value {
    json!({"deploymentId": deployment.id, "session": session, "state": state})
}

// ---- acquire, renew, release ----

#[test]
fn a_lease_is_exclusive_until_released_by_its_owner() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let acquire = |session: &str| {
        let reply = api.expect(
            &Request::post("/v1/sync/acquire", acquire_body(session, &[&deployment.id]))
                .auth(api.admin()),
            200,
        );
        acquired_ids(&reply)
    };
    assert_eq!(acquire("one"), [deployment.id.as_str()]);
    assert!(acquire("two").is_empty(), "held by another session");
    assert!(acquire("one").is_empty(), "a held lock is not re-acquired");
    // Release by another session is a no-op that still answers success.
    let released = api.expect(
        &Request::post("/v1/sync/release", lease(&deployment, "two")).auth(api.admin()),
        200,
    );
    assert_eq!(released, json!({"success": true}));
    assert!(acquire("two").is_empty(), "still held by `one`");
    api.expect(
        &Request::post("/v1/sync/release", lease(&deployment, "one")).auth(api.admin()),
        200,
    );
    assert_eq!(acquire("two"), [deployment.id.as_str()]);
}

#[test]
fn only_the_owner_renews_a_lease() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let renew = |session: &str| {
        Request::post("/v1/sync/renew", lease(&deployment, session)).bearer(&deployment.token)
    };
    // Nobody holds it yet.
    api.expect_error(&renew("one"), 409, "DEPLOYMENT_LOCKED");
    assert_eq!(
        api.acquire("one", &deployment, "pull"),
        [deployment.id.as_str()]
    );
    assert_eq!(api.expect(&renew("one"), 200), json!({"success": true}));
    let body = api.expect_error(&renew("two"), 409, "DEPLOYMENT_LOCKED");
    assert_eq!(body["retryable"], false, "{body}");
    assert_eq!(
        body["context"]["deployment_id"],
        deployment.id.as_str(),
        "{body}"
    );
    assert_eq!(
        body["message"],
        format!("Deployment '{}' is locked", deployment.id)
    );
    api.expect(
        &Request::post("/v1/sync/release", lease(&deployment, "one")).auth(api.admin()),
        200,
    );
    api.expect_error(&renew("one"), 409, "DEPLOYMENT_LOCKED");
}

#[test]
fn renew_and_release_of_an_unknown_deployment_are_404() {
    let api = Api::start();
    for path in ["/v1/sync/renew", "/v1/sync/release"] {
        api.expect_error(
            &Request::post(path, json!({"deploymentId": "dep_nope", "session": "s"}))
                .auth(api.admin()),
            404,
            "DEPLOYMENT_NOT_FOUND",
        );
    }
}

#[test]
fn the_acquired_record_has_the_wire_shape_without_the_token() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let reply = api.send(
        &Request::post("/v1/sync/acquire", acquire_body("s-123", &[&deployment.id]))
            .bearer(&group.token),
    );
    assert_eq!(reply.status, 200, "{}", reply.summary());
    assert!(
        !reply.body.contains(&deployment.token),
        "the deployment token leaked: {}",
        reply.body
    );
    let body = reply.json();
    let record = &body["deployments"][0]["deployment"];
    for (key, want) in [
        ("id", json!(deployment.id)),
        ("workspaceId", json!("default")),
        ("projectId", json!("default")),
        ("name", json!(deployment.name)),
        ("deploymentGroupId", json!(group.id)),
        ("platform", json!("local")),
        ("status", json!("pending")),
        ("deploymentProtocolVersion", json!(1)),
        ("retryRequested", json!(false)),
        ("lockedBy", json!("s-123")),
        ("inputValues", json!({})),
        ("currentReleaseId", Value::Null),
        ("desiredReleaseId", Value::Null),
        ("stackState", Value::Null),
        ("error", Value::Null),
    ] {
        assert_eq!(record.get(key), Some(&want), "{key}: {record}");
    }
    assert!(record["lockedAt"].is_string(), "{record}");
    assert!(record["createdAt"].is_string(), "{record}");
    assert_eq!(
        record["stackSettings"]["deploymentModel"], "pull",
        "{record}"
    );
}

/// Which deployments an acquire takes, status by status, without and with an explicit status
/// filter and with and without a retry request.
#[test]
fn acquire_selects_by_status_and_retry_flag() {
    let api = Api::start();
    let group = api.create_group();
    let mut wrong = Vec::new();
    for status in STATUSES {
        for retry in [false, true] {
            if retry && !FAILED.contains(&status) {
                continue;
            }
            for explicit in [false, true] {
                let deployment = api.create_deployment(&group, NewDeployment::pull());
                api.set_status(&deployment, status);
                if retry {
                    api.expect(
                        &Request::post_empty(format!("/v1/deployments/{}/retry", deployment.id))
                            .auth(api.admin()),
                        200,
                    );
                }
                let mut body = acquire_body(&unique("s"), &[&deployment.id]);
                if explicit {
                    body["statuses"] = json!([status]);
                }
                let reply = api.expect(
                    &Request::post("/v1/sync/acquire", body).auth(api.admin()),
                    200,
                );
                let got = !acquired_ids(&reply).is_empty();
                let want = WORK.contains(&status)
                    || (FAILED.contains(&status) && retry)
                    || (explicit && (TEARDOWN.contains(&status) || status == "running"));
                if got != want {
                    wrong.push(format!(
                        "{status} (retry requested: {retry}, statuses: {}): acquired {got}, want {want}",
                        if explicit { "[it]" } else { "none" }
                    ));
                }
                if got {
                    let record = &reply["deployments"][0]["deployment"];
                    if record["retryRequested"] != retry {
                        wrong.push(format!(
                            "{status}: acquired record shows retryRequested {}, want the value before acquiring ({retry})",
                            record["retryRequested"]
                        ));
                    }
                    let after = api.deployment(&deployment.id);
                    if after["retryRequested"] != false {
                        wrong.push(format!(
                            "{status}: acquiring did not consume the retry flag"
                        ));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn acquire_filters_by_model_platform_and_limit() {
    let api = Api::start();
    let group = api.create_group();
    let pull = api.create_deployment(&group, NewDeployment::pull());
    let kubernetes = api.create_deployment(&group, NewDeployment::on("kubernetes"));
    let acquire = |body: Value| {
        let reply = api.expect(
            &Request::post("/v1/sync/acquire", body).auth(api.admin()),
            200,
        );
        acquired_ids(&reply)
    };
    let both = [pull.id.as_str(), kubernetes.id.as_str()];
    let push = json!({"session": unique("s"), "deploymentModel": "push", "deploymentIds": both});
    assert!(acquire(push).is_empty(), "pull deployments are not push");
    let aws = json!({"session": unique("s"), "deploymentModel": "pull", "deploymentIds": both, "platforms": ["aws"]});
    assert!(acquire(aws).is_empty());
    let kube = json!({"session": unique("s"), "deploymentModel": "pull", "deploymentIds": both, "platforms": ["kubernetes"]});
    assert_eq!(acquire(kube), [kubernetes.id.as_str()]);
    let extra: Vec<Deployment> = (0..3)
        .map(|_| api.create_deployment(&group, NewDeployment::pull()))
        .collect();
    let limited = json!({"session": unique("s"), "deploymentModel": "pull", "limit": 2});
    let got = acquire(limited);
    assert_eq!(got.len(), 2, "{got:?}");
    let rest = json!({"session": unique("s"), "deploymentModel": "pull"});
    let got_rest = acquire(rest);
    let mut all: Vec<String> = got.into_iter().chain(got_rest).collect();
    all.sort();
    let mut want: Vec<String> = extra
        .iter()
        .map(|d| d.id.clone())
        .chain([pull.id.clone()])
        .collect();
    want.sort();
    assert_eq!(all, want, "everything pull and free, once");
}

#[test]
fn acquire_modes_are_checked_and_unknown_ids_are_404() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    for mode in ["runtime", "setup-run", "setup-teardown"] {
        let mut body = acquire_body(&unique("s"), &[&deployment.id]);
        body["acquireMode"] = json!(mode);
        body["setupMethod"] = json!("cli");
        api.expect(
            &Request::post("/v1/sync/acquire", body).auth(api.admin()),
            200,
        );
    }
    let mut body = acquire_body(&unique("s"), &[&deployment.id]);
    body["acquireMode"] = json!("bogus");
    let refused = api.expect_error(
        &Request::post("/v1/sync/acquire", body).auth(api.admin()),
        400,
        "BAD_REQUEST",
    );
    assert_eq!(refused["message"], "Invalid acquireMode: bogus");
    for auth_token in [api.admin_token().to_owned(), group.token.clone()] {
        api.expect_error(
            &Request::post(
                "/v1/sync/acquire",
                acquire_body("s", &[&deployment.id, "dep_nope"]),
            )
            .bearer(&auth_token),
            404,
            "DEPLOYMENT_NOT_FOUND",
        );
    }
}

/// A deployment that asked for a delay (`suggestedDelayMs`) is not offered before it is due.
#[test]
fn a_suggested_delay_postpones_the_next_acquire() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let mut body = reconcile_body(&deployment, "agent", state("provisioning", "local"));
    body["suggestedDelayMs"] = json!(600_000);
    api.expect(
        &Request::post("/v1/sync/reconcile", body).auth(api.admin()),
        200,
    );
    assert!(
        api.acquire(&unique("s"), &deployment, "pull").is_empty(),
        "not due yet"
    );
    // A report without a delay clears the schedule.
    api.expect(
        &Request::post(
            "/v1/sync/reconcile",
            reconcile_body(&deployment, "agent", state("provisioning", "local")),
        )
        .auth(api.admin()),
        200,
    );
    assert_eq!(
        api.acquire(&unique("s"), &deployment, "pull"),
        [deployment.id.as_str()]
    );
}

// ---- reconcile ----

#[test]
fn reconcile_checks_the_deployment_then_the_state() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let missing =
        json!({"deploymentId": "dep_nope", "session": "s", "state": state("running", "local")});
    api.expect_error(
        &Request::post("/v1/sync/reconcile", missing).auth(api.admin()),
        404,
        "DEPLOYMENT_NOT_FOUND",
    );
    for bad in [
        json!({"status": "running", "platform": "local"}),
        json!({"status": "running", "protocolVersion": 1}),
        json!({"platform": "local", "protocolVersion": 1}),
        json!({"status": "sleeping", "platform": "local", "protocolVersion": 1}),
        json!("running"),
    ] {
        let body = api.expect_error(
            &Request::post(
                "/v1/sync/reconcile",
                reconcile_body(&deployment, "s", bad.clone()),
            )
            .auth(api.admin()),
            400,
            "BAD_REQUEST",
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("Invalid deployment state"),
            "{bad}: {body}"
        );
    }
    assert_eq!(api.status_of(&deployment.id), "pending");
}

/// A report that names a current release the manager does not have is refused, by reconcile
/// and by the agent sync alike, whoever sends it, and writes nothing.
#[test]
fn a_report_naming_a_release_that_does_not_exist_is_refused() {
    let api = Api::start();
    let group = api.create_group();
    let release = string(&api.create_release(&["local"]), "id");
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let mut running = state("running", "local");
    running["currentRelease"] = json!({"releaseId": release, "stack": stack()});
    api.reconcile_as("agent", &deployment, running);
    let mut forged = state("updating", "local");
    forged["currentRelease"] = json!({"releaseId": "rel_doesnotexist", "stack": stack()});
    let admin = api.admin_token().to_owned();
    let refused = |body: Value| {
        assert_eq!(body["message"], "Release 'rel_doesnotexist' does not exist");
        assert_eq!(body["context"], json!({"release_id": "rel_doesnotexist"}));
    };
    for (path, body, token) in [
        (
            "/v1/sync/reconcile",
            reconcile_body(&deployment, "s", forged.clone()),
            &deployment.token,
        ),
        (
            "/v1/sync/reconcile",
            reconcile_body(&deployment, "s", forged.clone()),
            &group.token,
        ),
        (
            "/v1/sync/reconcile",
            reconcile_body(&deployment, "s", forged.clone()),
            &admin,
        ),
        (
            "/v1/sync",
            json!({"deploymentId": deployment.id, "currentState": forged}),
            &deployment.token,
        ),
    ] {
        refused(api.expect_error(
            &Request::post(path, body).bearer(token),
            400,
            "UNKNOWN_RELEASE",
        ));
    }
    let record = api.deployment(&deployment.id);
    assert_eq!(record["status"], "running", "{record}");
    assert_eq!(record["currentReleaseId"], release.as_str(), "{record}");
}

#[test]
fn reconcile_persists_the_reported_state() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let release = string(&api.create_release(&["local"]), "id");
    let stack_state = json!({"platform": "local", "resourcePrefix": "acme", "resources": {}});
    let mut report = state("running", "local");
    report["stackState"] = stack_state.clone();
    report["environmentInfo"] = json!({"platform": "local", "hostname": "box"});
    report["runtimeMetadata"] = json!({"note": 1});
    report["currentRelease"] = json!({"releaseId": release, "stack": stack()});
    let mut body = reconcile_body(&deployment, "agent", report);
    body["updateHeartbeat"] = json!(true);
    body["resourceHeartbeats"] = json!([]);
    body["capabilities"] = json!([]);
    body["operatorVersion"] = json!("1.2.3");
    let reply = api.expect(
        &Request::post("/v1/sync/reconcile", body).auth(api.admin()),
        200,
    );
    assert_eq!(reply["success"], true, "{reply}");
    assert_eq!(reply["current"]["status"], "running", "{reply}");
    assert_eq!(reply["current"]["protocolVersion"], 1, "{reply}");
    assert!(
        reply.get("nativeImageHost").is_none(),
        "local has none: {reply}"
    );
    let got = api.deployment(&deployment.id);
    assert_eq!(got["status"], "running");
    assert_eq!(got["stackState"], stack_state);
    assert_eq!(
        got["environmentInfo"],
        json!({"platform": "local", "hostname": "box"})
    );
    assert_eq!(got["runtimeMetadata"], json!({"note": 1}));
    assert_eq!(got["currentReleaseId"], release.as_str());
    assert!(
        got.get("desiredReleaseId").is_none(),
        "reached, so cleared: {got}"
    );
    // Absent parts are cleared, not kept.
    api.set_status(&deployment, "running");
    let got = api.deployment(&deployment.id);
    for key in [
        "stackState",
        "environmentInfo",
        "runtimeMetadata",
        "currentReleaseId",
    ] {
        assert!(got.get(key).is_none(), "{key}: {got}");
    }
}

#[test]
fn reconcile_injects_the_desired_release_as_target() {
    let api = Api::start();
    let group = api.create_group();
    let release = string(&api.create_release(&["local", "aws"]), "id");
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let current = api.reconcile_as("agent", &deployment, state("pending", "local"));
    assert_eq!(
        current["targetRelease"]["releaseId"],
        release.as_str(),
        "{current}"
    );
    assert_eq!(
        current["targetRelease"]["stack"]["id"], "my-app",
        "{current}"
    );
    // A target the agent names is kept.
    let mut report = state("pending", "local");
    report["targetRelease"] = json!({"releaseId": "rel_other", "stack": stack()});
    let current = api.reconcile_as("agent", &deployment, report);
    assert_eq!(
        current["targetRelease"]["releaseId"], "rel_other",
        "{current}"
    );
}

#[test]
fn reconcile_records_the_headline_error() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let error =
        json!({"code": "BOOM", "message": "it broke", "retryable": false, "internal": false});
    let mut report = state("update-failed", "local");
    report["error"] = error.clone();
    api.reconcile_as("agent", &deployment, report);
    let got = api.deployment(&deployment.id);
    assert_eq!(got["error"]["code"], "BOOM", "{got}");
    assert_eq!(got["error"]["message"], "it broke", "{got}");
    api.set_status(&deployment, "running");
    assert!(api.deployment(&deployment.id).get("error").is_none());
}

/// A retry request survives a report of the same failure that does not carry it, and is
/// dropped once the report moves on.
#[test]
fn reconcile_keeps_a_pending_retry_request() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    api.set_status(&deployment, "update-failed");
    api.expect(
        &Request::post_empty(format!("/v1/deployments/{}/retry", deployment.id)).auth(api.admin()),
        200,
    );
    api.set_status(&deployment, "update-failed");
    assert_eq!(api.deployment(&deployment.id)["retryRequested"], true);
    api.set_status(&deployment, "updating");
    assert_eq!(api.deployment(&deployment.id)["retryRequested"], false);
    let mut report = state("running", "local");
    report["retryRequested"] = json!(true);
    api.reconcile_as("agent", &deployment, report);
    assert_eq!(api.deployment(&deployment.id)["retryRequested"], true);
}

#[test]
fn reconcile_preserves_recorded_gate_answers() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let mut report = state("running", "local");
    report["runtimeMetadata"] = json!({"persistedGateAnswers": {"telemetry": true}});
    api.reconcile_as("agent", &deployment, report);
    let mut report = state("running", "local");
    report["runtimeMetadata"] = json!({"persistedGateAnswers": {"telemetry": false, "other": 1}});
    let current = api.reconcile_as("agent", &deployment, report);
    assert_eq!(
        current["runtimeMetadata"]["persistedGateAnswers"],
        json!({"telemetry": true, "other": 1}),
        "the record wins: {current}"
    );
    let current = api.reconcile_as("agent", &deployment, state("running", "local"));
    assert_eq!(
        current["runtimeMetadata"]["persistedGateAnswers"]["telemetry"], true,
        "missing answers are restored: {current}"
    );
}

/// A report writes its status unless a deletion is under way and the report does not move it
/// on: every pair of (recorded status while deleting, reported status).
#[test]
fn a_reconcile_never_overwrites_a_pending_delete() {
    let api = Api::start();
    let group = api.create_group();
    let mut wrong = Vec::new();
    for recorded in DELETING {
        for reported in STATUSES {
            let deployment = api.create_deployment(&group, NewDeployment::pull());
            api.set_status(&deployment, recorded);
            let current = api.reconcile_as(&unique("agent"), &deployment, state(reported, "local"));
            let want = if DELETE_REPORTS.contains(&reported) {
                reported
            } else {
                recorded
            };
            let stored = api.status_of(&deployment.id);
            if stored != want || current["status"] != want {
                wrong.push(format!(
                    "{recorded} then report {reported}: stored {stored}, answered {}, want {want}",
                    current["status"]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Reconcile is not gated on the lease (pull agents write without one).
#[test]
fn reconcile_does_not_need_the_lease() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    assert_eq!(
        api.acquire("owner", &deployment, "pull"),
        [deployment.id.as_str()]
    );
    api.expect(
        &Request::post(
            "/v1/sync/reconcile",
            reconcile_body(&deployment, "someone-else", state("provisioning", "local")),
        )
        .bearer(&deployment.token),
        200,
    );
    assert_eq!(api.status_of(&deployment.id), "provisioning");
    // The lease itself is untouched.
    assert!(api.acquire("third", &deployment, "pull").is_empty());
}

// ---- the agent's pull sync ----

fn sync(api: &Api, deployment: &Deployment, current: Option<Value>) -> Value {
    let mut body = json!({"deploymentId": deployment.id});
    if let Some(state) = current {
        body["currentState"] = state;
    }
    api.expect(
        &Request::post("/v1/sync", body).bearer(&deployment.token),
        200,
    )
}

#[test]
fn sync_hands_the_agent_its_target() {
    let api = Api::start();
    let group = api.create_group();
    let release = string(&api.create_release(&["local"]), "id");
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let base_url = format!("http://localhost:{}", api.server().port());
    let reply = sync(&api, &deployment, None);
    assert_eq!(reply["commandsUrl"], format!("{base_url}/v1"), "{reply}");
    assert!(
        reply.get("currentState").is_none(),
        "nothing to correct: {reply}"
    );
    let target = &reply["target"];
    assert_eq!(
        target["releaseInfo"]["releaseId"],
        release.as_str(),
        "{reply}"
    );
    assert_eq!(target["releaseInfo"]["stack"]["id"], "my-app");
    let config = &target["config"];
    assert_eq!(
        config["deploymentName"],
        deployment.name.as_str(),
        "{config}"
    );
    assert_eq!(config["managerUrl"], base_url.as_str(), "{config}");
    assert_eq!(
        config["deploymentToken"],
        deployment.token.as_str(),
        "the caller's bearer"
    );
    assert_eq!(
        config["environmentVariables"],
        json!({"variables": [], "hash": "", "createdAt": ""}),
        "{config}"
    );
    assert_eq!(config["externalBindings"], json!({}), "{config}");
    assert_eq!(
        config["stackSettings"]["deploymentModel"], "pull",
        "{config}"
    );

    // Reaching the release ends the target.
    let mut running = state("running", "local");
    running["currentRelease"] = json!({"releaseId": release, "stack": stack()});
    let reply = sync(&api, &deployment, Some(running));
    assert!(reply.get("target").is_none(), "up to date: {reply}");
    let got = api.deployment(&deployment.id);
    assert_eq!(got["status"], "running");
    assert_eq!(got["currentReleaseId"], release.as_str());
}

#[test]
fn sync_without_a_release_has_no_target() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let reply = sync(&api, &deployment, Some(state("provisioning", "local")));
    assert!(reply.get("target").is_none(), "{reply}");
    assert_eq!(
        api.status_of(&deployment.id),
        "provisioning",
        "the report is applied"
    );
    api.expect_error(
        &Request::post("/v1/sync", json!({"deploymentId": "dep_nope"})).auth(api.admin()),
        404,
        "DEPLOYMENT_NOT_FOUND",
    );
}

/// `/v1/sync`: a stale report while deleting, and a blank report over an authoritative record,
/// are ignored and answered with the record's state.
#[test]
fn sync_ignores_stale_and_blank_reports() {
    let api = Api::start();
    let group = api.create_group();
    let release = string(&api.create_release(&["local"]), "id");

    let deleting = api.create_deployment(&group, NewDeployment::pull());
    let mut running = state("running", "local");
    running["currentRelease"] = json!({"releaseId": release, "stack": stack()});
    sync(&api, &deleting, Some(running.clone()));
    api.expect(
        &Request::post(
            format!("/v1/deployments/{}/delete", deleting.id),
            json!({"action": "cleanup"}),
        )
        .auth(api.admin()),
        202,
    );
    let reply = sync(&api, &deleting, Some(running.clone()));
    assert_eq!(api.status_of(&deleting.id), "delete-pending");
    assert_eq!(reply["currentState"]["status"], "delete-pending", "{reply}");
    assert_eq!(
        reply["target"]["releaseInfo"]["releaseId"],
        release.as_str(),
        "deleting falls back to the current release: {reply}"
    );
    let reply = sync(&api, &deleting, Some(state("deleting", "local")));
    assert_eq!(
        api.status_of(&deleting.id),
        "deleting",
        "delete progress is applied"
    );
    assert_eq!(reply["currentState"]["status"], "deleting", "{reply}");

    let authoritative = api.create_deployment(&group, NewDeployment::pull());
    sync(&api, &authoritative, Some(running));
    let reply = sync(&api, &authoritative, Some(state("pending", "local")));
    assert_eq!(
        api.status_of(&authoritative.id),
        "running",
        "blank report ignored"
    );
    assert_eq!(reply["currentState"]["status"], "running", "{reply}");
    assert_eq!(
        reply["currentState"]["currentRelease"]["releaseId"],
        release.as_str(),
        "{reply}"
    );
}

#[test]
fn sync_shows_a_retry_request_to_the_agent() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    sync(
        &api,
        &deployment,
        Some(state("provisioning-failed", "local")),
    );
    api.expect(
        &Request::post_empty(format!("/v1/deployments/{}/retry", deployment.id))
            .bearer(&deployment.token),
        200,
    );
    let reply = sync(&api, &deployment, None);
    assert_eq!(reply["currentState"]["retryRequested"], true, "{reply}");
    assert_eq!(
        reply["currentState"]["status"], "provisioning-failed",
        "{reply}"
    );
}

// ---- races ----

/// Two (here: many) agents racing for the same deployment: exactly one wins, every round.
#[test]
fn racing_agents_never_both_win_a_lease() {
    const AGENTS: usize = 8;
    const ROUNDS: usize = 15;
    let api = Api::start();
    let group = api.create_group();
    for round in 0..ROUNDS {
        let deployment = api.create_deployment(&group, NewDeployment::pull());
        let start = Barrier::new(AGENTS);
        let winners: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..AGENTS)
                .map(|agent| {
                    let (api, start, deployment) = (&api, &start, &deployment);
                    scope.spawn(move || {
                        let session = format!("agent-{round}-{agent}");
                        let request = Request::post(
                            "/v1/sync/acquire",
                            acquire_body(&session, &[&deployment.id]),
                        )
                        .bearer(&deployment.token);
                        start.wait();
                        let reply = api.expect(&request, 200);
                        (!acquired_ids(&reply).is_empty()).then_some(session)
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().expect("agent thread"))
                .collect()
        });
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        // The winner holds it: only its session renews.
        let renew = |session: &str| {
            api.send(
                &Request::post("/v1/sync/renew", lease(&deployment, session)).auth(api.admin()),
            )
            .status
        };
        assert_eq!(renew(&winners[0]), 200, "round {round}");
        assert_eq!(renew(&format!("agent-{round}-loser")), 409, "round {round}");
    }
}

/// Agents reporting progress while an operator deletes: once the delete is accepted, no
/// report in flight may bring the deployment back to a non-delete status.
#[test]
fn racing_reports_never_overwrite_a_pending_delete() {
    const REPORTERS: usize = 4;
    const REPORTS: usize = 25;
    const ROUNDS: usize = 6;
    let api = Api::start();
    let group = api.create_group();
    for round in 0..ROUNDS {
        let deployment = api.create_deployment(&group, NewDeployment::pull());
        api.set_status(&deployment, "running");
        let start = Barrier::new(REPORTERS + 1);
        std::thread::scope(|scope| {
            for reporter in 0..REPORTERS {
                let (api, start, deployment) = (&api, &start, &deployment);
                scope.spawn(move || {
                    let status = ["running", "updating"][reporter % 2];
                    let request = Request::post(
                        "/v1/sync/reconcile",
                        reconcile_body(
                            deployment,
                            &format!("agent-{reporter}"),
                            state(status, "local"),
                        ),
                    )
                    .bearer(&deployment.token);
                    start.wait();
                    for _ in 0..REPORTS {
                        api.expect(&request, 200);
                    }
                });
            }
            let (api, start, deployment) = (&api, &start, &deployment);
            scope.spawn(move || {
                start.wait();
                std::thread::sleep(std::time::Duration::from_millis(5 * round as u64));
                api.expect(
                    &Request::post(
                        format!("/v1/deployments/{}/delete", deployment.id),
                        json!({"action": "cleanup"}),
                    )
                    .auth(api.admin()),
                    202,
                );
            });
        });
        assert_eq!(
            api.status_of(&deployment.id),
            "delete-pending",
            "round {round}"
        );
    }
}
