//! Deployment groups.

use serde::{Deserialize, Serialize};

/// Unknown fields are ignored and neither the name nor the maximum is checked, as in the
/// public manager.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDeploymentGroupRequest {
    pub name: String,
    pub max_deployments: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentGroupResponse {
    pub id: String,
    pub name: String,
    pub max_deployments: i64,
    pub deployment_count: i64,
    pub created_at: String,
    pub project_id: &'static str,
    pub workspace_id: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDeploymentGroupsResponse {
    pub items: Vec<DeploymentGroupResponse>,
    /// Always `null`: nothing is paginated.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTokenResponse {
    pub token: String,
    pub deployment_group_id: String,
    /// Ours: the one-liner that installs the agent with this token from this manager. The
    /// document's schema leaves the object open to more properties. Absent when the base
    /// URL cannot be put in the install script.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_command: Option<String>,
}
