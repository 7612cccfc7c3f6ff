//! The configuration a deployment is deployed with (what the manager's plan carries).

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfig {
    #[serde(default)]
    pub deployment_name: Option<String>,
    #[serde(default)]
    pub stack_settings: Value,
    #[serde(default)]
    pub environment_variables: EnvironmentSnapshot,
    #[serde(default)]
    pub manager_url: Option<String>,
    /// The deployment's own token: image pulls, pushed commands, telemetry.
    #[serde(default)]
    pub deployment_token: Option<String>,
    /// Ours, never on the wire: where workloads send their own telemetry when not to the
    /// manager (a pull agent's OTLP receiver on its machine, which queues it durably).
    #[serde(skip)]
    pub telemetry_url: Option<String>,
    /// Ours, never on the wire: where workloads reach the manager when not at
    /// `manager_url` (a pull agent's plain-HTTP relay on its machine).
    #[serde(skip)]
    pub workload_manager_url: Option<String>,
}

impl DeploymentConfig {
    /// The manager's URL as the deployment's workloads reach it, without a trailing `/`.
    pub fn manager_for_workloads(&self) -> Option<&str> {
        self.workload_manager_url
            .as_deref()
            .or(self.manager_url.as_deref())
            .map(|url| url.trim_end_matches('/'))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSnapshot {
    #[serde(default)]
    pub variables: Vec<EnvVar>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value: String,
    #[serde(rename = "type", default)]
    pub kind: VarKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_resources: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VarKind {
    #[default]
    Plain,
    Secret,
}

impl EnvVar {
    /// Whether the variable reaches resource `id`: every compute resource without targets,
    /// none with an empty list, else an exact id or a prefix ending in `*`.
    pub fn targets(&self, id: &str) -> bool {
        match &self.target_resources {
            None => true,
            Some(patterns) => patterns
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => id.starts_with(prefix),
                    None => pattern == id,
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(targets: Option<&[&str]>) -> EnvVar {
        EnvVar {
            name: "X".into(),
            value: "1".into(),
            kind: VarKind::Plain,
            target_resources: targets.map(|t| t.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn targeting_is_exact_or_a_trailing_star_prefix() {
        assert!(var(None).targets("api"));
        assert!(!var(Some(&[])).targets("api"));
        assert!(var(Some(&["*"])).targets("api"));
        assert!(var(Some(&["ap*"])).targets("api"));
        assert!(!var(Some(&["a*i"])).targets("api"));
        assert!(var(Some(&["a*i"])).targets("a*i"));
        assert!(!var(Some(&["web"])).targets("api"));
    }
}
