//! Push delivery to a local Worker (docs/compatibility.md, Commands) takes its push target only
//! from what the manager itself knows of the deployment's runtime, never from a state a client
//! wrote: a crafted `commandsPushTarget` makes no daemon connect anywhere, and the command
//! fails as one whose worker has no push target. How commandd delivers a push (202, 4xx, 5xx,
//! an unreachable target) is tested in commandd's own tests, with a real listener.

use std::time::Duration;

use e2e::api::{Api, NewDeployment, Request, string};
use e2e::commands::{ConnectionTrap, Target, create_body};
use serde_json::{Value, json};

fn worker_state(push_target: &str) -> Value {
    json!({"platform": "local", "resourcePrefix": "p", "resources": {"api": {
        "type": "worker", "status": "running", "config": {"id": "api"},
        "outputs": {"commandsPushTarget": push_target},
    }}})
}

/// A command to the deployment's worker fails at once as undeliverable.
fn assert_undeliverable(api: &Api, target: &Target, how: &str) {
    let created = api.expect(
        &Request::post("/v1/commands", create_body(target, json!({}))).auth(api.admin()),
        200,
    );
    assert_eq!(created["state"], "FAILED", "{how}: {created}");
    let status = api.expect(
        &Request::get(format!("/v1/commands/{}", string(&created, "commandId"))).auth(api.admin()),
        200,
    );
    assert_eq!(
        status["response"],
        json!({"status": "error", "code": "DELIVERY_FAILED", "message": "Worker runtime did not accept command delivery"}),
        "{how}"
    );
}

#[test]
fn a_reported_push_target_makes_no_daemon_connect_anywhere() {
    let api = Api::start();
    let trap = ConnectionTrap::start();
    let stack_state = worker_state(&trap.url);
    // The fixture reports the state as the admin.
    let target = Target::with_state(
        &api,
        NewDeployment::on("local"),
        &[("api", "worker", true)],
        "running",
        Some(stack_state.clone()),
    );
    assert_undeliverable(&api, &target, "reconcile, admin");
    let (id, state) = (&target.deployment.id, &target.state);
    let reports = [
        (
            "reconcile, deployment token",
            Request::post(
                "/v1/sync/reconcile",
                json!({"deploymentId": id, "session": "s", "state": state}),
            )
            .bearer(&target.deployment.token),
        ),
        (
            "reconcile, deployment-group token",
            Request::post(
                "/v1/sync/reconcile",
                json!({"deploymentId": id, "session": "s", "state": state}),
            )
            .bearer(&target.group.token),
        ),
        (
            "agent sync, deployment token",
            Request::post(
                "/v1/sync",
                json!({"deploymentId": id, "currentState": state}),
            )
            .bearer(&target.deployment.token),
        ),
    ];
    for (how, report) in reports {
        api.expect(&report, 200);
        // The state is the client's to keep and read back, as before.
        let record = api.deployment(id);
        assert_eq!(record["stackState"], stack_state, "{how}: {record}");
        assert_eq!(record["status"], "running", "{how}: {record}");
        assert_undeliverable(&api, &target, how);
    }
    assert_eq!(
        trap.connections_within(Duration::from_secs(2)),
        0,
        "something connected to the push target a client reported"
    );
}
