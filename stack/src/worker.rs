//! `worker`: a serverless workload behind the worker runtime.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};

use crate::resource::ResourceRef;
use crate::shared::Code;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Worker {
    pub id: String,
    /// Each link becomes a binding of the worker.
    pub links: Vec<ResourceRef>,
    /// What invokes the worker besides HTTP; empty when nothing does, but always given.
    pub triggers: Vec<Trigger>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_endpoints: Vec<WorkerPublicEndpoint>,
    /// The permission profile the worker runs as.
    pub permissions: String,
    pub code: Code,
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u32,
    #[serde(
        default = "default_timeout_seconds",
        deserialize_with = "timeout_seconds"
    )]
    pub timeout_seconds: u32,
    #[serde(default)]
    pub environment: IndexMap<String, String>,
    #[serde(default)]
    pub commands_enabled: bool,
    /// Serialized as `null` when absent, as the public platform does.
    #[serde(default)]
    pub concurrency_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub sandbox_launcher: bool,
    /// Serialized as `null` when absent, as the public platform does.
    #[serde(default)]
    pub readiness_probe: Option<ReadinessProbe>,
}

impl Worker {
    /// Links, then the queue or storage of each trigger.
    pub fn intrinsic_dependencies(&self) -> Vec<ResourceRef> {
        let mut dependencies = self.links.clone();
        dependencies.extend(self.triggers.iter().filter_map(|trigger| match trigger {
            Trigger::Queue { queue } => Some(queue.clone()),
            Trigger::Storage { storage, .. } => Some(storage.clone()),
            Trigger::Schedule { .. } => None,
        }));
        dependencies
    }
}

/// What invokes a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Trigger {
    /// One message of the queue per invocation.
    Queue { queue: ResourceRef },
    /// Events (`created`, `deleted`, …) on objects of the storage.
    Storage {
        storage: ResourceRef,
        events: Vec<String>,
    },
    /// A 5-field unix cron expression.
    Schedule { cron: String },
}

/// A public endpoint of a worker (no port: a worker has one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPublicEndpoint {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_label: Option<String>,
    #[serde(default)]
    pub wildcard_subdomains: bool,
}

/// The request that tells whether a worker is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessProbe {
    #[serde(default)]
    pub method: HttpMethod,
    #[serde(default = "default_probe_path")]
    pub path: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Post,
    Put,
    Delete,
    Head,
    Options,
    Patch,
}

fn default_probe_path() -> String {
    "/".to_owned()
}

fn default_memory_mb() -> u32 {
    512
}

fn default_timeout_seconds() -> u32 {
    180
}

/// The longest a worker invocation may take: an hour.
const MAX_TIMEOUT_SECONDS: u32 = 3600;

fn timeout_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let seconds = u32::deserialize(deserializer)?;
    if (1..=MAX_TIMEOUT_SECONDS).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(serde::de::Error::custom(format!(
            "timeoutSeconds must be between 1 and {MAX_TIMEOUT_SECONDS}, got {seconds}"
        )))
    }
}

fn is_false(value: &bool) -> bool {
    !value
}
