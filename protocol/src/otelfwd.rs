//! What crosses otelfwd's socket (`<data>/run/otelfwd.sock`), shared with the manager so
//! that the two cannot drift.
//!
//! * `POST /ingest/{logs|traces|metrics}?{Origin}`: the client's body exactly as it arrived
//!   at the manager, with its `Content-Type` and `Content-Encoding`. The manager has
//!   authenticated the caller, capped the body at `[telemetry] max-body-bytes`, and looked
//!   up where the data comes from ([`Origin`], in the query string). otelfwd decodes,
//!   enriches, and answers `200 {"accepted":true}` only once the request is fsynced in its
//!   queue; otherwise the error envelope: 400 (malformed), 413 (inflates past
//!   `max-decompressed-bytes`), 415 (content type or encoding), 503 with `Retry-After` (queue
//!   full), 500 (the queue cannot be written).
//! * `GET /status`: the counters of [`Status`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The three OTLP signals. Each has its own queue and forwarder in otelfwd, so that a backend
/// that refuses or stalls one signal does not hold up the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Logs,
    Traces,
    Metrics,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Logs, Signal::Traces, Signal::Metrics];

    /// The last segment of the OTLP/HTTP path (`/v1/{name}`), and the queue's directory.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }

    pub fn from_name(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.name() == name)
    }

    /// What one item is: the unit of the batch limit and of the counters.
    pub fn item(self) -> &'static str {
        match self {
            Signal::Logs => "log record",
            Signal::Traces => "span",
            Signal::Metrics => "data point",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The path of an ingest call for `signal`.
pub fn ingest_path(signal: Signal) -> String {
    format!("/ingest/{signal}")
}

pub const STATUS_PATH: &str = "/status";

/// Where a request comes from, as the manager knows it. Added to each resource of the
/// request as `alien.*` attributes the sender did not set itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub deployment_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_group_name: Option<String>,
    /// The release the deployment currently runs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
}

impl Origin {
    /// The resource attributes, by name.
    pub fn attributes(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("alien.deployment_id", Some(self.deployment_id.as_str())),
            ("alien.deployment_name", self.deployment_name.as_deref()),
            (
                "alien.deployment_group_id",
                self.deployment_group_id.as_deref(),
            ),
            (
                "alien.deployment_group_name",
                self.deployment_group_name.as_deref(),
            ),
            ("alien.release_id", self.release_id.as_deref()),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key, value)))
    }
}

/// `GET /status`: the queue and forwarding counters. Queue figures are what is on disk;
/// the others count since otelfwd started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Whether `[telemetry] otlp-endpoint` is set; without it data is accepted and discarded.
    pub forwarding: bool,
    /// The disk budget of each signal's queue.
    pub queue_max_bytes_per_signal: u64,
    pub signals: BTreeMap<Signal, SignalStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalStatus {
    /// Requests in the queue, not yet delivered.
    pub queue_records: u64,
    pub queue_items: u64,
    /// Their bytes on disk, record headers included.
    pub queue_bytes: u64,
    /// How long the oldest of them has waited; `None` when the queue is empty.
    pub oldest_record_age_secs: Option<f64>,
    /// Requests acknowledged to senders.
    pub accepted_records: u64,
    pub accepted_items: u64,
    /// Delivered to the backend.
    pub sent_records: u64,
    pub sent_items: u64,
    pub sent_batches: u64,
    /// Attempts that failed in a way worth retrying (429, 502, 503, 504, network).
    pub retried: u64,
    /// Refused by the backend for good (400 and other non-retryable answers): logged and
    /// not sent again.
    pub dropped_records: u64,
    pub dropped_items: u64,
    /// Accepted without an `otlp-endpoint` to send them to.
    pub discarded_records: u64,
    pub discarded_items: u64,
    /// Ingest requests answered 503 because the queue was full.
    pub refused_full: u64,
    /// Records found damaged on disk (a torn write, a bad checksum) and skipped.
    pub corrupt_records: u64,
    /// The last failure to deliver, if the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
