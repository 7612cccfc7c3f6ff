//! Deployments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{DeploymentModel, Platform};

/// Deployment settings as the engine types them. Unknown keys are dropped, as the public
/// manager's typed parse drops them; a push model is stored as the absent default, and so are
/// `updates: auto`, `telemetry: auto` and `heartbeats: on`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domains: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_endpoints: Option<BTreeMap<String, BTreeMap<String, String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_model: Option<DeploymentModel>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub updates: UpdatesMode,
    #[serde(default, skip_serializing_if = "is_default")]
    pub telemetry: TelemetryMode,
    #[serde(default, skip_serializing_if = "is_default")]
    pub heartbeats: HeartbeatsMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_bindings: Option<Map<String, Value>>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdatesMode {
    #[default]
    Auto,
    ApprovalRequired,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TelemetryMode {
    Off,
    #[default]
    Auto,
    ApprovalRequired,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeartbeatsMode {
    Off,
    #[default]
    On,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentVariable {
    pub name: String,
    pub value: String,
    #[serde(rename = "type")]
    pub kind: EnvironmentVariableType,
    /// `None`: every resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_resources: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentVariableType {
    Plain,
    Secret,
}

/// Unknown fields are ignored, as in the public manager.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDeploymentRequest {
    pub name: String,
    pub platform: Platform,
    pub deployment_group_id: Option<String>,
    pub stack_settings: Option<StackSettings>,
    pub environment_variables: Option<Vec<EnvironmentVariable>>,
    pub resource_prefix: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDeploymentResponse {
    pub deployment: DeploymentResponse,
    pub deployment_model: DeploymentModel,
    pub token: String,
}

/// A deployment as REST answers show it: never its token, lock, inputs or schedule.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentResponse {
    pub id: String,
    pub name: String,
    pub platform: String,
    pub status: String,
    pub deployment_group_id: String,
    pub deployment_protocol_version: u32,
    pub project_id: &'static str,
    pub workspace_id: &'static str,
    pub stack_settings: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_state: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_info: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_metadata: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_release_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_release_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_source: Option<String>,
    pub retry_requested: bool,
    pub created_at: String,
    /// The creation time until the first change.
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_group: Option<DeploymentGroupMinimal>,
}

#[derive(Debug, Serialize)]
pub struct DeploymentGroupMinimal {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDeploymentsResponse {
    pub items: Vec<DeploymentResponse>,
    /// Always `null`: nothing is paginated.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DeleteDeploymentRequest {
    pub action: DeleteAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteAction {
    /// Tear the infrastructure down, then forget the deployment.
    Cleanup,
    /// Forget the deployment and leave its infrastructure running.
    Detach,
    Forget,
}

#[derive(Debug, Serialize)]
pub struct DeleteDeploymentResponse {
    pub action: DeleteAction,
    pub message: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentInfoResponse {
    pub commands: CommandsInfo,
    pub resources: BTreeMap<String, ResourceEntry>,
    pub status: String,
    pub platform: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<RawValue>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandsInfo {
    pub url: String,
    pub deployment_id: String,
}

#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceEntry {
    pub resource_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub public_endpoints: Map<String, Value>,
}
