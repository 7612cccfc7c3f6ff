use serde_json::{Value, json};

use crate::{ResourceConfig, ResourceRef, Stack};

/// The minimal `local` stack of the public documentation: a storage, a worker, a container.
fn example() -> Value {
    json!({
        "id": "demo",
        "resources": {
            "files": {
                "config": {"type": "storage", "id": "files"},
                "lifecycle": "frozen",
                "dependencies": []
            },
            "api": {
                "config": {
                    "type": "worker", "id": "api", "permissions": "execution",
                    "code": {"type": "image", "image": "localhost:8080/artifacts/default:api-1a2b3c4d"},
                    "links": [{"type": "storage", "id": "files"}],
                    "triggers": [],
                    "environment": {"LOG_LEVEL": "info"},
                    "commandsEnabled": true
                },
                "lifecycle": "live",
                "dependencies": []
            },
            "web": {
                "config": {
                    "type": "container", "id": "web", "permissions": "execution",
                    "code": {"type": "image", "image": "localhost:8080/artifacts/default:web-5e6f7a8b"},
                    "cpu": {"min": "0.25", "desired": "0.5"},
                    "memory": {"min": "256Mi", "desired": "512Mi"},
                    "ports": [{"port": 8080}],
                    "publicEndpoints": [{"name": "http", "port": 8080, "protocol": "http"}],
                    "links": [{"type": "storage", "id": "files"}, {"type": "worker", "id": "api"}]
                },
                "lifecycle": "live",
                "dependencies": []
            }
        },
        "permissions": {
            "profiles": {"execution": {"*": ["storage/data-read", "storage/data-write"]}},
            "management": "auto"
        }
    })
}

/// An edit of the example stack.
type Change = fn(&mut Value);

fn parse(value: Value) -> Result<Stack, String> {
    Stack::parse(&value.to_string()).map_err(|e| e.to_string())
}

fn reason(value: Value) -> String {
    match parse(value) {
        Ok(stack) => panic!("accepted: {stack:?}"),
        Err(reason) => reason,
    }
}

#[test]
fn the_example_round_trips_with_its_defaults_filled_in() {
    let stack = parse(example()).expect("the example parses");
    let mut want = example();
    let resources = &mut want["resources"];
    for id in ["files", "api", "web"] {
        resources[id]["remoteAccess"] = json!(false);
    }
    let files = resources["files"]["config"]
        .as_object_mut()
        .expect("object");
    files.extend(
        json!({"publicRead": false, "versioning": false, "lifecycleRules": [], "corsAllowedOrigins": []})
            .as_object()
            .expect("object")
            .clone(),
    );
    let api = resources["api"]["config"].as_object_mut().expect("object");
    api.extend(
        json!({"memoryMb": 512, "timeoutSeconds": 180, "concurrencyLimit": null, "readinessProbe": null})
            .as_object()
            .expect("object")
            .clone(),
    );
    let web = &mut resources["web"]["config"];
    web["stateful"] = json!(false);
    web["environment"] = json!({});
    web["commandsEnabled"] = json!(false);
    web["publicEndpoints"][0]["wildcardSubdomains"] = json!(false);
    let got = serde_json::to_value(&stack).expect("serializes");
    assert_eq!(got, want);
    assert_eq!(
        parse(got.clone()).expect("the filled-in form parses again"),
        stack
    );
}

#[test]
fn declaration_order_is_kept() {
    let text = r#"{"id": "app", "resources": {
        "zeta": {"config": {"type": "kv", "id": "zeta"}, "lifecycle": "frozen", "dependencies": []},
        "alpha": {"config": {"type": "queue", "id": "alpha"}, "lifecycle": "frozen", "dependencies": []},
        "mid": {"config": {"type": "vault", "id": "mid"}, "lifecycle": "frozen", "dependencies": []}
    }}"#;
    let stack = Stack::parse(text).expect("parses");
    let ids: Vec<&str> = stack.resources().map(|(id, _)| id).collect();
    assert_eq!(ids, ["zeta", "alpha", "mid"]);
    let out = serde_json::to_string(&stack).expect("serializes");
    let positions: Vec<usize> = ["\"zeta\":", "\"alpha\":", "\"mid\":"]
        .iter()
        .map(|key| out.find(key).expect("key present"))
        .collect();
    assert!(positions.is_sorted(), "{out}");
}

