//! Push deployments on the `local` platform, driven by deployd's loops through the public
//! API as a vendor drives them: release, onboard, watch the status, delete.

use std::time::Duration;

use e2e::api::{Api, Request};
use e2e::deployments::{LOOPS, endpoint, get, onboard, release, web_stack};
use e2e::server::Options;
use e2e::wait_for;
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(60);

fn start() -> Api {
    Api::start_with(Options {
        deployment_loops: true,
        config: Some(LOOPS.into()),
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

/// Waits until the deployment's status is `status`; panics with what it is otherwise.
fn wait_status(api: &Api, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    wait_for(SETTLE, || {
        last = api.deployment(id);
        (last["status"] == status).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("deployment {id} did not reach {status}: {last:#}"))
}

#[test]
fn a_data_stack_reaches_running_and_a_delete_removes_the_row_and_the_directory() {
    let api = start();
    let release_id = release(&api, data_stack());
    let deployment = onboard(&api);
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

#[test]
fn a_container_is_served_at_a_stable_address_across_an_update() {
    let api = start();
    let v1 = e2e::workloads::push(&api, "alien-test-web", "v1", &[]);
    release(&api, web_stack(&v1));
    let deployment = onboard(&api);
    let running = wait_status(&api, &deployment.id, "running");
    let url = endpoint(&running, "web");
    assert_eq!(get(&url), Some((200, "v1".to_owned())), "{url}");

    let v2 = e2e::workloads::push(&api, "alien-test-web", "v2", &[]);
    let second = release(&api, web_stack(&v2));
    let updated = wait_for(SETTLE, || {
        let record = api.deployment(&deployment.id);
        (record["status"] == "running" && record["currentReleaseId"] == second.as_str())
            .then_some(record)
    })
    .unwrap_or_else(|| {
        panic!(
            "no update to {second}: {:#}",
            api.deployment(&deployment.id)
        )
    });
    assert_eq!(endpoint(&updated, "web"), url, "the address changed");
    assert_eq!(get(&url), Some((200, "v2".to_owned())), "{url}");
}

/// Ours: a worker whose image never speaks the runtime protocol but listens on `PORT` is
/// served at its stable address like one that registers.
#[test]
fn a_worker_image_that_only_listens_on_port_is_served() {
    let api = start();
    let image = e2e::workloads::push(&api, "alien-test-web", "plain-worker", &[]);
    release(
        &api,
        json!({
            "id": "plain",
            "permissions": {"profiles": {"execution": {}}},
            "resources": {
                "api": {
                    "config": {
                        "type": "worker", "id": "api", "permissions": "execution",
                        "code": {"type": "image", "image": image},
                        "links": [], "triggers": []
                    },
                    "lifecycle": "live",
                    "dependencies": []
                }
            }
        }),
    );
    let deployment = onboard(&api);
    let running = wait_status(&api, &deployment.id, "running");
    let url = endpoint(&running, "api");
    assert_eq!(get(&url), Some((200, "plain-worker".to_owned())), "{url}");
    e2e::deployments::delete(&api, &deployment.id);
}
