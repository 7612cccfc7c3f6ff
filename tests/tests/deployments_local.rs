//! Push deployments on the `local` platform, driven by deployd's loops through the public
//! API as a vendor drives them: release, onboard, watch the status, delete.

use std::time::Duration;

use e2e::api::{Api, Group, NewDeployment, Request};
use e2e::server::Options;
use e2e::wait_for;
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(60);

fn start() -> Api {
    Api::start_with(Options {
        deployment_loops: true,
        config: Some(
            "[server]\ndeployment-interval-secs = 1\nheartbeat-interval-secs = 2\n".into(),
        ),
        ..Options::default()
    })
}

/// A stack of a bucket the setup owns and a kv store the engine owns.
fn data_stack() -> Value {
    json!({
        "id": "data",
        "resources": {
            "files": {"config": {"type": "storage", "id": "files"}, "lifecycle": "frozen", "dependencies": []},
            "cache": {"config": {"type": "kv", "id": "cache"}, "lifecycle": "live", "dependencies": []}
        }
    })
}

fn release(api: &Api, stack: Value) -> String {
    let created = api.expect(
        &Request::post(
            "/v1/releases",
            json!({"projectId": "default", "stack": {"local": stack}}),
        )
        .auth(api.admin()),
        201,
    );
    created["id"].as_str().expect("release id").to_owned()
}

/// Waits until the deployment's status is `status`; panics with what it is otherwise.
fn wait_status(api: &Api, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    wait_for(SETTLE, || {
        last = api.deployment(id);
        (last["status"] == status).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("deployment {id} did not reach {status}: {last:#}"))
}

fn onboard(api: &Api) -> (Group, e2e::api::Deployment) {
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::on("local"));
    (group, deployment)
}

#[test]
fn a_data_stack_reaches_running_and_a_delete_removes_the_row_and_the_directory() {
    let api = start();
    let release_id = release(&api, data_stack());
    let (_group, deployment) = onboard(&api);
    let running = wait_status(&api, &deployment.id, "running");
    assert_eq!(
        running["currentReleaseId"],
        release_id.as_str(),
        "{running:#}"
    );
    let dir = api
        .server()
        .data_dir()
        .join("deployments")
        .join(&deployment.id);
    assert!(
        dir.join("storage/files").is_dir(),
        "no bucket directory under {}",
        dir.display()
    );
    assert!(
        dir.join("kv/cache").is_dir(),
        "no kv directory under {}",
        dir.display()
    );

    api.expect(
        &Request::post(
            format!("/v1/deployments/{}/delete", deployment.id),
            json!({"action": "cleanup"}),
        )
        .auth(api.admin()),
        202,
    );
    let gone = wait_for(SETTLE, || {
        let reply =
            api.send(&Request::get(format!("/v1/deployments/{}", deployment.id)).auth(api.admin()));
        (reply.status == 404).then_some(())
    });
    assert!(
        gone.is_some(),
        "the deployment row is still there: {:#}",
        api.deployment(&deployment.id)
    );
    assert!(!dir.exists(), "{} is left after the delete", dir.display());
}
