//! The commands protocol's wire types (docs/compatibility.md, Commands), as the CLI, the
//! agents and the receivers send and parse them. The manager parses client bodies with these
//! and commandd answers with them, so the two cannot drift. Behaviour lives elsewhere.

pub mod signing;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `envelope.protocol`.
pub const PROTOCOL: &str = "arc.v1";

/// `inlineAllowedUpTo` and `responseHandling.maxInlineBytes`: a larger body goes through
/// storage.
pub const INLINE_MAX_BYTES: u64 = 150_000;

/// The largest body a storage URL of the local backend takes: counted by commandd as the
/// body streams to disk, and checked by the manager against a declared `Content-Length`.
pub const STORAGE_BODY_LIMIT: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandState {
    PendingUpload,
    Pending,
    Dispatched,
    Succeeded,
    Failed,
    Expired,
}

impl CommandState {
    pub const TERMINAL: [CommandState; 3] = [
        CommandState::Succeeded,
        CommandState::Failed,
        CommandState::Expired,
    ];

    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::PendingUpload => "PENDING_UPLOAD",
            CommandState::Pending => "PENDING",
            CommandState::Dispatched => "DISPATCHED",
            CommandState::Succeeded => "SUCCEEDED",
            CommandState::Failed => "FAILED",
            CommandState::Expired => "EXPIRED",
        }
    }

    pub fn parse(value: &str) -> Option<CommandState> {
        [
            CommandState::PendingUpload,
            CommandState::Pending,
            CommandState::Dispatched,
            CommandState::Succeeded,
            CommandState::Failed,
            CommandState::Expired,
        ]
        .into_iter()
        .find(|state| state.as_str() == value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    Worker,
    Container,
    Daemon,
}

impl TargetType {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::Worker => "worker",
            TargetType::Container => "container",
            TargetType::Daemon => "daemon",
        }
    }

    pub fn parse(value: &str) -> Option<TargetType> {
        [
            TargetType::Worker,
            TargetType::Container,
            TargetType::Daemon,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandTarget {
    pub resource_id: String,
    pub resource_type: TargetType,
}

/// How a command reaches its target: pushed to it, or leased by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    Push,
    Pull,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Push => "push",
            DeliveryMode::Pull => "pull",
        }
    }
}

/// A body carried inline (base64) or in blob storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum BodySpec {
    Inline {
        #[serde(rename = "inlineBase64")]
        inline_base64: String,
    },
    Storage {
        #[serde(default)]
        size: Option<u64>,
        #[serde(
            rename = "storageGetRequest",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        storage_get_request: Option<PresignedRequest>,
        #[serde(
            rename = "storagePutUsed",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        storage_put_used: Option<bool>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum CommandResponse {
    Success {
        response: BodySpec,
    },
    Error {
        code: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<String>,
    },
}

impl CommandResponse {
    pub fn error(code: &str, message: &str) -> CommandResponse {
        CommandResponse::Error {
            code: code.to_owned(),
            message: message.to_owned(),
            details: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Put,
    Get,
    Delete,
}

/// Where and how to send bytes to or fetch them from storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresignedRequest {
    pub backend: PresignedBackend,
    pub expiration: String,
    pub operation: Operation,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PresignedBackend {
    Http {
        url: String,
        method: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    Local {
        #[serde(rename = "filePath")]
        file_path: String,
        operation: Operation,
    },
}

/// `POST /v1/commands`. Unknown fields are ignored, as in the public manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCommandRequest {
    pub deployment_id: String,
    pub command: String,
    pub params: BodySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_resource_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageUpload {
    pub put_request: PresignedRequest,
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCommandResponse {
    pub command_id: String,
    pub state: CommandState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_upload: Option<StorageUpload>,
    pub inline_allowed_up_to: u64,
    pub next: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadCompleteRequest {
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadCompleteResponse {
    pub command_id: String,
    pub state: CommandState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandStatusResponse {
    pub command_id: String,
    pub state: CommandState,
    pub attempt: u32,
    pub target: CommandTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<CommandResponse>,
}

/// `POST /v1/commands/leases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRequest {
    pub deployment_id: String,
    pub target: CommandTarget,
    #[serde(default = "default_max_leases")]
    pub max_leases: u32,
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
}

fn default_max_leases() -> u32 {
    1
}

fn default_lease_seconds() -> u64 {
    60
}

/// The longest lease a receiver may ask for: a day, well beyond any worker's timeout. There
/// is no renewal, so a lease is the whole run of a command; one longer than this would hold
/// a command away from every other receiver for longer than anyone waits for it.
pub const MAX_LEASE_SECONDS: u64 = 24 * 60 * 60;

impl LeaseRequest {
    /// Why the request cannot be served, if it cannot.
    pub fn problem(&self) -> Option<String> {
        (self.lease_seconds > MAX_LEASE_SECONDS).then(|| {
            format!(
                "leaseSeconds must be at most {MAX_LEASE_SECONDS} (a day), got {}",
                self.lease_seconds
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseResponse {
    pub leases: Vec<LeaseInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseInfo {
    pub lease_id: String,
    pub lease_expires_at: String,
    pub command_id: String,
    pub attempt: u32,
    pub envelope: Envelope,
}

/// What a deployment receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub protocol: String,
    pub deployment_id: String,
    pub target: CommandTarget,
    pub command_id: String,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    pub command: String,
    pub params: BodySpec,
    pub response_handling: ResponseHandling,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseHandling {
    pub max_inline_bytes: u64,
    pub submit_response_url: String,
    pub storage_upload_request: PresignedRequest,
}

/// `GET /v1/commands/{id}/payload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadResponse {
    pub command_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BodySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<CommandResponse>,
}

/// `PUT /v1/commands/{id}/payload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorePayloadRequest {
    #[serde(default)]
    pub params: Option<BodySpec>,
    #[serde(default)]
    pub response: Option<CommandResponse>,
}

/// The two bodies a command keeps in storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Params,
    Response,
}

impl BlobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlobKind::Params => "params",
            BlobKind::Response => "response",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bodies_and_responses_have_the_public_shapes() {
        let storage: BodySpec =
            serde_json::from_value(json!({"mode": "storage", "size": 5})).expect("storage body");
        assert_eq!(
            serde_json::to_value(&storage).expect("serializes"),
            json!({"mode": "storage", "size": 5})
        );
        let response: CommandResponse = serde_json::from_value(json!({
            "status": "success", "response": {"mode": "inline", "inlineBase64": "e30="}
        }))
        .expect("response");
        assert!(matches!(response, CommandResponse::Success { .. }));
        assert_eq!(
            serde_json::to_value(CommandResponse::error("X", "y")).expect("serializes"),
            json!({"status": "error", "code": "X", "message": "y"})
        );
        let lease: LeaseRequest = serde_json::from_value(json!({
            "deploymentId": "dep_1", "target": {"resourceId": "api", "resourceType": "container"}
        }))
        .expect("lease request");
        assert_eq!((lease.max_leases, lease.lease_seconds), (1, 60));
        for state in [
            CommandState::PendingUpload,
            CommandState::Dispatched,
            CommandState::Expired,
        ] {
            assert_eq!(
                serde_json::to_value(state).expect("serializes"),
                json!(state.as_str())
            );
            assert_eq!(CommandState::parse(state.as_str()), Some(state));
        }
    }
}
