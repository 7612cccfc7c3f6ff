//! The environment a deployment injects into its compute resources: the deployment's
//! identity, the commands receiver of command-enabled containers and daemons, where to send
//! telemetry, and the user's variables, each to the resources it targets. Plain values go
//! into the resource's configuration (so a change there is an update); secret values and
//! the deployment's token only reach the workload at launch and are never stored.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{DeploymentConfig, VarKind};

/// What resource `id` of `kind` gets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Injected {
    pub plain: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
}

/// The variables of one compute resource. `config` is its configuration in the stack.
pub fn for_resource(
    deployment_id: &str,
    config: &DeploymentConfig,
    id: &str,
    kind: &str,
    resource: &Value,
) -> Injected {
    let mut injected = Injected::default();
    injected
        .plain
        .insert("ALIEN_DEPLOYMENT_ID".into(), deployment_id.into());
    if let Some(name) = &config.deployment_name {
        injected
            .plain
            .insert("ALIEN_DEPLOYMENT_NAME".into(), name.clone());
    }
    let token = config.deployment_token.clone().unwrap_or_default();
    let manager = config.manager_for_workloads().map(str::to_owned);
    let commands = resource
        .get("commandsEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if commands {
        // A worker's runtime takes pushed commands with the token; the app never sees it.
        injected
            .secrets
            .insert("ALIEN_COMMANDS_TOKEN".into(), token.clone());
        if kind != "worker" {
            if let Some(manager) = &manager {
                injected
                    .plain
                    .insert("ALIEN_COMMANDS_URL".into(), format!("{manager}/v1"));
            }
            injected
                .plain
                .insert("ALIEN_COMMANDS_TARGET_RESOURCE_TYPE".into(), kind.into());
            injected
                .plain
                .insert("ALIEN_COMMANDS_TARGET_RESOURCE_ID".into(), id.into());
        }
    }
    let telemetry = config
        .telemetry_url
        .as_deref()
        .map(|url| url.trim_end_matches('/').to_owned())
        .or_else(|| manager.clone());
    if let Some(telemetry) = &telemetry {
        injected.plain.insert(
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT".into(),
            format!("{telemetry}/v1/logs"),
        );
        injected.plain.insert(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into(),
            format!("{telemetry}/v1/traces"),
        );
        injected.plain.insert(
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT".into(),
            format!("{telemetry}/v1/metrics"),
        );
        injected
            .plain
            .insert("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/protobuf".into());
        injected.plain.insert("OTEL_SERVICE_NAME".into(), id.into());
        injected.secrets.insert(
            "OTEL_EXPORTER_OTLP_HEADERS".into(),
            format!("authorization=Bearer {token}"),
        );
    }
    for var in &config.environment_variables.variables {
        if !var.targets(id) {
            continue;
        }
        match var.kind {
            VarKind::Plain => {
                injected.plain.insert(var.name.clone(), var.value.clone());
            }
            VarKind::Secret => {
                injected.secrets.insert(var.name.clone(), var.value.clone());
            }
        }
    }
    let secret_names: Vec<&String> = injected
        .secrets
        .keys()
        .filter(|name| name.as_str() != "ALIEN_COMMANDS_TOKEN" && !name.starts_with("OTEL_"))
        .collect();
    if !secret_names.is_empty() {
        // A change of a secret's value is an update too (the public platform restarts only
        // workers on one): the hash of the values, not the values, goes in the config.
        injected.plain.insert(
            "ALIEN_SECRETS".into(),
            serde_json::json!({
                "keys": secret_names,
                "hash": secrets_hash(&injected.secrets),
            })
            .to_string(),
        );
    }
    injected
}

/// `"env-" + sha256("name=value\n" ...)` over the secrets, in name order.
fn secrets_hash(secrets: &BTreeMap<String, String>) -> String {
    let mut hash = Sha256::new();
    for (name, value) in secrets {
        hash.update(format!("{name}={value}\n"));
    }
    format!("env-{}", hex::encode(hash.finalize()))
}

