//! `POST /v1/initialize`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::deployments::StackSettings;
use super::{DeploymentModel, Platform};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeRequest {
    pub name: Option<String>,
    pub platform: Option<Platform>,
    pub base_platform: Option<Platform>,
    pub initial_desired_release: InitialDesiredRelease,
    pub stack_settings: Option<StackSettings>,
    pub input_values: Option<Map<String, Value>>,
    /// Accepted for the operator's one initialize contract; the standalone manager has no
    /// use for them.
    #[serde(rename = "scope")]
    pub _scope: Option<String>,
    #[serde(rename = "permission")]
    pub _permission: Option<String>,
    #[serde(rename = "setupMethod")]
    pub _setup_method: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialDesiredRelease {
    Active,
    None,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResponse {
    pub deployment_id: String,
    pub deployment_model: DeploymentModel,
    /// Only when a deployment-group token registered the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}
