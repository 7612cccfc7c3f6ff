//! What the end-to-end tests of push deployments on `local` share: deployd's loops turned on
//! and fast, a release of one stack, a web container's stack, the URLs in a deployment's
//! stack state, and the test workloads a test leaves behind.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::api::{Api, Deployment, NewDeployment, Request};
use crate::procfs::{ProcInfo, live_processes};

/// How long a deployment has to reach a release.
const SETTLE: Duration = Duration::from_secs(90);

/// deployd's loops every second (deployments) and every two seconds (heartbeats).
pub const LOOPS: &str = "[server]\ndeployment-interval-secs = 1\nheartbeat-interval-secs = 2\n";

/// `POST /v1/releases` of `stack` for `local`; returns the release's id.
pub fn release(api: &Api, stack: Value) -> String {
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

/// A push deployment on `local` in a new group.
pub fn onboard(api: &Api) -> Deployment {
    let group = api.create_group();
    api.create_deployment(&group, NewDeployment::on("local"))
}

/// A stack of one container, `web`, running `image` with an HTTP endpoint on port 8080 and a
/// 5 s grace period.
pub fn web_stack(image: &str) -> Value {
    json!({
        "id": "web-app",
        "permissions": {"profiles": {"execution": {}}},
        "resources": {
            "web": {
                "config": {
                    "type": "container", "id": "web", "permissions": "execution",
                    "code": {"type": "image", "image": image},
                    "links": [],
                    "ports": [{"port": 8080}],
                    "publicEndpoints": [{"name": "default", "port": 8080, "protocol": "http"}],
                    "cpu": {"min": "0.1", "desired": "0.5"},
                    "memory": {"min": "64Mi", "desired": "128Mi"},
                    "stopGracePeriodSeconds": 5
                },
                "lifecycle": "live",
                "dependencies": []
            }
        }
    })
}

/// A stack of one command-enabled worker, `api`, running `image` (the test worker answers
/// `echo` with its params and version).
pub fn worker_stack(image: &str) -> Value {
    json!({
        "id": "worker-app",
        "permissions": {"profiles": {"execution": {}}},
        "resources": {
            "api": {
                "config": {
                    "type": "worker", "id": "api", "permissions": "execution",
                    "code": {"type": "image", "image": image},
                    "links": [], "triggers": [], "commandsEnabled": true
                },
                "lifecycle": "live",
                "dependencies": []
            }
        }
    })
}

/// A resource's outputs in the deployment's stack state.
pub fn outputs<'a>(deployment: &'a Value, resource: &str) -> &'a Value {
    &deployment["stackState"]["resources"][resource]["outputs"]
}

/// The URL a resource's outputs give for its default endpoint.
pub fn endpoint(deployment: &Value, resource: &str) -> String {
    outputs(deployment, resource)["publicEndpoints"]["default"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no URL for {resource}: {deployment:#}"))
        .to_owned()
}

/// How long a delete has to remove the deployment's row.
const DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `POST /v1/deployments/{id}/delete` (`cleanup`), then waits until the row is gone (the
/// push loop removes it once everything is torn down).
pub fn delete(api: &Api, id: &str) {
    request_delete(api, id);
    let gone = crate::wait_for(DELETE_TIMEOUT, || {
        let reply = api.send(&Request::get(format!("/v1/deployments/{id}")).auth(api.admin()));
        (reply.status == 404).then_some(())
    });
    assert!(
        gone.is_some(),
        "the deployment row is still there: {:#}",
        api.deployment(id)
    );
}

/// `POST /v1/deployments/{id}/delete` (`cleanup`), accepted.
pub fn request_delete(api: &Api, id: &str) {
    api.expect(
        &Request::post(
            format!("/v1/deployments/{id}/delete"),
            json!({"action": "cleanup"}),
        )
        .auth(api.admin()),
        202,
    );
}

/// One GET of `url` on a new connection: the status and the body, or `None` when nothing
/// answered within 5 s.
pub fn get(url: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .build()
        .into();
    let mut response = agent.get(url).call().ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

/// Waits until the deployment runs `release_id`; panics with its record otherwise.
pub fn wait_running(api: &Api, id: &str, release_id: &str) -> Value {
    let mut last = Value::Null;
    crate::wait_for(SETTLE, || {
        last = api.deployment(id);
        (last["status"] == "running" && last["currentReleaseId"] == release_id)
            .then(|| last.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "deployment {id} did not run {release_id}: {last:#}\nserver stderr:\n{}",
            api.server().stderr()
        )
    })
}

/// A version string no other test process uses, so its workloads can be told apart.
pub fn version(name: &str) -> String {
    format!("p{}-{name}", std::process::id())
}

/// The live processes of the workloads of `versions` and of the worker runtimes of
/// `data_dir`.
pub fn workloads(data_dir: &str, versions: &[String]) -> Vec<ProcInfo> {
    live_processes()
        .into_iter()
        .filter(|p| {
            versions.iter().any(|v| p.has_args(&["--version", v]))
                || (p.has_args(&["worker-runtime"]) && p.argv.iter().any(|a| a.contains(data_dir)))
        })
        .collect()
}

/// Kills, when the test ends early, the workloads it started: they outlive the server by
/// design, and a failed test never reaches its delete.
#[derive(Debug)]
pub struct Leftovers {
    data_dir: String,
    versions: Vec<String>,
}

impl Leftovers {
    pub fn of(api: &Api, versions: &[&String]) -> Leftovers {
        Leftovers {
            data_dir: api.server().data_dir().display().to_string(),
            versions: versions.iter().map(|v| (*v).clone()).collect(),
        }
    }
}

impl Leftovers {
    /// Deletes the deployment, waits until its row is gone, and checks that none of the
    /// workloads still runs.
    pub fn delete(&self, api: &Api, id: &str) {
        delete(api, id);
        let left = workloads(&self.data_dir, &self.versions);
        assert!(left.is_empty(), "workloads outlived the delete: {left:#?}");
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for process in workloads(&self.data_dir, &self.versions) {
            let _ = kill(Pid::from_raw(process.pid), Signal::SIGKILL);
        }
    }
}
