//! The typed configuration. Field names follow the public manager's file (kebab-case
//! sections and keys, camelCase inside binding tables with a `service` tag).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub artifact_registry: ArtifactRegistryConfig,
    #[serde(default)]
    pub commands: CommandsConfig,
    #[serde(default)]
    pub impersonation: ImpersonationConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub supervisor: SupervisorConfig,
    /// The file this configuration was read from, if any.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ServerConfig {
    pub port: u16,
    pub host: String,
    pub base_url: Option<String>,
    pub releases_url: Option<String>,
    pub deployment_interval_secs: u64,
    pub heartbeat_interval_secs: u64,
    /// deployd leaves push deployments alone (another process drives them, or none should).
    pub disable_deployment_loop: bool,
    /// deployd runs no health checks of running push deployments.
    pub disable_heartbeat_loop: bool,
    /// Ours, as the two timeouts below: client connections open at once. At the cap, the
    /// connection idle the longest is closed for each new one.
    pub max_connections: u32,
    /// A request's head must arrive within this long of the connection opening, or of its
    /// first byte on a kept-alive connection.
    pub header_read_timeout_secs: u64,
    /// A request's body may pause this long while it is being read.
    pub body_read_timeout_secs: u64,
    /// A kept-alive connection with no request in flight is closed after this long.
    pub keep_alive_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: 8080,
            host: "0.0.0.0".into(),
            base_url: None,
            releases_url: None,
            deployment_interval_secs: 3,
            heartbeat_interval_secs: 60,
            disable_deployment_loop: false,
            disable_heartbeat_loop: false,
            // nginx's defaults: worker_connections in its stock nginx.conf,
            // client_header_timeout, client_body_timeout and keepalive_timeout.
            max_connections: 1024,
            header_read_timeout_secs: 60,
            body_read_timeout_secs: 60,
            keep_alive_timeout_secs: 75,
        }
    }
}

