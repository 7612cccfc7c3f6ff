//! Workers and daemons on the `local` platform, end to end through the public API: a worker
//! runs with the environment, bindings and secrets the deployment injects, takes commands
//! pushed through the manager, commandd and its worker runtime, and keeps its URL across an
//! update; a daemon answers on its `PORT` and its output reaches the telemetry backend as
//! OTLP log records.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::api::{Api, Deployment, Request, string, unique};
use e2e::deployments::{LOOPS, Leftovers, endpoint, get, outputs, release, version, wait_running};
use e2e::server::Options;
use e2e::telemetry::{Backend, attributes};
use e2e::wait_for;
use opentelemetry_proto::tonic::common::v1::any_value;
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(90);

fn start(extra_config: &str) -> Api {
    Api::start_with(Options {
        deployment_loops: true,
        config: Some(format!("{LOOPS}{extra_config}")),
        ..Options::default()
    })
}

/// A local push deployment in a new group, with the user's `environment_variables`.
fn onboard(api: &Api, environment_variables: Value) -> Deployment {
    let group = api.create_group();
    let created = api.expect(
        &Request::post(
            "/v1/deployments",
            json!({
                "name": unique("dep"), "platform": "local", "deploymentGroupId": group.id,
                "environmentVariables": environment_variables,
            }),
        )
        .auth(api.admin()),
        201,
    );
    let deployment = &created["deployment"];
    Deployment {
        id: string(deployment, "id"),
        name: string(deployment, "name"),
        group_id: string(deployment, "deploymentGroupId"),
        platform: "local".into(),
        token: string(&created, "token"),
    }
}

/// The environment the test workload at `url` runs with (its `/env` answer).
fn environment(url: &str) -> BTreeMap<String, String> {
    let (status, env) = get(&format!("{url}/env")).expect("the workload's /env");
    assert_eq!(status, 200, "{env}");
    serde_json::from_str(&env).expect("/env is JSON")
}

/// As root, where runc runs (here and in CI), deployd runs workloads in it, not as plain
/// processes.
fn assert_runs_in_the_oci_runtime(api: &Api, deployment: &Value, resource: &str) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    assert_eq!(
        deployment["stackState"]["resources"][resource]["_internal"]["backend"],
        "oci",
        "{resource} does not run in the OCI runtime; server stderr:\n{}",
        api.server().stderr()
    );
}

/// A stack of a worker running `image` that takes commands and links a bucket and a kv.
fn worker_stack(image: &str) -> Value {
    json!({
        "id": "worker-app",
        "permissions": {"profiles": {"execution": {}}},
        "resources": {
            "files": {"config": {"type": "storage", "id": "files"}, "lifecycle": "frozen", "dependencies": []},
            "cache": {"config": {"type": "kv", "id": "cache"}, "lifecycle": "live", "dependencies": []},
            "api": {
                "config": {
                    "type": "worker", "id": "api", "permissions": "execution",
                    "code": {"type": "image", "image": image},
                    "links": [{"type": "storage", "id": "files"}, {"type": "kv", "id": "cache"}],
                    "triggers": [],
                    "commandsEnabled": true
                },
                "lifecycle": "live",
                "dependencies": []
            }
        }
    })
}

/// A path a binding gives the workload: `storagePath` (a `file://` URL) or `dataDir`.
fn binding_path(env: &BTreeMap<String, String>, name: &str, field: &str) -> String {
    let binding: Value = env
        .get(name)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_else(|| panic!("no JSON binding {name} in {env:#?}"));
    let path = binding[field]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no {field}: {binding}"));
    path.trim_start_matches("file://")
        .trim_end_matches('/')
        .to_owned()
}