#[test]
fn each_rule_refuses_with_its_reason() {
    // (what to change in the example, the reason given)
    let cases: Vec<(Change, &str)> = vec![
        (
            |s| remove(&mut s["resources"]["api"]["config"], "links"),
            "missing field `links`",
        ),
        (
            |s| remove(&mut s["resources"]["api"]["config"], "triggers"),
            "missing field `triggers`",
        ),
        (
            |s| remove(&mut s["resources"]["api"]["config"], "permissions"),
            "missing field `permissions`",
        ),
        (
            |s| remove(&mut s["resources"]["web"]["config"], "ports"),
            "missing field `ports`",
        ),
        (
            |s| remove(&mut s["resources"]["web"]["config"], "links"),
            "missing field `links`",
        ),
        (
            |s| remove(&mut s["resources"]["files"], "dependencies"),
            "missing field `dependencies`",
        ),
        (
            |s| remove(&mut s["resources"]["files"], "lifecycle"),
            "missing field `lifecycle`",
        ),
        (
            |s| remove(&mut s["resources"]["files"]["config"], "type"),
            "missing field `type`",
        ),
        (
            |s| remove(&mut s["resources"]["files"]["config"], "id"),
            "missing field `id`",
        ),
        (|s| remove(s, "resources"), "missing field `resources`"),
        (
            |s| s["resources"]["api"]["config"]["timeoutSeconds"] = json!(0),
            "timeoutSeconds must be between 1 and 3600, got 0",
        ),
        (
            |s| s["resources"]["api"]["config"]["timeoutSeconds"] = json!(3601),
            "timeoutSeconds must be between 1 and 3600, got 3601",
        ),
        (
            |s| s["resources"]["web"]["config"]["stopGracePeriodSeconds"] = json!(0),
            "stopGracePeriodSeconds must be between 1 and 86400, got 0",
        ),
        (
            |s| s["resources"]["web"]["config"]["stopGracePeriodSeconds"] = json!(86_401),
            "stopGracePeriodSeconds must be between 1 and 86400, got 86401",
        ),
        (
            |s| s["resources"]["api"]["config"]["memoryMB"] = json!(256),
            "unknown field `memoryMB`",
        ),
        (
            |s| s["resources"]["files"]["config"]["size"] = json!("1Gi"),
            "unknown field `size`",
        ),
        (
            |s| s["resources"]["api"]["config"]["type"] = json!("Worker"),
            "unknown variant `Worker`, expected one of `worker`, `daemon`, `container`",
        ),
        (
            |s| s["resources"]["api"]["config"]["type"] = json!("function"),
            "unknown variant `function`",
        ),
        (
            |s| s["resources"]["api"]["lifecycle"] = json!("eternal"),
            "unknown variant `eternal`, expected `frozen` or `live`",
        ),
        (
            |s| s["resources"]["api"]["lifecycle"] = json!("frozen"),
            "resource `api` of type `worker` must be `live`, found `frozen`",
        ),
        (
            |s| s["resources"]["web"]["lifecycle"] = json!("frozen"),
            "resource `web` of type `container` must be `live`, found `frozen`",
        ),
        (
            |s| {
                s["resources"]["compute"] = json!({"config": {"type": "compute-cluster", "id": "compute", "capacityGroups": []}, "lifecycle": "live", "dependencies": []});
            },
            "resource `compute` of type `compute-cluster` must be `frozen`, found `live`",
        ),
        (
            |s| rename(s, "files", "Files"),
            "resource id `Files` must be lowercase letters",
        ),
        (
            |s| rename(s, "files", "my--files"),
            "resource id `my--files` must be",
        ),
        (
            |s| rename(s, "files", "-files"),
            "resource id `-files` must be",
        ),
        (
            |s| rename(s, "files", "files-"),
            "resource id `files-` must be",
        ),
        (
            |s| rename(s, "files", "my_files"),
            "resource id `my_files` must be",
        ),
        (
            |s| s["resources"]["files"]["config"]["id"] = json!("other"),
            "resource `files` has config id `other`; they must be equal",
        ),
        (
            |s| s["resources"]["api"]["config"]["code"] = json!({"type": "zip"}),
            "unknown variant `zip`, expected `image` or `source`",
        ),
        (
            |s| s["resources"]["api"]["config"]["triggers"] = json!([{"type": "schedule"}]),
            "missing field `cron`",
        ),
        (
            |s| s["permissions"] = json!({"management": "auto"}),
            "missing field `profiles`",
        ),
        (
            |s| s["resources"]["api"]["config"]["readinessProbe"] = json!({"method": "get"}),
            "unknown variant `get`",
        ),
    ];
    for (change, want) in cases {
        let mut stack = example();
        change(&mut stack);
        let got = reason(stack.clone());
        assert!(
            got.starts_with(want),
            "{stack}\nwant {want:?}\ngot  {got:?}"
        );
    }
}

#[test]
fn valid_variations_are_accepted() {
    let cases: Vec<Change> = vec![
        |s| remove(s, "permissions"),
        |s| rename(s, "files", "a"),
        |s| rename(s, "files", "my-files-2"),
        |s| s["resources"]["api"]["config"]["timeoutSeconds"] = json!(1),
        |s| s["resources"]["api"]["config"]["timeoutSeconds"] = json!(3600),
        |s| s["resources"]["web"]["config"]["stopGracePeriodSeconds"] = json!(86_400),
        |s| s["resources"]["files"]["lifecycle"] = json!("live"),
        |s| s["resources"]["files"]["remoteAccess"] = json!(true),
        |s| s["permissions"]["management"] = json!({"extend": {"*": ["storage/data-read"]}}),
    ];
    for change in cases {
        let mut stack = example();
        change(&mut stack);
        if let Err(reason) = parse(stack.clone()) {
            panic!("{stack}: {reason}");
        }
    }
}

