//! Pieces shared by the workload configs: where the code comes from, public endpoints, resource
//! requests, health checks, and the range checks done while deserializing.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// A workload's code: a built image, or a source directory `alien build` turns into one. The
/// engine runs images only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Code {
    Image { image: String },
    Source { src: String, toolchain: Toolchain },
}

/// How a source directory is built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Toolchain {
    #[serde(rename_all = "camelCase")]
    Rust { binary_name: String },
    #[serde(rename_all = "camelCase")]
    TypeScript {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        binary_name: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Docker {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dockerfile: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        build_args: Option<BTreeMap<String, String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExposeProtocol {
    Http,
    Tcp,
}

/// A public endpoint of a container or daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicEndpoint {
    pub name: String,
    pub port: u16,
    pub protocol: ExposeProtocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_label: Option<String>,
    #[serde(default)]
    pub wildcard_subdomains: bool,
}

/// A CPU or memory request: `{"min": "0.5", "desired": "1"}` (memory with a Ki/Mi/Gi/Ti suffix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSpec {
    pub min: String,
    pub desired: String,
}

/// An HTTP health check of a container or daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default = "default_health_method")]
    pub method: String,
    #[serde(default = "default_health_timeout")]
    pub timeout_seconds: u32,
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
}

fn default_health_path() -> String {
    "/health".to_owned()
}

fn default_health_method() -> String {
    "GET".to_owned()
}

fn default_health_timeout() -> u32 {
    1
}

fn default_failure_threshold() -> u32 {
    3
}

/// The longest stop grace period: a day.
const MAX_STOP_GRACE_PERIOD_SECONDS: u32 = 86_400;

/// `stopGracePeriodSeconds`, when given, is 1 second to a day.
pub(crate) fn stop_grace_period<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    let value = Option::<u32>::deserialize(deserializer)?;
    match value {
        Some(seconds) if !(1..=MAX_STOP_GRACE_PERIOD_SECONDS).contains(&seconds) => {
            Err(serde::de::Error::custom(format!(
                "stopGracePeriodSeconds must be between 1 and {MAX_STOP_GRACE_PERIOD_SECONDS}, got {seconds}"
            )))
        }
        _ => Ok(value),
    }
}