#[test]
fn a_worker_gets_its_environment_takes_commands_and_keeps_its_url_across_an_update() {
    let api = start("");
    let (v1, v2) = (version("v1"), version("v2"));
    let leftovers = Leftovers::of(&api, &[&v1, &v2]);
    let image = e2e::workloads::push(&api, "alien-test-worker", &v1, &[]);
    let first = release(&api, worker_stack(&image));
    let secret = unique("hunter2");
    let deployment = onboard(
        &api,
        json!([
            {"name": "DB_PASSWORD", "value": secret, "type": "secret"},
            {"name": "LOG_LEVEL", "value": "debug", "type": "plain"}
        ]),
    );
    let running = wait_running(&api, &deployment.id, &first);
    let url = endpoint(&running, "api");
    assert_runs_in_the_oci_runtime(&api, &running, "api");
    assert_eq!(
        outputs(&running, "api")["commandsPushTarget"],
        format!("{url}/_alien/commands"),
        "{running:#}"
    );
    assert_eq!(get(&url), Some((200, v1.clone())), "{url}");
    assert!(
        !running.to_string().contains(&secret),
        "the secret's value is in the deployment's record: {running:#}"
    );

    let env = environment(&url);
    assert_eq!(
        env.get("ALIEN_DEPLOYMENT_ID"),
        Some(&deployment.id),
        "{env:#?}"
    );
    assert_eq!(env.get("LOG_LEVEL").map(String::as_str), Some("debug"));
    assert_eq!(env.get("DB_PASSWORD"), Some(&secret), "{env:#?}");
    let secrets: Value = env
        .get("ALIEN_SECRETS")
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_else(|| panic!("no ALIEN_SECRETS in {env:#?}"));
    assert_eq!(secrets["keys"], json!(["DB_PASSWORD"]), "{secrets}");
    assert!(
        !env.contains_key("ALIEN_COMMANDS_TOKEN"),
        "the app sees the commands token"
    );
    let deployment_dir = api
        .server()
        .data_dir()
        .join("deployments")
        .join(&deployment.id);
    for (name, field, host) in [
        ("ALIEN_FILES_BINDING", "storagePath", "storage/files"),
        ("ALIEN_CACHE_BINDING", "dataDir", "kv/cache"),
        ("ALIEN_SECRETS_BINDING", "dataDir", "vault/secrets"),
    ] {
        let path = binding_path(&env, name, field);
        assert_eq!(
            get(&format!("{url}/exists{path}")),
            Some((200, "dir".to_owned())),
            "{name}'s {path} is not a directory inside the worker"
        );
        assert!(
            deployment_dir.join(host).is_dir(),
            "no {host} under {}",
            deployment_dir.display()
        );
    }
    assert_eq!(
        get(&format!(
            "{url}/exists{}/nothing-here",
            deployment_dir.display()
        ))
        .map(|(s, _)| s),
        Some(404),
        "the worker's path probe finds what is not there"
    );

    let (_, answer) = e2e::commands::echo(&api, &deployment.id, "api", &json!({"n": 1}), SETTLE);
    assert_eq!(answer, json!({"echo": {"n": 1}, "version": v1}));

    let image = e2e::workloads::push(&api, "alien-test-worker", &v2, &[]);
    let second = release(&api, worker_stack(&image));
    let updated = wait_running(&api, &deployment.id, &second);
    assert_eq!(endpoint(&updated, "api"), url, "the address changed");
    assert_eq!(
        outputs(&updated, "api")["commandsPushTarget"],
        format!("{url}/_alien/commands")
    );
    assert_eq!(get(&url), Some((200, v2.clone())), "{url}");
    let (_, answer) = e2e::commands::echo(&api, &deployment.id, "api", &json!({"n": 2}), SETTLE);
    assert_eq!(answer, json!({"echo": {"n": 2}, "version": v2}));

    leftovers.delete(&api, &deployment.id);
    assert!(get(&url).is_none(), "{url} still answers after the delete");
}

/// A stack of one daemon running `image` with an endpoint, so it gets `PORT`.
fn daemon_stack(image: &str) -> Value {
    json!({
        "id": "daemon-app",
        "permissions": {"profiles": {"execution": {}}},
        "resources": {
            "ticker": {
                "config": {
                    "type": "daemon", "id": "ticker", "permissions": "execution",
                    "code": {"type": "image", "image": image},
                    "links": [],
                    "publicEndpoints": [{"name": "default", "port": 8080, "protocol": "http"}]
                },
                "lifecycle": "live",
                "dependencies": []
            }
        }
    })
}