/// The configuration with `plain` merged into its `environment`.
pub fn with_environment(resource: &Value, plain: &BTreeMap<String, String>) -> Value {
    let mut config = resource.clone();
    if let Some(object) = config.as_object_mut() {
        let environment = object
            .entry("environment")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(environment) = environment.as_object_mut() {
            for (name, value) in plain {
                environment.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{EnvVar, EnvironmentSnapshot};

    fn config() -> DeploymentConfig {
        DeploymentConfig {
            deployment_name: Some("acme".into()),
            manager_url: Some("http://127.0.0.1:8080/".into()),
            deployment_token: Some("ax_deploy_secret".into()),
            environment_variables: EnvironmentSnapshot {
                variables: vec![
                    EnvVar {
                        name: "LOG".into(),
                        value: "debug".into(),
                        kind: VarKind::Plain,
                        target_resources: None,
                    },
                    EnvVar {
                        name: "DB_PASSWORD".into(),
                        value: "hunter2".into(),
                        kind: VarKind::Secret,
                        target_resources: Some(vec!["web".into()]),
                    },
                ],
            },
            ..Default::default()
        }
    }

    #[test]
    fn an_agent_s_receiver_takes_the_workloads_telemetry_instead_of_the_manager() {
        let mut config = config();
        config.telemetry_url = Some("http://127.0.0.1:4318/".into());
        let injected = for_resource("dep_1", &config, "web", "container", &json!({}));
        assert_eq!(
            injected.plain["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"],
            "http://127.0.0.1:4318/v1/logs"
        );
        let injected = for_resource("dep_1", &self::config(), "web", "container", &json!({}));
        assert_eq!(
            injected.plain["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"],
            "http://127.0.0.1:8080/v1/logs"
        );
    }

    #[test]
    fn an_agent_s_relay_is_where_the_workloads_reach_the_manager() {
        let mut config = config();
        config.workload_manager_url = Some("http://127.0.0.1:41000".into());
        let injected = for_resource(
            "dep_1",
            &config,
            "web",
            "container",
            &json!({"commandsEnabled": true}),
        );
        assert_eq!(
            injected.plain["ALIEN_COMMANDS_URL"],
            "http://127.0.0.1:41000/v1"
        );
        assert_eq!(
            injected.plain["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"],
            "http://127.0.0.1:41000/v1/logs"
        );
    }

    #[test]
    fn a_command_enabled_container_gets_the_receiver_and_its_secrets_only_at_launch() {
        let injected = for_resource(
            "dep_1",
            &config(),
            "web",
            "container",
            &json!({"commandsEnabled": true}),
        );
        assert_eq!(injected.plain["ALIEN_DEPLOYMENT_ID"], "dep_1");
        assert_eq!(injected.plain["ALIEN_DEPLOYMENT_NAME"], "acme");
        assert_eq!(
            injected.plain["ALIEN_COMMANDS_URL"],
            "http://127.0.0.1:8080/v1"
        );
        assert_eq!(injected.plain["ALIEN_COMMANDS_TARGET_RESOURCE_ID"], "web");
        assert_eq!(injected.plain["LOG"], "debug");
        assert_eq!(injected.secrets["DB_PASSWORD"], "hunter2");
        assert_eq!(injected.secrets["ALIEN_COMMANDS_TOKEN"], "ax_deploy_secret");
        let stored = serde_json::to_string(&injected.plain).expect("json");
        assert!(!stored.contains("hunter2") && !stored.contains("ax_deploy_secret"));
        assert!(injected.plain["ALIEN_SECRETS"].contains("DB_PASSWORD"));
    }

    #[test]
    fn a_worker_gets_no_receiver_url_and_untargeted_secrets_stay_out() {
        let injected = for_resource(
            "dep_1",
            &config(),
            "api",
            "worker",
            &json!({"commandsEnabled": true}),
        );
        assert!(!injected.plain.contains_key("ALIEN_COMMANDS_URL"));
        assert!(!injected.secrets.contains_key("DB_PASSWORD"));
        assert!(!injected.plain.contains_key("ALIEN_SECRETS"));
        assert_eq!(injected.secrets["ALIEN_COMMANDS_TOKEN"], "ax_deploy_secret");
    }
}
