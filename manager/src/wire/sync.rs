//! The sync family: leases for push clients, and the pull agent's sync.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{DeploymentModel, Platform, is_false};
use crate::lifecycle::DeploymentStatus;

/// A deployment's state as the engine reports it and as the manager hands it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentState {
    pub status: DeploymentStatus,
    pub platform: Platform,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_release: Option<ReleaseInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_release: Option<ReleaseInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_state: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_info: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub retry_requested: bool,
    pub protocol_version: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub stack: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcquireRequest {
    pub session: String,
    pub deployment_model: DeploymentModel,
    pub deployment_ids: Option<Vec<String>>,
    pub platforms: Option<Vec<Platform>>,
    pub statuses: Option<Vec<String>>,
    pub acquire_mode: Option<String>,
    /// Accepted and, as in the public manager's store, not acted on.
    #[serde(rename = "setupMethod")]
    pub _setup_method: Option<String>,
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    10
}

#[derive(Debug, Serialize)]
pub struct AcquireResponse {
    pub deployments: Vec<AcquiredDeployment>,
}

#[derive(Debug, Serialize)]
pub struct AcquiredDeployment {
    pub deployment: DeploymentRecord,
}

/// The stored deployment as the public manager serializes its record: `Z` timestamps,
/// internal workspace and project, some keys `null` rather than omitted. The raw deployment
/// token is never part of it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    pub id: String,
    pub workspace_id: String,
    pub project_id: String,
    pub name: String,
    pub deployment_group_id: String,
    pub platform: String,
    pub deployment_protocol_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_platform: Option<String>,
    pub status: String,
    pub stack_settings: Box<RawValue>,
    pub stack_state: Option<Box<RawValue>>,
    pub environment_info: Option<Box<RawValue>>,
    pub runtime_metadata: Option<Box<RawValue>>,
    pub current_release_id: Option<String>,
    pub desired_release_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_metadata: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_fingerprint_version: Option<i64>,
    pub user_environment_variables: Option<Box<RawValue>>,
    pub input_values: Box<RawValue>,
    pub retry_requested: bool,
    pub locked_by: Option<String>,
    pub locked_at: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
    pub error: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileRequest {
    pub deployment_id: String,
    pub session: String,
    /// Parsed after authorization, so that a bad state is the public manager's 400 after the
    /// 404 and the 403, not a 422.
    pub state: Box<RawValue>,
    /// Accepted as a boolean or `null`; the standalone store keeps no heartbeats.
    #[serde(rename = "updateHeartbeat")]
    pub _update_heartbeat: Option<bool>,
    pub suggested_delay_ms: Option<u64>,
    #[serde(rename = "resourceHeartbeats")]
    pub _resource_heartbeats: Option<Vec<IgnoredAny>>,
    #[serde(rename = "observedInventoryBatches")]
    pub _observed_inventory_batches: Option<Vec<IgnoredAny>>,
    #[serde(rename = "capabilities")]
    pub _capabilities: Option<Vec<IgnoredAny>>,
    #[serde(rename = "operatorVersion")]
    pub _operator_version: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileResponse {
    pub success: bool,
    pub current: DeploymentState,
}

/// The body of `renew` and `release`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncSessionRequest {
    pub deployment_id: String,
    pub session: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSyncRequest {
    pub deployment_id: String,
    /// Parsed leniently: a report that is not a state is ignored, not refused.
    pub current_state: Option<Box<RawValue>>,
    /// Our long-poll extension, also accepted in the query; read by hand, so that a bad value
    /// is the same 400 in both places.
    pub wait_seconds: Option<Value>,
    /// Accepted and, as in the public manager's standalone store, not stored.
    #[serde(rename = "resourceHeartbeats")]
    pub _resource_heartbeats: Option<Vec<IgnoredAny>>,
    #[serde(rename = "observedInventoryBatches")]
    pub _observed_inventory_batches: Option<Vec<IgnoredAny>>,
    #[serde(rename = "capabilities")]
    pub _capabilities: Option<Vec<IgnoredAny>>,
    #[serde(rename = "operatorVersion")]
    pub _operator_version: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSyncResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_state: Option<DeploymentState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<SyncTarget>,
    pub commands_url: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncTarget {
    pub release_info: TargetRelease,
    pub config: DeploymentConfig,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRelease {
    pub release_id: String,
    pub stack: Box<RawValue>,
}

/// What an agent needs to deploy a target: settings, inputs, and how to reach the manager.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfig {
    pub deployment_name: String,
    pub stack_settings: Value,
    pub input_values: Box<RawValue>,
    pub environment_variables: EnvironmentSnapshot,
    pub external_bindings: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_platform: Option<String>,
    pub manager_url: String,
    /// The bearer the agent called with; absent when it used Basic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_token: Option<String>,
    pub observe_all_namespaces: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSnapshot {
    pub variables: Box<RawValue>,
    pub hash: &'static str,
    pub created_at: &'static str,
}

/// What deployd deploys a deployment with (not a public route).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub state: DeploymentState,
    pub config: DeploymentConfig,
}
