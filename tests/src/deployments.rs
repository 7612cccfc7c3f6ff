//! What the end-to-end tests of push deployments on `local` share: deployd's loops turned on
//! and fast, a release of one stack, a web container's stack, and the URLs in a deployment's
//! stack state.

use serde_json::{Value, json};

use crate::api::{Api, Deployment, NewDeployment, Request};

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
