//! What crosses registryd's socket (`<data>/run/registryd.sock`).
//!
//! * `/v2/...`: the OCI distribution API, forwarded by the manager after it has authorized
//!   the request: the method and path as the client sent them, only the headers registryd
//!   acts on, bodies streamed both ways. Its types are the distribution spec's, not ours.
//! * `POST /gc` ([`GC_PATH`]): a garbage collection with the [`GcOptions`] in the body (or
//!   none), answered `200` with a [`GcReport`]; a second one waits for the first.

use serde::{Deserialize, Serialize};

pub const GC_PATH: &str = "/gc";

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcOptions {
    /// Spare what was touched this recently. Default one hour; 0 is for tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_secs: Option<u64>,
    /// Also delete manifests that no tag, kept index or kept subject reaches.
    #[serde(default)]
    pub delete_untagged: bool,
    /// Remove upload sessions idle this long. Default 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_ttl_secs: Option<u64>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    pub manifests_deleted: u64,
    pub uploads_purged: u64,
    pub orphan_files_deleted: u64,
    pub grace_period_secs: u64,
    pub duration_ms: u64,
}
