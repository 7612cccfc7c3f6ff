//! What crosses commandd's socket: the manager's forwarded requests, each with the facts
//! commandd needs and may not look up itself (it has no access to the manager's database).
//!
//! The manager authenticates and authorizes every public request first; commandd trusts what
//! reaches its socket. Paths mirror the public ones without the `/v1` prefix:
//!
//! | socket | public | body |
//! |---|---|---|
//! | `POST /commands` | `POST /v1/commands` | [`Create`] |
//! | `GET /commands/{id}/owner` | (authorization) | → [`Owner`] |
//! | `GET /commands/{id}?waitSeconds=` | `GET /v1/commands/{id}` | → status |
//! | `POST /commands/{id}/upload-complete` | same | [`UploadComplete`] |
//! | `PUT /commands/{id}/response` | same | [`Submit`] |
//! | `GET`/`PUT /commands/{id}/payload` | same | the public bodies |
//! | `POST /leases` | `POST /v1/commands/leases` | [`Acquire`] |
//! | `GET /leases/{id}/owner` | (authorization) | → [`Owner`] |
//! | `POST /leases/{id}/release` | same | none |
//! | `GET`/`PUT /storage/{id}/{params\|response}` | `/v1/commands/storage/...` (signed) | raw bytes |
//!
//! Errors come back as the public error envelope with its status; the manager passes them on
//! as they are.

use std::collections::BTreeMap;

use plumbing::config::Secret;
use serde::{Deserialize, Serialize};

use crate::commands::{
    CommandResponse, CommandTarget, CreateCommandRequest, DeliveryMode, LeaseRequest,
    UploadCompleteRequest,
};

/// The reserved target of the operator itself: only callers with the operations capability,
/// which no standalone token has, may address it.
pub const OPERATOR_TARGET: &str = "operator";

/// The longest `waitSeconds` a long poll may ask for; more is cut to this.
pub const MAX_WAIT_SECONDS: u64 = 30;

/// Who called, as the manager authenticated them; commandd logs it and decides nothing on it
/// (the manager has authorized the call already).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Principal {
    /// A bearer token: its record id and role.
    Token { token_id: String, role: String },
    /// A signed `response_token` in the submit URL, no bearer.
    ResponseToken,
}

/// A deployment as commands see it, read by the manager from its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentFacts {
    pub id: String,
    /// Kebab-case status; commands are refused unless it is `running`.
    pub status: String,
    pub platform: String,
    /// `stackSettings.deploymentModel`, push when the settings leave it out.
    pub deployment_model: DeliveryMode,
    /// The command-capable resources of the current release's stack for the platform, in
    /// declaration order; empty without a current release.
    pub targets: Vec<CommandTarget>,
    /// What the manager itself knows of each worker's runtime, for push delivery: never
    /// taken from a state a client reported (its stack state), since a push target there
    /// would let a client point commandd, carrying the deployment's token, at any address.
    /// The manager runs no worker runtimes yet, so it sends none and every push is refused.
    #[serde(default)]
    pub workers: BTreeMap<String, WorkerFacts>,
    /// The deployment's own token, which a pushed command carries as its bearer: the local
    /// runtime accepts nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerFacts {
    /// The runtime's status (`running`, ...), if known.
    pub status: Option<String>,
    /// The `http://` URL the runtime takes pushed envelopes at.
    pub push_target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Create {
    pub principal: Principal,
    pub deployment: DeploymentFacts,
    pub request: CreateCommandRequest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadComplete {
    pub principal: Principal,
    pub deployment: DeploymentFacts,
    pub request: UploadCompleteRequest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Submit {
    pub principal: Principal,
    pub response: CommandResponse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Acquire {
    pub principal: Principal,
    pub request: LeaseRequest,
    /// Answer as soon as a command is available, waiting at most this long (an extension;
    /// absent: answer at once, as the public manager does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// The deployment a command or a lease belongs to, for authorizing a call on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub deployment_id: String,
    pub command_id: String,
    pub target: CommandTarget,
}
