//! The prepared stack: a release's stack for one platform with the resources the platform
//! adds (a `secrets` vault for workers, a service account per permission profile, a compute
//! cluster for containers), which is what the stack state is built from.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::state::{Lifecycle, ResourceRef};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stack {
    pub id: String,
    pub resources: IndexMap<String, Entry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Value>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub config: Value,
    pub lifecycle: Lifecycle,
    pub dependencies: Vec<ResourceRef>,
    #[serde(default)]
    pub remote_access: bool,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

impl Entry {
    pub fn kind(&self) -> &str {
        self.config
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// Explicit dependencies plus those the resource's own configuration implies: its links,
    /// the queues and buckets its triggers read, its compute cluster.
    pub fn all_dependencies(&self) -> Vec<ResourceRef> {
        let mut all = self.dependencies.clone();
        let refs = |value: Option<&Value>| -> Vec<ResourceRef> {
            value
                .and_then(|v| serde_json::from_value::<Vec<ResourceRef>>(v.clone()).ok())
                .unwrap_or_default()
        };
        all.extend(refs(self.config.get("links")));
        if let Some(triggers) = self.config.get("triggers").and_then(Value::as_array) {
            for trigger in triggers {
                for key in ["queue", "storage"] {
                    if let Some(target) = trigger
                        .get(key)
                        .and_then(|v| serde_json::from_value::<ResourceRef>(v.clone()).ok())
                    {
                        all.push(target);
                    }
                }
            }
        }
        if let Some(cluster) = self.config.get("cluster").and_then(Value::as_str) {
            all.push(ResourceRef {
                kind: "compute-cluster".into(),
                id: cluster.into(),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        all.retain(|r| seen.insert(r.clone()));
        all
    }
}

pub fn is_compute(kind: &str) -> bool {
    matches!(kind, "worker" | "container" | "daemon")
}

/// Parses a release's stack text, keeping the resources' declaration order.
pub fn parse(stack: &RawValue) -> Result<Stack, String> {
    serde_json::from_str(stack.get()).map_err(|e| format!("Invalid stack format: {e}"))
}

/// The stack as the `local` platform deploys it.
pub fn prepare_local(stack: &Stack) -> Stack {
    let mut prepared = stack.clone();
    let frozen = |config: Value| Entry {
        config,
        lifecycle: Lifecycle::Frozen,
        dependencies: Vec::new(),
        remote_access: false,
        rest: Default::default(),
    };
    let has = |kind: &str, prepared: &Stack| prepared.resources.values().any(|e| e.kind() == kind);
    if has("container", &prepared) && !has("compute-cluster", &prepared) {
        prepared.resources.insert(
            "compute".into(),
            frozen(json!({"type": "compute-cluster", "id": "compute"})),
        );
        for entry in prepared.resources.values_mut() {
            if entry.kind() == "container"
                && let Some(config) = entry.config.as_object_mut()
            {
                config
                    .entry("cluster")
                    .or_insert_with(|| Value::String("compute".into()));
            }
        }
    }
    if has("worker", &prepared) && !prepared.resources.contains_key("secrets") {
        prepared.resources.insert(
            "secrets".into(),
            frozen(json!({"type": "vault", "id": "secrets"})),
        );
        let secrets = json!({"type": "vault", "id": "secrets"});
        for entry in prepared.resources.values_mut() {
            if entry.kind() == "worker"
                && let Some(links) = entry.config.get_mut("links").and_then(Value::as_array_mut)
                && !links.contains(&secrets)
            {
                links.push(secrets.clone());
            }
        }
    }
    let profiles: Vec<String> = stack
        .permissions
        .as_ref()
        .and_then(|p| p.get("profiles"))
        .and_then(Value::as_object)
        .map(|profiles| profiles.keys().cloned().collect())
        .unwrap_or_default();
    for profile in profiles {
        let id = format!("{profile}-sa");
        prepared.resources.insert(
            id.clone(),
            frozen(json!({"type": "service-account", "id": id})),
        );
        for entry in prepared.resources.values_mut() {
            let uses = is_compute(entry.kind())
                && entry.config.get("permissions").and_then(Value::as_str)
                    == Some(profile.as_str());
            let sa = ResourceRef {
                kind: "service-account".into(),
                id: id.clone(),
            };
            if uses && !entry.dependencies.contains(&sa) {
                entry.dependencies.push(sa);
            }
        }
    }
    prepared
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(text: &str) -> Stack {
        let raw: Box<RawValue> = serde_json::from_str(text).expect("json");
        parse(&raw).expect("stack")
    }

    #[test]
    fn local_adds_the_secrets_vault_service_accounts_and_compute_cluster() {
        let prepared = prepare_local(&stack(
            r#"{"id":"s","permissions":{"profiles":{"execution":{}}},"resources":{
              "web":{"config":{"type":"container","id":"web","permissions":"execution","links":[]},"lifecycle":"live","dependencies":[]},
              "api":{"config":{"type":"worker","id":"api","permissions":"execution","links":[],"triggers":[]},"lifecycle":"live","dependencies":[]}}}"#,
        ));
        let ids: Vec<&str> = prepared.resources.keys().map(String::as_str).collect();
        assert_eq!(ids, ["web", "api", "compute", "secrets", "execution-sa"]);
        let api = &prepared.resources["api"];
        assert_eq!(
            api.config["links"],
            json!([{"type": "vault", "id": "secrets"}])
        );
        let deps = prepared.resources["web"].all_dependencies();
        assert!(deps.contains(&ResourceRef {
            kind: "compute-cluster".into(),
            id: "compute".into()
        }));
        assert!(deps.contains(&ResourceRef {
            kind: "service-account".into(),
            id: "execution-sa".into()
        }));
    }

    #[test]
    fn declaration_order_survives_parsing() {
        let prepared = stack(
            r#"{"id":"s","resources":{
              "zz":{"config":{"type":"storage","id":"zz"},"lifecycle":"frozen","dependencies":[]},
              "aa":{"config":{"type":"kv","id":"aa"},"lifecycle":"frozen","dependencies":[]}}}"#,
        );
        let ids: Vec<&str> = prepared.resources.keys().map(String::as_str).collect();
        assert_eq!(ids, ["zz", "aa"]);
    }
}