/// `(service.name, alien.deployment_id, log.iostream, body)` of every log record delivered.
fn log_records(backend: &Backend) -> Vec<(String, String, String, String)> {
    let mut records = Vec::new();
    for request in backend.delivered("logs") {
        for resource_logs in request.logs().resource_logs {
            let resource = attributes(resource_logs.resource.as_ref());
            let field = |key: &str| resource.get(key).cloned().unwrap_or_default();
            for record in resource_logs
                .scope_logs
                .into_iter()
                .flat_map(|s| s.log_records)
            {
                let stream = record
                    .attributes
                    .iter()
                    .find(|kv| kv.key == "log.iostream")
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        any_value::Value::StringValue(s) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let body = match record.body.and_then(|b| b.value) {
                    Some(any_value::Value::StringValue(s)) => s,
                    _ => String::new(),
                };
                records.push((
                    field("service.name"),
                    field("alien.deployment_id"),
                    stream,
                    body,
                ));
            }
        }
    }
    records
}

#[test]
fn a_daemon_answers_on_its_port_and_its_output_reaches_the_backend_as_log_records() {
    let backend = Backend::start();
    let api = start(&e2e::telemetry::config(Some(&backend.url()), ""));
    let v1 = version("v1");
    let leftovers = Leftovers::of(&api, &[&v1]);
    let image = e2e::workloads::push(&api, "alien-test-daemon", &v1, &[]);
    let release_id = release(&api, daemon_stack(&image));
    let secret = unique("hunter2");
    let deployment = onboard(
        &api,
        json!([{"name": "DB_PASSWORD", "value": secret, "type": "secret", "targetResources": ["ticker"]}]),
    );
    let running = wait_running(&api, &deployment.id, &release_id);
    let url = endpoint(&running, "ticker");
    assert_eq!(get(&url), Some((200, v1.clone())), "{url}");
    assert_eq!(outputs(&running, "ticker")["running"], true, "{running:#}");
    assert_runs_in_the_oci_runtime(&api, &running, "ticker");
    let env = environment(&url);
    assert_eq!(
        env.get("ALIEN_DEPLOYMENT_ID"),
        Some(&deployment.id),
        "{env:#?}"
    );
    // In its own network namespace the daemon listens on the port it declares.
    assert_eq!(
        env.get("PORT").map(String::as_str),
        Some("8080"),
        "{env:#?}"
    );
    // A daemon gets its secrets as plain variables at start; the worker runtime's list of
    // vault-loaded names is not for it.
    assert_eq!(env.get("DB_PASSWORD"), Some(&secret), "{env:#?}");
    assert!(!env.contains_key("ALIEN_SECRETS"), "{env:#?}");

    let shipped = |stream: &str, text: &str| {
        let stream = stream.to_owned();
        let text = text.to_owned();
        let id = deployment.id.clone();
        move |records: &[(String, String, String, String)]| {
            records.iter().any(|(service, deployment_id, s, body)| {
                service == "ticker"
                    && *deployment_id == id
                    && *s == stream
                    && body.starts_with(&text)
            })
        }
    };
    let stdout = shipped("stdout", &format!("alien-test-daemon {v1} tick "));
    let stderr = shipped("stderr", &format!("alien-test-daemon {v1} tock "));
    let found = wait_for(SETTLE, || {
        let records = log_records(&backend);
        (stdout(&records) && stderr(&records)).then_some(())
    });
    assert!(
        found.is_some(),
        "the daemon's stdout and stderr lines did not both reach the backend; it got {:#?}",
        log_records(&backend)
            .into_iter()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
    );

    leftovers.delete(&api, &deployment.id);
    assert!(get(&url).is_none(), "{url} still answers after the delete");
}
