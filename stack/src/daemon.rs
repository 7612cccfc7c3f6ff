//! `daemon`: a supervised long-running process.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::resource::ResourceRef;
use crate::shared::{Code, HealthCheck, PublicEndpoint, ResourceSpec, stop_grace_period};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Daemon {
    pub id: String,
    pub links: Vec<ResourceRef>,
    /// The first endpoint's port is the daemon's `PORT`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_endpoints: Vec<PublicEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub permissions: String,
    pub code: Code,
    #[serde(default = "default_cpu")]
    pub cpu: ResourceSpec,
    #[serde(default = "default_memory")]
    pub memory: ResourceSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Replaces the image's whole command (entrypoint and cmd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// How long a stop waits between SIGTERM and SIGKILL; 30 s when absent.
    #[serde(
        default,
        deserialize_with = "stop_grace_period",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_grace_period_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<DaemonRuntime>,
    #[serde(default)]
    pub environment: IndexMap<String, String>,
    #[serde(default)]
    pub commands_enabled: bool,
}

impl Daemon {
    /// The grace period a stop gives the daemon when the stack names none.
    pub const DEFAULT_STOP_GRACE_PERIOD_SECONDS: u32 = 30;

    /// `stopGracePeriodSeconds`, or its default.
    pub fn stop_grace_period_seconds(&self) -> u32 {
        self.stop_grace_period_seconds
            .unwrap_or(Self::DEFAULT_STOP_GRACE_PERIOD_SECONDS)
    }
}

/// Host-level settings of a trusted daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonRuntime {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// `host` or `private`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_namespace: Option<String>,
    /// `host` or `appnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<DaemonRuntimeMount>,
    /// `uid` or `uid:gid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonRuntimeMount {
    pub source: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
}

fn default_cpu() -> ResourceSpec {
    ResourceSpec {
        min: "0.1".to_owned(),
        desired: "0.1".to_owned(),
    }
}

fn default_memory() -> ResourceSpec {
    ResourceSpec {
        min: "128Mi".to_owned(),
        desired: "128Mi".to_owned(),
    }
}