impl ServerConfig {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }
    pub fn keep_alive_timeout(&self) -> Duration {
        Duration::from_secs(self.keep_alive_timeout_secs)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct DatabaseConfig {
    pub path: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    /// Accepted for compatibility with the public manager, which does not use it either.
    pub encryption_key: Option<Secret>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ArtifactRegistryConfig {
    pub default: Option<ArtifactRegistryBinding>,
    pub aws: Option<ArtifactRegistryBinding>,
    pub gcp: Option<ArtifactRegistryBinding>,
    pub azure: Option<ArtifactRegistryBinding>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    tag = "service",
    rename_all = "lowercase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum ArtifactRegistryBinding {
    Ecr {
        repository_prefix: String,
        pull_role_arn: Option<String>,
        push_role_arn: Option<String>,
    },
    Gar {
        repository_name: String,
        pull_service_account_email: Option<String>,
        push_service_account_email: Option<String>,
    },
    Acr {
        registry_name: String,
        resource_group_name: String,
        repository_prefix: Option<String>,
    },
    Local {
        registry_url: String,
        data_dir: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct CommandsConfig {
    pub kv: Option<KvBinding>,
    pub storage: Option<StorageBinding>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    tag = "service",
    rename_all = "lowercase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum KvBinding {
    Dynamodb {
        table_name: String,
        region: String,
        endpoint_url: Option<String>,
    },
    Firestore {
        project_id: String,
        database_id: String,
        collection_name: String,
    },
    Tablestorage {
        resource_group_name: String,
        account_name: String,
        table_name: String,
    },
    Redis {
        connection_url: Secret,
        key_prefix: Option<String>,
        database: Option<u32>,
    },
    #[serde(rename = "local-kv")]
    LocalKv {
        data_dir: String,
        key_prefix: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    tag = "service",
    rename_all = "lowercase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum StorageBinding {
    S3 {
        bucket_name: String,
    },
    Gcs {
        bucket_name: String,
    },
    Blob {
        account_name: String,
        container_name: String,
    },
    #[serde(rename = "local-storage")]
    LocalStorage {
        storage_path: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ImpersonationConfig {
    pub aws: Option<ServiceAccountBinding>,
    pub gcp: Option<ServiceAccountBinding>,
    pub azure: Option<ServiceAccountBinding>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    tag = "service",
    rename_all = "lowercase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum ServiceAccountBinding {
    Awsiam {
        role_name: String,
        role_arn: String,
    },
    Gcpserviceaccount {
        email: String,
        unique_id: String,
    },
    Azuremanagedidentity {
        client_id: String,
        resource_id: String,
        principal_id: String,
    },
}

/// `otlp-endpoint` and `headers` are the public manager's; the rest shape otelfwd's queue
/// and forwarding and are ours, each with a default, so files without them keep working.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct TelemetryConfig {
    pub otlp_endpoint: Option<String>,
    /// Sent with every forwarded request; usually an API key, so never logged.
    pub headers: BTreeMap<String, Secret>,
    /// The largest request body the manager accepts, as sent (compressed or not).
    pub max_body_bytes: u64,
    /// The largest body a gzip-encoded request may inflate to.
    pub max_decompressed_bytes: u64,
    /// Disk the durable queue may use, shared equally by logs, traces and metrics.
    pub queue_max_bytes: u64,
    /// The size at which a queue segment file is closed and a new one begun.
    pub queue_segment_bytes: u64,
    /// A forwarded request holds at most this many spans, log records or data points...
    pub batch_max_items: u64,
    /// ...and at most this many bytes of protobuf before compression...
    pub batch_max_bytes: u64,
    /// ...and waits at most this long for more once it has something to send.
    pub batch_timeout_ms: u64,
    /// The first delay before a failed forward is retried; doubles up to `retry-max-ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// How long one forwarded request may take.
    pub request_timeout_secs: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            headers: BTreeMap::new(),
            max_body_bytes: 2 * 1024 * 1024,
            max_decompressed_bytes: 16 * 1024 * 1024,
            queue_max_bytes: 1024 * 1024 * 1024,
            queue_segment_bytes: 16 * 1024 * 1024,
            batch_max_items: 8192,
            batch_max_bytes: 4 * 1024 * 1024,
            batch_timeout_ms: 500,
            retry_initial_ms: 500,
            retry_max_ms: 60_000,
            request_timeout_secs: 30,
        }
    }
}

impl TelemetryConfig {
    pub fn batch_timeout(&self) -> Duration {
        Duration::from_millis(self.batch_timeout_ms)
    }
    pub fn retry_initial(&self) -> Duration {
        Duration::from_millis(self.retry_initial_ms)
    }
    pub fn retry_max(&self) -> Duration {
        Duration::from_millis(self.retry_max_ms)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// How `alien serve` looks after its daemons. Not in the public manager's file, which has no
/// supervisor; every key has a default, so files without the section keep working.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SupervisorConfig {
    /// First delay before restarting a daemon that died; doubles on each death.
    pub restart_backoff_initial_ms: u64,
    /// The longest delay between restarts.
    pub restart_backoff_max_secs: u64,
    /// A daemon that ran this long is considered healthy again: its delay starts over.
    pub restart_stable_secs: u64,
    /// This many deaths of one daemon within `crash-loop-window-secs` is a crash loop.
    pub crash_loop_restarts: u32,
    pub crash_loop_window_secs: u64,
    /// How long a daemon may take to report ready.
    pub start_timeout_secs: u64,
    /// How long stopping everything may take before the rest is killed; fits Docker's 10 s.
    pub stop_timeout_secs: u64,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            restart_backoff_initial_ms: 250,
            restart_backoff_max_secs: 30,
            restart_stable_secs: 60,
            crash_loop_restarts: 10,
            crash_loop_window_secs: 300,
            start_timeout_secs: 30,
            stop_timeout_secs: 9,
        }
    }
}

impl SupervisorConfig {
    pub fn restart_backoff_initial(&self) -> Duration {
        Duration::from_millis(self.restart_backoff_initial_ms)
    }
    pub fn restart_backoff_max(&self) -> Duration {
        Duration::from_secs(self.restart_backoff_max_secs)
    }
    pub fn restart_stable(&self) -> Duration {
        Duration::from_secs(self.restart_stable_secs)
    }
    pub fn crash_loop_window(&self) -> Duration {
        Duration::from_secs(self.crash_loop_window_secs)
    }
    pub fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.start_timeout_secs)
    }
    pub fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.stop_timeout_secs)
    }
}

