//! The structural check of a release's stack (docs/compatibility.md, Stacks and settings). The
//! engine's typed `Stack` is not part of the OpenAPI document, so this checks what the manager
//! and its clients rely on and leaves the rest to the engine; the stack is stored as the
//! client sent it.

/// The resource types the engine knows, as the OpenAPI document lists them (the variants of
/// `ResourceHeartbeatData`). The public manager refuses a stack with any other type.
const RESOURCE_TYPES: [&str; 23] = [
    "ai",
    "artifact-registry",
    "azure_container_apps_environment",
    "azure_resource_group",
    "azure_service_bus_namespace",
    "azure_storage_account",
    "build",
    "compute-cluster",
    "container",
    "daemon",
    "key",
    "kubernetes-cluster",
    "kv",
    "network",
    "postgres",
    "queue",
    "remote-stack-management",
    "sandbox",
    "service-account",
    "service_activation",
    "storage",
    "vault",
    "worker",
];

use serde_json::Value;

/// Why `stack` is not a stack, naming the offending path; `Ok` when it is one.
pub fn validate(stack: &Value) -> Result<(), String> {
    let stack = stack
        .as_object()
        .ok_or_else(|| format!("expected an object, found {}", kind(stack)))?;
    let resources = stack
        .get("resources")
        .ok_or("missing field `resources`")?
        .as_object()
        .ok_or_else(|| {
            format!(
                "resources: expected an object, found {}",
                kind(&stack["resources"])
            )
        })?;
    for (id, resource) in resources {
        resource_errors(resource).map_err(|e| format!("resources.{id}{e}"))?;
    }
    Ok(())
}

/// A resource's first problem, as a path below the resource and a reason.
fn resource_errors(resource: &Value) -> Result<(), String> {
    let resource = resource
        .as_object()
        .ok_or_else(|| format!(": expected an object, found {}", kind(resource)))?;
    let config = resource
        .get("config")
        .ok_or(": missing field `config`")?
        .as_object()
        .ok_or(".config: expected an object")?;
    match config.get("type") {
        Some(Value::String(kind)) if RESOURCE_TYPES.contains(&kind.as_str()) => {}
        Some(other) => {
            return Err(format!(
                ".config.type: expected a resource type ({}), found {other}",
                RESOURCE_TYPES.join(", ")
            ));
        }
        None => return Err(".config: missing field `type`".to_owned()),
    }
    match config.get("id") {
        Some(Value::String(id)) if is_resource_id(id) => {}
        Some(other) => {
            return Err(format!(
                ".config.id: expected 1 to 64 characters of [A-Za-z0-9-_], found {other}"
            ));
        }
        None => return Err(".config: missing field `id`".to_owned()),
    }
    match resource.get("lifecycle") {
        None | Some(Value::Null) => {}
        Some(Value::String(lifecycle)) if matches!(lifecycle.as_str(), "frozen" | "live") => {}
        Some(other) => {
            return Err(format!(
                ".lifecycle: expected `frozen` or `live`, found {other}"
            ));
        }
    }
    match resource.get("dependencies") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(dependencies)) => {
            for (index, dependency) in dependencies.iter().enumerate() {
                let is_ref = dependency.as_object().is_some_and(|d| {
                    d.get("type").is_some_and(Value::is_string)
                        && d.get("id").is_some_and(Value::is_string)
                });
                if !is_ref {
                    return Err(format!(
                        ".dependencies[{index}]: expected an object with string `type` and `id`, found {dependency}"
                    ));
                }
            }
            Ok(())
        }
        Some(other) => Err(format!(
            ".dependencies: expected an array, found {}",
            kind(other)
        )),
    }
}

fn is_resource_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn with_resource(resource: Value) -> Value {
        json!({"id": "app", "resources": {"api": resource}})
    }

    fn worker() -> Value {
        json!({"config": {"type": "worker", "id": "api", "code": {"type": "image", "image": "x"}},
               "lifecycle": "live", "dependencies": [{"type": "storage", "id": "files"}]})
    }

    #[test]
    fn stacks() {
        let mut bad_type = worker();
        bad_type["config"]["type"] = json!("Worker");
        let mut empty_type = worker();
        empty_type["config"]["type"] = json!("");
        let mut unknown_type = worker();
        unknown_type["config"]["type"] = json!("frobnicator");
        let mut number_type = worker();
        number_type["config"]["type"] = json!(7);
        let mut long_id = worker();
        long_id["config"]["id"] = json!("a".repeat(65));
        let mut dotted_id = worker();
        dotted_id["config"]["id"] = json!("a.b");
        let mut lifecycle = worker();
        lifecycle["lifecycle"] = json!("eternal");
        let mut dependency = worker();
        dependency["dependencies"] = json!([{"type": "storage"}]);
        let mut dependencies = worker();
        dependencies["dependencies"] = json!({"type": "storage", "id": "x"});
        let mut no_type = worker();
        no_type["config"]
            .as_object_mut()
            .expect("object")
            .remove("type");
        let mut minimal = worker();
        minimal.as_object_mut().expect("object").remove("lifecycle");
        minimal
            .as_object_mut()
            .expect("object")
            .remove("dependencies");
        let mut hyphenated = worker();
        hyphenated["config"]["type"] = json!("remote-stack-management");
        let mut underscored = worker();
        underscored["config"]["type"] = json!("azure_resource_group");
        let mut longest_id = worker();
        longest_id["config"]["id"] = json!(format!("A_-{}", "z".repeat(61)));

        // (stack, Ok or the start of the reason)
        let cases: Vec<(Value, Result<(), &str>)> = vec![
            (with_resource(worker()), Ok(())),
            (with_resource(minimal), Ok(())),
            (with_resource(hyphenated), Ok(())),
            (with_resource(underscored), Ok(())),
            (with_resource(longest_id), Ok(())),
            (json!({"resources": {}}), Ok(())),
            (json!([]), Err("expected an object, found an array")),
            (json!({"id": "x"}), Err("missing field `resources`")),
            (
                json!({"resources": []}),
                Err("resources: expected an object"),
            ),
            (
                with_resource(json!(5)),
                Err("resources.api: expected an object"),
            ),
            (
                with_resource(json!({})),
                Err("resources.api: missing field `config`"),
            ),
            (
                with_resource(json!({"config": 1})),
                Err("resources.api.config: expected an object"),
            ),
            (
                with_resource(no_type),
                Err("resources.api.config: missing field `type`"),
            ),
            (
                with_resource(bad_type),
                Err("resources.api.config.type: expected a resource type"),
            ),
            (with_resource(empty_type), Err("resources.api.config.type:")),
            (
                with_resource(unknown_type),
                Err("resources.api.config.type:"),
            ),
            (
                with_resource(number_type),
                Err("resources.api.config.type:"),
            ),
            (
                with_resource(long_id),
                Err("resources.api.config.id: expected 1 to 64"),
            ),
            (with_resource(dotted_id), Err("resources.api.config.id:")),
            (
                with_resource(lifecycle),
                Err("resources.api.lifecycle: expected `frozen` or `live`"),
            ),
            (
                with_resource(dependency),
                Err("resources.api.dependencies[0]: expected an object"),
            ),
            (
                with_resource(dependencies),
                Err("resources.api.dependencies: expected an array"),
            ),
        ];
        for (stack, expected) in cases {
            match (validate(&stack), expected) {
                (Ok(()), Ok(())) => {}
                (Err(reason), Err(start)) => {
                    assert!(reason.starts_with(start), "{stack}: {reason}");
                }
                (got, expected) => panic!("{stack}: got {got:?}, expected {expected:?}"),
            }
        }
    }
}