#[test]
fn configs_of_types_local_does_not_run_round_trip_unchanged() {
    let mut stack = example();
    let config = json!({"type": "postgres", "id": "db", "version": "16", "storage": {"size": "10Gi"}, "custom": [1, 2]});
    stack["resources"]["db"] =
        json!({"config": config, "lifecycle": "frozen", "dependencies": [], "remoteAccess": false});
    let parsed = parse(stack).expect("parses");
    let db = parsed.resource("db").expect("kept");
    assert!(matches!(db.config, ResourceConfig::Postgres(_)));
    let got = serde_json::to_value(&parsed).expect("serializes");
    assert_eq!(got["resources"]["db"]["config"], config);

    let mut no_id = example();
    no_id["resources"]["db"] = json!({"config": {"type": "postgres", "version": "16"}, "lifecycle": "frozen", "dependencies": []});
    assert!(reason(no_id).starts_with("missing field `id`"));
}

#[test]
fn dependencies_include_the_intrinsic_edges_once() {
    let mut stack = example();
    stack["resources"]["jobs"] = json!({"config": {"type": "queue", "id": "jobs"}, "lifecycle": "frozen", "dependencies": []});
    stack["resources"]["key"] =
        json!({"config": {"type": "key", "id": "key"}, "lifecycle": "frozen", "dependencies": []});
    let api = &mut stack["resources"]["api"];
    api["config"]["triggers"] = json!([
        {"type": "queue", "queue": {"type": "queue", "id": "jobs"}},
        {"type": "storage", "storage": {"type": "storage", "id": "files"}, "events": ["created"]},
        {"type": "schedule", "cron": "0 * * * *"}
    ]);
    api["dependencies"] = json!([{"type": "queue", "id": "jobs"}, {"type": "kv", "id": "other"}]);
    stack["resources"]["web"]["config"]["cluster"] = json!("compute");
    stack["resources"]["files"]["config"]["encryptionKey"] = json!({"type": "key", "id": "key"});
    let stack = parse(stack).expect("parses");
    let deps = |id: &str| stack.resource(id).expect("present").all_dependencies();
    let r = ResourceRef::new;
    assert_eq!(
        deps("api"),
        [r("storage", "files"), r("queue", "jobs"), r("kv", "other")]
    );
    assert_eq!(
        deps("web"),
        [
            r("storage", "files"),
            r("worker", "api"),
            r("compute-cluster", "compute")
        ]
    );
    assert_eq!(deps("files"), [r("key", "key")]);
    assert_eq!(deps("jobs"), []);
    assert_eq!(
        stack.resource("web").expect("present").reference(),
        r("container", "web")
    );
}

#[test]
fn a_daemon_gets_its_defaults() {
    let mut stack = example();
    stack["resources"]["agent"] = json!({
        "config": {"type": "daemon", "id": "agent", "permissions": "execution", "links": [],
                   "code": {"type": "image", "image": "x"}},
        "lifecycle": "live", "dependencies": []
    });
    let stack = parse(stack).expect("parses");
    let got = serde_json::to_value(&stack).expect("serializes");
    assert_eq!(
        got["resources"]["agent"]["config"],
        json!({"type": "daemon", "id": "agent", "links": [], "permissions": "execution",
               "code": {"type": "image", "image": "x"},
               "cpu": {"min": "0.1", "desired": "0.1"}, "memory": {"min": "128Mi", "desired": "128Mi"},
               "environment": {}, "commandsEnabled": false})
    );
    match &stack.resource("agent").expect("present").config {
        ResourceConfig::Daemon(daemon) => assert_eq!(daemon.stop_grace_period_seconds(), 30),
        other => panic!("{other:?}"),
    }
}

#[test]
fn json_text_errors_have_no_position() {
    let text = "{\"id\": \"x\",\n \"resources\": {\"a\": {\"config\": {\"type\": \"kv\", \"id\": \"a\"}}}}";
    let error = Stack::parse(text).expect_err("no lifecycle");
    assert_eq!(error.to_string(), "missing field `lifecycle`");
    let error = Stack::parse("{\"id\": 1}").expect_err("a number");
    assert_eq!(
        error.to_string(),
        "invalid type: integer `1`, expected a string"
    );
    let error = Stack::parse("{").expect_err("not JSON");
    assert_eq!(error.to_string(), "EOF while parsing an object");
}

fn remove(value: &mut Value, key: &str) {
    value.as_object_mut().expect("object").remove(key);
}

/// Renames resource `from` to `to`, key and config id.
fn rename(stack: &mut Value, from: &str, to: &str) {
    let resources = stack["resources"].as_object_mut().expect("object");
    let mut entry = resources.remove(from).expect("present");
    entry["config"]["id"] = json!(to);
    resources.insert(to.to_owned(), entry);
}
