//! Releases.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Platform;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateReleaseRequest {
    pub stack: StackByPlatform,
    /// `alien release` sends `project`.
    #[serde(alias = "project")]
    pub project_id: String,
    pub git_metadata: Option<GitMetadata>,
}

/// One stack per platform, kept as the client's text: resources are ordered as declared, and
/// that order decides command targets. A `null` platform is absent; other keys are ignored.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StackByPlatform {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcp: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machines: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Box<RawValue>>,
}

impl StackByPlatform {
    /// The platforms present, in the order of [`Platform::ALL`].
    pub fn present(&self) -> Vec<(Platform, &RawValue)> {
        [
            (Platform::Aws, &self.aws),
            (Platform::Gcp, &self.gcp),
            (Platform::Azure, &self.azure),
            (Platform::Kubernetes, &self.kubernetes),
            (Platform::Machines, &self.machines),
            (Platform::Local, &self.local),
            (Platform::Test, &self.test),
        ]
        .into_iter()
        .filter_map(|(platform, stack)| stack.as_deref().map(|stack| (platform, stack)))
        .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_sha: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_message: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseResponse {
    pub id: String,
    pub workspace_id: String,
    pub project_id: String,
    pub stack: Box<RawValue>,
    /// Omitted when the release has no commit, sha, ref or message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_metadata: Option<GitMetadata>,
    pub created_at: String,
    /// Always `{}`: the CLI requires the key, and the standalone manager tracks none.
    pub setup_fingerprints: Empty,
}

/// Serializes as `{}`.
#[derive(Debug, Serialize)]
pub struct Empty {}

#[derive(Debug, Serialize)]
pub struct ListReleasesResponse {
    pub items: Vec<ReleaseResponse>,
}
