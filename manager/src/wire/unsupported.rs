//! Bodies of the calls that need cloud code this manager does not have (stack import,
//! credential minting, binding resolution, the vault). They are parsed all the same, so that
//! a client learns about a malformed request before it learns that the manager cannot serve
//! it.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use super::Platform;
use super::deployments::StackSettings;

/// `POST /v1/stack/import`, after its format version was checked.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackImportRequest {
    #[serde(rename = "setupImportFormatVersion")]
    pub _setup_import_format_version: u32,
    /// Informational: the caller's bearer is what authorizes the import.
    #[serde(rename = "deploymentGroupToken")]
    pub _deployment_group_token: String,
    pub deployment_name: String,
    pub resource_prefix: String,
    pub platform: Platform,
    #[serde(rename = "region")]
    pub _region: String,
    #[serde(rename = "setupTarget")]
    pub _setup_target: String,
    #[serde(rename = "setupFingerprint")]
    pub _setup_fingerprint: String,
    #[serde(rename = "setupFingerprintVersion")]
    pub _setup_fingerprint_version: u32,
    #[serde(rename = "stackSettings")]
    pub _stack_settings: StackSettings,
    pub resources: Vec<ImportedResource>,
    #[serde(rename = "sourceKind")]
    pub _source_kind: Option<ImportSourceKind>,
    #[serde(rename = "setupMetadata")]
    pub _setup_metadata: Option<IgnoredAny>,
    #[serde(rename = "releaseId")]
    pub _release_id: Option<String>,
    #[serde(rename = "basePlatform")]
    pub _base_platform: Option<Platform>,
    #[serde(rename = "managementConfig")]
    pub _management_config: Option<Map<String, Value>>,
    #[serde(rename = "inputValues")]
    pub _input_values: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportedResource {
    #[serde(rename = "id")]
    pub _id: String,
    #[serde(rename = "type")]
    pub _kind: String,
    #[serde(rename = "importData")]
    pub _import_data: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportSourceKind {
    Cloudformation,
    Terraform,
    Helm,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MintCredentialsRequest {
    pub deployment_id: String,
    pub resource_id: String,
    pub binding_name: String,
    #[serde(rename = "durationSeconds")]
    pub _duration_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResolveBindingRequest {
    pub deployment_id: String,
    pub resource_id: Option<String>,
    pub kind: Option<BindingKind>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingKind {
    Ai,
}

/// `PUT /v1/deployments/{id}/vault/{vault}/secrets/{key}`.
#[derive(Debug, Deserialize)]
pub struct VaultSecretRequest {
    #[serde(rename = "value")]
    pub _value: String,
}
