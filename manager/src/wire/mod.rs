//! The public manager's wire types: request and response bodies as the CLI and the agents
//! send and parse them, one module per group of routes. Behaviour lives elsewhere; these
//! only say what crosses the socket.
//!
//! Conventions (docs/compatibility.md, Conventions): camelCase keys; a key that has no value
//! is omitted rather than `null` unless the public manager sends `null` there; REST
//! timestamps in the `+00:00` form, records serialized as they are (acquire payloads,
//! deployment states) with `Z`.

pub mod build_config;
pub mod deployment_groups;
pub mod deployments;
pub mod initialize;
pub mod releases;
pub mod sync;
pub mod tokens;
pub mod unsupported;

use std::fmt;

use serde::{Deserialize, Serialize};

/// The synthetic ids REST responses carry where the CLI parses them with the platform SDK,
/// whose schemas have patterns that `default` does not match.
pub const SYNTHETIC_PROJECT_ID: &str = "prj_standalone000000000000000000";
pub const SYNTHETIC_WORKSPACE_ID: &str = "ws_standalone00000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Aws,
    Gcp,
    Azure,
    Kubernetes,
    Machines,
    Local,
    Test,
}

impl Platform {
    pub const ALL: [Platform; 7] = [
        Platform::Aws,
        Platform::Gcp,
        Platform::Azure,
        Platform::Kubernetes,
        Platform::Machines,
        Platform::Local,
        Platform::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Aws => "aws",
            Platform::Gcp => "gcp",
            Platform::Azure => "azure",
            Platform::Kubernetes => "kubernetes",
            Platform::Machines => "machines",
            Platform::Local => "local",
            Platform::Test => "test",
        }
    }

    pub fn parse(value: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == value)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentModel {
    #[default]
    Push,
    Pull,
}

impl DeploymentModel {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentModel::Push => "push",
            DeploymentModel::Pull => "pull",
        }
    }
}

/// `{"success": true}`, the body of the lifecycle and lease calls that return nothing else.
#[derive(Debug, Serialize)]
pub struct Success {
    success: bool,
}

impl Success {
    pub const fn new() -> Success {
        Success { success: true }
    }
}

/// A stored `+00:00` timestamp in the `Z` form of records serialized directly.
pub fn zulu(timestamp: &str) -> String {
    match timestamp.strip_suffix("+00:00") {
        Some(utc) => format!("{utc}Z"),
        None => timestamp.to_owned(),
    }
}

pub(crate) fn is_false(value: &bool) -> bool {
    !value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_round_trip() {
        for platform in Platform::ALL {
            assert_eq!(Platform::parse(platform.as_str()), Some(platform));
            assert_eq!(
                serde_json::to_value(platform).expect("serializes"),
                serde_json::json!(platform.as_str())
            );
        }
        assert_eq!(Platform::parse("AWS"), None);
    }

    #[test]
    fn timestamps_become_zulu() {
        assert_eq!(
            zulu("2026-01-02T03:04:05.123+00:00"),
            "2026-01-02T03:04:05.123Z"
        );
        assert_eq!(zulu("2026-01-02T03:04:05Z"), "2026-01-02T03:04:05Z");
    }

    #[test]
    fn synthetic_ids_have_the_platform_shapes() {
        assert_eq!(SYNTHETIC_PROJECT_ID.len(), 4 + 28);
        assert_eq!(SYNTHETIC_WORKSPACE_ID.len(), 3 + 24);
    }
}
