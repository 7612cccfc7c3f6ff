//! A real client end to end: the OpenTelemetry Python SDK's OTLP/HTTP exporters send spans,
//! logs and metrics through the manager's public port with a deployment token; the test
//! backend receives them on the configured path and headers, enriched with where they came
//! from (issue #6).

use std::time::Duration;

use e2e::api::{stack, state, string};
use e2e::telemetry::{
    API_KEY, API_KEY_HEADER, Backend, SdkRun, attributes, config, counter, run_sdk, start_api,
};
use serde_json::json;

#[test]
fn the_python_sdk_sends_traces_logs_and_metrics_through_the_manager() {
    let backend = Backend::start();
    let api = start_api(config(Some(&backend.url()), ""));
    let group = api.create_group();
    let deployment = api.create_deployment(&group, e2e::api::NewDeployment::pull());
    // The deployment runs a release: the agent reported it.
    let release = string(&api.create_release(&["local"]), "id");
    let mut report = state("running", "local");
    report["currentRelease"] = json!({"releaseId": release, "stack": stack()});
    api.reconcile_as("agent", &deployment, report);

    for gzip in [true, false] {
        let results = run_sdk(
            &SdkRun {
                base_url: api.base_url(),
                token: deployment.token.clone(),
                spans: 20,
                logs: 10,
                gzip,
            },
            api.server().work_dir(),
        );
        for signal in ["traces", "logs", "metrics"] {
            assert!(
                !results[signal].is_empty() && results[signal].iter().all(|r| r == "SUCCESS"),
                "gzip {gzip}: the SDK's {signal} exporter: {results:?}"
            );
        }
    }

    backend.wait(Duration::from_secs(20), "40 spans, 20 logs", |b| {
        b.span_names().len() >= 40 && b.log_bodies().len() >= 20
    });
    let mut names = backend.span_names();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20, "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("sdk-span-")),
        "{names:?}"
    );
    assert!(backend.log_bodies().iter().any(|b| b == "sdk-log-9"));
    backend.wait(Duration::from_secs(20), "metrics", |b| {
        !b.delivered("metrics").is_empty()
    });
    let metric_names: Vec<String> = backend
        .delivered("metrics")
        .iter()
        .flat_map(|r| r.metrics().resource_metrics)
        .flat_map(|r| r.scope_metrics)
        .flat_map(|s| s.metrics)
        .map(|m| m.name)
        .collect();
    assert!(
        metric_names.iter().any(|n| n == "sdk_requests"),
        "{metric_names:?}"
    );

    // Every forwarded request: the configured header, protobuf, gzip; every resource: where
    // it came from, and what the sender set left as it set it.
    for received in backend.received() {
        assert_eq!(
            received.headers.get(API_KEY_HEADER).map(String::as_str),
            Some(API_KEY)
        );
        assert_eq!(
            received.headers.get("content-type").map(String::as_str),
            Some("application/x-protobuf"),
            "{}",
            received.path
        );
        assert_eq!(
            received.headers.get("content-encoding").map(String::as_str),
            Some("gzip")
        );
        assert!(
            !received.headers.contains_key("authorization"),
            "the deployment's token must not reach the vendor"
        );
        let resources: Vec<_> = match received.path.as_str() {
            "/v1/traces" => received
                .traces()
                .resource_spans
                .into_iter()
                .map(|r| r.resource)
                .collect(),
            "/v1/logs" => received
                .logs()
                .resource_logs
                .into_iter()
                .map(|r| r.resource)
                .collect(),
            "/v1/metrics" => received
                .metrics()
                .resource_metrics
                .into_iter()
                .map(|r| r.resource)
                .collect(),
            other => panic!("unexpected path {other}"),
        };
        assert!(!resources.is_empty());
        for resource in resources {
            let attributes = attributes(resource.as_ref());
            let get = |key: &str| attributes.get(key).map(String::as_str);
            assert_eq!(get("alien.deployment_id"), Some(deployment.id.as_str()));
            assert_eq!(get("alien.deployment_group_id"), Some(group.id.as_str()));
            assert_eq!(
                get("alien.deployment_group_name"),
                Some(group.name.as_str())
            );
            assert_eq!(get("alien.release_id"), Some(release.as_str()));
            assert_eq!(get("alien.deployment_name"), Some("set-by-sender"));
            assert_eq!(get("service.name"), Some("e2e-sdk-client"));
        }
    }
    assert!(counter(&api, "traces", "sentItems") >= 40);
    assert_eq!(counter(&api, "traces", "droppedRecords"), 0);
}
