//! The deployment state the engine steps, in the JSON shape the manager stores and the
//! public platform's clients read (`DeploymentState`, `stackState`).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
pub use stack::{Lifecycle, ResourceRef};

/// A deployment's status, kebab-case on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pending,
    InitialSetup,
    Provisioning,
    Running,
    UpdatePending,
    Updating,
    DeletePending,
    Deleting,
    Deleted,
    TeardownRequired,
    PreflightsFailed,
    InitialSetupFailed,
    ProvisioningFailed,
    UpdateFailed,
    RefreshFailed,
    DeleteFailed,
    #[serde(other)]
    Other,
}

impl Status {
    /// The failed status a failure during `self` lands in.
    pub fn failed(self) -> Status {
        match self {
            Status::Pending => Status::PreflightsFailed,
            Status::InitialSetup => Status::InitialSetupFailed,
            Status::Provisioning => Status::ProvisioningFailed,
            Status::Running => Status::RefreshFailed,
            Status::UpdatePending | Status::Updating => Status::UpdateFailed,
            Status::DeletePending | Status::Deleting => Status::DeleteFailed,
            other => other,
        }
    }

    /// Where a retry of a failed status resumes.
    pub fn resumed(self) -> Option<Status> {
        Some(match self {
            Status::PreflightsFailed => Status::Pending,
            Status::InitialSetupFailed => Status::InitialSetup,
            Status::ProvisioningFailed => Status::Provisioning,
            Status::UpdateFailed => Status::UpdatePending,
            Status::RefreshFailed => Status::Running,
            Status::DeleteFailed => Status::DeletePending,
            _ => return None,
        })
    }

    pub fn is_failed(self) -> bool {
        self.resumed().is_some()
    }

    pub fn is_deleting(self) -> bool {
        matches!(
            self,
            Status::DeletePending | Status::Deleting | Status::DeleteFailed
        )
    }

    /// Nothing left to do until a new release, a retry or a delete.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Status::Running | Status::Deleted | Status::TeardownRequired
        ) || self.is_failed()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentState {
    pub status: Status,
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_release: Option<ReleaseInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_release: Option<ReleaseInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_state: Option<StackState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_info: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_requested: bool,
    pub protocol_version: u32,
}

impl DeploymentState {
    /// A deployment nothing has happened to yet.
    pub fn new(platform: &str) -> DeploymentState {
        DeploymentState {
            status: Status::Pending,
            platform: platform.to_owned(),
            current_release: None,
            target_release: None,
            stack_state: None,
            error: None,
            environment_info: None,
            runtime_metadata: None,
            retry_requested: false,
            protocol_version: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Kept as text: its resources' order is their declaration order.
    pub stack: Box<RawValue>,
}

impl ReleaseInfo {
    pub fn id(&self) -> Option<&str> {
        self.release_id.as_deref()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackState {
    pub platform: String,
    /// In the prepared stack's declaration order.
    pub resources: IndexMap<String, ResourceState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_prefix: Option<String>,
}

/// One resource's entry of `stackState.resources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceState {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: ResourceStatus,
    pub config: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Value>,
    #[serde(default, rename = "_internal", skip_serializing_if = "Option::is_none")]
    pub internal: Option<Value>,
    pub lifecycle: Lifecycle,
    #[serde(default)]
    pub dependencies: Vec<ResourceRef>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_config: Option<Value>,
    /// The status a retry restores (ours: the public platform keeps its controller state
    /// here; ours are single steps, so the status is all there is to restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_state: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_binding_params: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_platform: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceStatus {
    Pending,
    Provisioning,
    ProvisionFailed,
    Running,
    Updating,
    UpdateFailed,
    Deleting,
    DeleteFailed,
    Deleted,
    RefreshFailed,
    TeardownRequired,
}

impl ResourceStatus {
    pub fn is_failed(self) -> bool {
        matches!(
            self,
            ResourceStatus::ProvisionFailed
                | ResourceStatus::UpdateFailed
                | ResourceStatus::DeleteFailed
                | ResourceStatus::RefreshFailed
        )
    }

    /// Work the engine still has to do on the resource.
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            ResourceStatus::Pending
                | ResourceStatus::Provisioning
                | ResourceStatus::Updating
                | ResourceStatus::Deleting
        )
    }

    /// The failed status of a resource that was doing `self`.
    pub fn failed_from(self) -> ResourceStatus {
        match self {
            ResourceStatus::Pending | ResourceStatus::Provisioning => {
                ResourceStatus::ProvisionFailed
            }
            ResourceStatus::Updating => ResourceStatus::UpdateFailed,
            ResourceStatus::Deleting => ResourceStatus::DeleteFailed,
            ResourceStatus::Running => ResourceStatus::RefreshFailed,
            other => other,
        }
    }
}
