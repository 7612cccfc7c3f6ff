//! `container`: a long-running image with declared ports.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::resource::ResourceRef;
use crate::shared::{Code, HealthCheck, PublicEndpoint, ResourceSpec, stop_grace_period};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    pub id: String,
    pub links: Vec<ResourceRef>,
    /// The ports the container listens on; always given.
    pub ports: Vec<ContainerPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_endpoints: Vec<PublicEndpoint>,
    /// The compute cluster it runs on; `compute` is assigned when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub code: Code,
    pub cpu: ResourceSpec,
    pub memory: ResourceSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_storage: Option<PersistentStorage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<ContainerAutoscaling>,
    #[serde(default)]
    pub stateful: bool,
    #[serde(default)]
    pub environment: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    pub permissions: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Replaces the image's entrypoint (and its cmd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub commands_enabled: bool,
    #[serde(
        default,
        deserialize_with = "stop_grace_period",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_grace_period_seconds: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPort {
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    #[serde(rename = "type")]
    pub kind: String,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistentStorage {
    pub size: String,
    pub mount_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerAutoscaling {
    pub min: u32,
    pub desired: u32,
    pub max: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cpu_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_memory_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_http_in_flight_per_replica: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_http_p95_latency_ms: Option<f64>,
}
