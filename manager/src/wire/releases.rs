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

/// One stack per platform, as JSON text: the client's on the way in, the parsed stack with its
/// defaults filled in once stored. Resources keep their declared order, which decides command
/// targets. A `null` platform is absent; other keys are ignored.
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

    /// Where `platform`'s stack goes.
    pub fn slot_mut(&mut self, platform: Platform) -> &mut Option<Box<RawValue>> {
        match platform {
            Platform::Aws => &mut self.aws,
            Platform::Gcp => &mut self.gcp,
            Platform::Azure => &mut self.azure,
            Platform::Kubernetes => &mut self.kubernetes,
            Platform::Machines => &mut self.machines,
            Platform::Local => &mut self.local,
            Platform::Test => &mut self.test,
        }
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
