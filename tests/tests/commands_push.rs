//! Push delivery to a local Worker (docs/compatibility.md, Commands): DISPATCHED before the
//! send, only a 202 counts, a definite rejection fails the command with DELIVERY_FAILED, an
//! ambiguous failure leaves it DISPATCHED.

use std::time::Duration;

use e2e::api::{Api, NewDeployment, Request, string};
use e2e::commands::{PushEndpoint, Target, create_body, http, response_bytes, wait_terminal};
use serde_json::{Value, json};

fn worker_state(push_target: Option<&str>, status: &str) -> Value {
    let mut api = json!({"type": "worker", "status": status, "config": {"id": "api"}});
    if let Some(url) = push_target {
        api["outputs"] = json!({"commandsPushTarget": url});
    }
    json!({"platform": "local", "resourcePrefix": "p", "resources": {"api": api}})
}

fn push_target(api: &Api, state: Value) -> Target {
    Target::with_state(
        api,
        NewDeployment::on("local"),
        &[("api", "worker", true)],
        "running",
        Some(state),
    )
}

#[test]
fn a_202_delivers_and_the_worker_answers_through_the_signed_url() {
    let api = Api::start();
    let endpoint = PushEndpoint::start(202);
    let target = push_target(&api, worker_state(Some(&endpoint.url), "running"));
    let created = api.expect(
        &Request::post("/v1/commands", create_body(&target, json!({}))).auth(api.admin()),
        200,
    );
    assert_eq!(created["state"], "DISPATCHED", "{created}");
    let id = string(&created, "commandId");
    let pushes = endpoint.pushes();
    assert_eq!(pushes.len(), 1);
    let (authorization, envelope) = &pushes[0];
    // The runtime accepts a push only with the deployment's own token.
    assert_eq!(
        authorization.as_deref(),
        Some(format!("Bearer {}", target.deployment.token).as_str())
    );
    assert_eq!(envelope["commandId"], id.as_str());
    let submit = envelope["responseHandling"]["submitResponseUrl"]
        .as_str()
        .expect("url");
    assert!(
        submit.starts_with("http://")
            && submit.contains(&format!("/v1/commands/{id}/response?response_token=")),
        "absolute: {submit}"
    );
    let answer =
        json!({"status": "success", "response": {"mode": "inline", "inlineBase64": "b2s="}});
    let (status, _) = http(
        "PUT",
        submit,
        None,
        Some("application/json"),
        answer.to_string().into_bytes(),
    );
    assert_eq!(status, 200);
    let done = wait_terminal(&api, &id, Duration::from_secs(30));
    assert_eq!(done["state"], "SUCCEEDED");
    assert_eq!(response_bytes(&api, &done), b"ok");
}

#[test]
fn definite_rejections_fail_and_ambiguous_failures_stay_dispatched() {
    let api = Api::start();
    let refused = PushEndpoint::start(400);
    let broken = PushEndpoint::start(500);
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!(
            "http://{}/_alien/commands",
            listener.local_addr().expect("address")
        )
    };
    // (stack state, state answered)
    let cases = [
        (worker_state(Some(&refused.url), "running"), "FAILED"),
        (worker_state(Some(&closed), "running"), "FAILED"),
        (worker_state(None, "running"), "FAILED"),
        (worker_state(Some(&refused.url), "provisioning"), "FAILED"),
        (worker_state(Some(&broken.url), "running"), "DISPATCHED"),
    ];
    let targets: Vec<Target> = cases
        .iter()
        .map(|(state, _)| push_target(&api, state.clone()))
        .collect();
    for (target, (state, expected)) in targets.iter().zip(cases) {
        target.report(&api);
        let created = api.expect(
            &Request::post("/v1/commands", create_body(target, json!({}))).auth(api.admin()),
            200,
        );
        assert_eq!(created["state"], expected, "{state}: {created}");
        let status = api.expect(
            &Request::get(format!("/v1/commands/{}", string(&created, "commandId")))
                .auth(api.admin()),
            200,
        );
        assert_eq!(status["state"], expected);
        if expected == "FAILED" {
            assert_eq!(
                status["response"],
                json!({"status": "error", "code": "DELIVERY_FAILED", "message": "Worker runtime did not accept command delivery"}),
                "{state}"
            );
        }
    }
    assert_eq!(
        refused.envelopes().len(),
        1,
        "not sent to a worker that is not running"
    );
}
