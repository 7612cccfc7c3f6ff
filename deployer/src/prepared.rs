//! The prepared stack: a release's stack for one platform with the resources the platform
//! adds (a `secrets` vault for workers, a service account per permission profile, a compute
//! cluster for containers), which is what the stack state is built from.

use serde_json::value::RawValue;
use stack::{
    ComputeCluster, Lifecycle, ResourceConfig, ResourceEntry, ResourceRef, ServiceAccount, Stack,
    Vault,
};

/// Parses a release's stack text as the manager accepted it.
pub fn parse(stack: &RawValue) -> Result<Stack, String> {
    Stack::parse(stack.get()).map_err(|e| format!("Invalid stack format: {e}"))
}

fn frozen(config: ResourceConfig) -> ResourceEntry {
    ResourceEntry {
        config,
        lifecycle: Lifecycle::Frozen,
        dependencies: Vec::new(),
        remote_access: false,
        enabled_when: None,
    }
}

/// The permission profile a compute resource runs as.
fn profile(config: &ResourceConfig) -> Option<&str> {
    match config {
        ResourceConfig::Worker(w) => Some(&w.permissions),
        ResourceConfig::Container(c) => Some(&c.permissions),
        ResourceConfig::Daemon(d) => Some(&d.permissions),
        _ => None,
    }
}

/// The stack as the `local` platform deploys it.
pub fn prepare_local(stack: &Stack) -> Stack {
    let mut prepared = stack.clone();
    let has =
        |prepared: &Stack, kind: &str| prepared.resources.values().any(|e| e.config.kind() == kind);
    if has(&prepared, "container") && !has(&prepared, "compute-cluster") {
        prepared.resources.insert(
            "compute".into(),
            frozen(ResourceConfig::ComputeCluster(ComputeCluster {
                id: "compute".into(),
                capacity_groups: Vec::new(),
                container_cidr: None,
            })),
        );
        for entry in prepared.resources.values_mut() {
            if let ResourceConfig::Container(container) = &mut entry.config {
                container.cluster.get_or_insert_with(|| "compute".into());
            }
        }
    }
    if has(&prepared, "worker") && !prepared.resources.contains_key("secrets") {
        prepared.resources.insert(
            "secrets".into(),
            frozen(ResourceConfig::Vault(Vault {
                id: "secrets".into(),
            })),
        );
        let secrets = ResourceRef::new("vault", "secrets");
        for entry in prepared.resources.values_mut() {
            if let ResourceConfig::Worker(worker) = &mut entry.config
                && !worker.links.contains(&secrets)
            {
                worker.links.push(secrets.clone());
            }
        }
    }
    for name in stack.permissions.profiles.keys() {
        let id = format!("{name}-sa");
        prepared.resources.insert(
            id.clone(),
            frozen(ResourceConfig::ServiceAccount(ServiceAccount {
                id: id.clone(),
                stack_permission_sets: Vec::new(),
                resource_permission_sets: Default::default(),
            })),
        );
        let account = ResourceRef::new("service-account", id);
        for entry in prepared.resources.values_mut() {
            if profile(&entry.config) == Some(name.as_str())
                && !entry.dependencies.contains(&account)
            {
                entry.dependencies.push(account.clone());
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
              "web":{"config":{"type":"container","id":"web","permissions":"execution","links":[],"ports":[{"port":8080}],
                "code":{"type":"image","image":"x"},"cpu":{"min":"0.1","desired":"0.1"},"memory":{"min":"64Mi","desired":"64Mi"}},
                "lifecycle":"live","dependencies":[]},
              "api":{"config":{"type":"worker","id":"api","permissions":"execution","links":[],"triggers":[],
                "code":{"type":"image","image":"x"}},"lifecycle":"live","dependencies":[]}}}"#,
        ));
        let ids: Vec<&str> = prepared.resources.keys().map(String::as_str).collect();
        assert_eq!(ids, ["web", "api", "compute", "secrets", "execution-sa"]);
        let ResourceConfig::Worker(api) = &prepared.resources["api"].config else {
            panic!("api is a worker");
        };
        assert_eq!(api.links, [ResourceRef::new("vault", "secrets")]);
        let deps = prepared.resources["web"].all_dependencies();
        assert!(deps.contains(&ResourceRef::new("compute-cluster", "compute")));
        assert!(deps.contains(&ResourceRef::new("service-account", "execution-sa")));
    }
}