/// A string that must not reach a log: its `Debug` form is redacted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Config {
    /// The data directory, absolute once loaded.
    pub fn data_dir(&self) -> &Path {
        self.database
            .state_dir
            .as_deref()
            .unwrap_or(Path::new(super::DEFAULT_DATA_DIR))
    }

    pub fn database_path(&self) -> PathBuf {
        self.database
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir().join("manager.db"))
    }

    /// The public URL of the manager, without a trailing slash.
    pub fn base_url(&self) -> String {
        match &self.server.base_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://localhost:{}", self.server.port),
        }
    }

    /// Where a process on this host reaches the manager's port: the listen address, with a
    /// wildcard replaced by loopback.
    pub fn local_addr(&self) -> SocketAddr {
        // `validate` has checked that the host is an IP address.
        let ip = match self.server.host.parse() {
            Ok(IpAddr::V6(ip)) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            Ok(ip) if !ip.is_unspecified() => ip,
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        SocketAddr::new(ip, self.server.port)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: format!("key `{key}`"),
            message,
        };
        if self.server.host.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(
                "server.host",
                format!(
                    "{:?} is not an IP address to listen on (for example 0.0.0.0 or 127.0.0.1)",
                    self.server.host
                ),
            ));
        }
        if let Some(url) = &self.server.base_url {
            check_http_url(url).map_err(|m| invalid("server.base-url (or BASE_URL)", m))?;
        }
        if let Some(url) = &self.telemetry.otlp_endpoint {
            check_http_url(url)
                .map_err(|m| invalid("telemetry.otlp-endpoint (or OTLP_ENDPOINT)", m))?;
        }
        for (name, value) in &self.telemetry.headers {
            let key = format!("telemetry.headers.{name}");
            http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(&key, "is not a valid HTTP header name".into()))?;
            http::HeaderValue::from_str(value.expose()).map_err(|_| {
                invalid(
                    &key,
                    "has a value that is not a valid HTTP header value".into(),
                )
            })?;
        }
        for (key, value) in [
            (
                "server.max-connections",
                u64::from(self.server.max_connections),
            ),
            (
                "server.header-read-timeout-secs",
                self.server.header_read_timeout_secs,
            ),
            (
                "server.body-read-timeout-secs",
                self.server.body_read_timeout_secs,
            ),
            (
                "server.keep-alive-timeout-secs",
                self.server.keep_alive_timeout_secs,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than zero".into()));
            }
        }
        let t = &self.telemetry;
        for (key, value) in [
            ("telemetry.max-body-bytes", t.max_body_bytes),
            ("telemetry.max-decompressed-bytes", t.max_decompressed_bytes),
            ("telemetry.queue-max-bytes", t.queue_max_bytes),
            ("telemetry.queue-segment-bytes", t.queue_segment_bytes),
            ("telemetry.batch-max-items", t.batch_max_items),
            ("telemetry.batch-max-bytes", t.batch_max_bytes),
            ("telemetry.retry-initial-ms", t.retry_initial_ms),
            ("telemetry.retry-max-ms", t.retry_max_ms),
            ("telemetry.request-timeout-secs", t.request_timeout_secs),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than zero".into()));
            }
        }
        if t.max_decompressed_bytes < t.max_body_bytes {
            return Err(invalid(
                "telemetry.max-decompressed-bytes",
                "must not be less than max-body-bytes".into(),
            ));
        }
        if t.queue_max_bytes / 3 < t.max_decompressed_bytes.max(t.queue_segment_bytes) {
            return Err(invalid(
                "telemetry.queue-max-bytes",
                "must hold, for each of the three signals, a segment and the largest request (3 x max(queue-segment-bytes, max-decompressed-bytes))".into(),
            ));
        }
        let s = &self.supervisor;
        for (key, value) in [
            (
                "supervisor.restart-backoff-initial-ms",
                s.restart_backoff_initial_ms,
            ),
            (
                "supervisor.restart-backoff-max-secs",
                s.restart_backoff_max_secs,
            ),
            (
                "supervisor.crash-loop-restarts",
                u64::from(s.crash_loop_restarts),
            ),
            (
                "supervisor.crash-loop-window-secs",
                s.crash_loop_window_secs,
            ),
            ("supervisor.start-timeout-secs", s.start_timeout_secs),
            ("supervisor.stop-timeout-secs", s.stop_timeout_secs),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than zero".into()));
            }
        }
        if s.restart_backoff_initial() > s.restart_backoff_max() {
            return Err(invalid(
                "supervisor.restart-backoff-initial-ms",
                "must not exceed restart-backoff-max-secs".into(),
            ));
        }
        Ok(())
    }
}

fn check_http_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err(format!(
            "{url:?} must be an absolute http:// or https:// URL"
        )),
    }
}
