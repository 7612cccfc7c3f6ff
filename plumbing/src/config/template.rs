/// What `alien serve --init` prints: every key, commented out at its default. It parses back
/// to the defaults, so a user can uncomment exactly what they change.
pub const TEMPLATE: &str = r#"# alien-manager.toml
#
# Read from the file given with `-c FILE`, else ./alien-manager.toml, else the defaults below.
# Environment variables override the file: PORT, HOST, BASE_URL, OTLP_ENDPOINT and
# ALIEN_DATA_DIR; `alien serve` flags (--port, --host, --data-dir) override both.
# Unknown keys are errors.

[server]
# TCP port of the public API.
# port = 8080

# Address to listen on. Use 127.0.0.1 to accept local connections only.
# host = "0.0.0.0"

# The URL deployments and the CLI reach the manager at (behind your TLS proxy, say).
# It appears in command URLs, the sync payload and registry redirects.
# Default: http://localhost:{port}
# base-url = "https://manager.example.com"

# Where install scripts download the agent from.
# releases-url = "https://releases.alien.dev"

# Seconds between passes of the deployment loop.
# deployment-interval-secs = 3

# Seconds between heartbeats of push deployments.
# heartbeat-interval-secs = 60

# Turn off deployd's deployment loop, which rolls releases out to push deployments, or its
# heartbeat loop, which checks and heals their running workloads (also the environment
# variables DISABLE_DEPLOYMENT_LOOP and DISABLE_HEARTBEAT_LOOP set to true or 1, and the
# `alien serve` flags --disable-deployment-loop and --disable-heartbeat-loop).
# disable-deployment-loop = false
# disable-heartbeat-loop = false

# Client connections open at once. When a new one comes at the cap, the connection that has
# been idle the longest (no request in flight) is closed to make room; when every one has a
# request in flight, new connections wait in the listen backlog until one ends. Each open
# connection can take two file descriptors (the client's, and one to a daemon): the cap is
# lowered at start to what the open-file limit (`ulimit -n`) allows.
# max-connections = 1024

# Seconds a client has to send a request's line and headers: from the moment it connects,
# or from the first byte of its next request on a kept-alive connection.
# header-read-timeout-secs = 60

# Seconds a request's body may pause while it is read: a client that sends nothing for this
# long has its connection closed. A body that keeps flowing, however slowly, has no limit.
# body-read-timeout-secs = 60

# Seconds a kept-alive connection may wait for its next request. A request in flight, a
# long poll or a large upload or download, is never cut short by it.
# keep-alive-timeout-secs = 75

[database]
# Directory that holds all state: database, registry blobs, command payloads, telemetry
# queue. Put it on a persistent disk and back it up.
# state-dir = "alien-data"

# The SQLite database. Default: {state-dir}/manager.db
# path = "alien-data/manager.db"

# Accepted for compatibility; the database is not encrypted.
# encryption-key = ""

[artifact-registry]
# Release images are served by the built-in registry at /v2 on this manager. Upstream cloud
# registries per platform:
#
# [artifact-registry.aws]
# service = "ecr"
# repositoryPrefix = "my-product"
# pullRoleArn = "arn:aws:iam::123456789012:role/pull"    # optional
# pushRoleArn = "arn:aws:iam::123456789012:role/push"    # optional
#
# [artifact-registry.gcp]
# service = "gar"
# repositoryName = "projects/my-project/locations/us-central1/repositories/my-product"
# pullServiceAccountEmail = "pull@my-project.iam.gserviceaccount.com"    # optional
# pushServiceAccountEmail = "push@my-project.iam.gserviceaccount.com"    # optional
#
# [artifact-registry.azure]
# service = "acr"
# registryName = "myregistry"
# resourceGroupName = "my-resource-group"
# repositoryPrefix = "my-product"    # optional

[commands]
# Where command state and large payloads live. Default: on the data volume.
# kv = { service = "dynamodb", tableName = "my-product-commands", region = "us-east-1" }
# storage = { service = "s3", bucketName = "my-product-commands-store" }

[impersonation]
# The management identity the manager impersonates in each cloud.
#
# [impersonation.aws]
# service = "awsiam"
# roleName = "alien-management"
# roleArn = "arn:aws:iam::123456789012:role/alien-management"
#
# [impersonation.gcp]
# service = "gcpserviceaccount"
# email = "alien-management@my-project.iam.gserviceaccount.com"
# uniqueId = "123456789012345678901"

[telemetry]
# OTLP/HTTP endpoint that logs, metrics and traces from deployments are forwarded to
# (Grafana, Datadog, Honeycomb, Jaeger, ...). Without it, telemetry is accepted and dropped.
# otlp-endpoint = "https://otlp.example.com"

# Requests from deployments are written to a queue on the data volume (telemetry/) before
# they are acknowledged, and forwarded from there; nothing acknowledged is lost when the
# backend is slow or down. When the queue is full, senders get 503 with Retry-After.
#
# The largest request body accepted, as sent, and what a gzip body may inflate to.
# max-body-bytes = 2097152
# max-decompressed-bytes = 16777216
#
# Disk the queue may use, split equally between logs, traces and metrics, and the size of
# its segment files.
# queue-max-bytes = 1073741824
# queue-segment-bytes = 16777216
#
# A forwarded request holds at most this many spans, log records or data points, and this
# many bytes before compression; it waits at most batch-timeout-ms for more.
# batch-max-items = 8192
# batch-max-bytes = 4194304
# batch-timeout-ms = 500
#
# A backend that answers 429, 502, 503 or 504, or cannot be reached, is retried after a
# delay that starts here and doubles, with jitter, up to the maximum (or its Retry-After).
# retry-initial-ms = 500
# retry-max-ms = 60000
#
# How long one forwarded request may take.
# request-timeout-secs = 30

[telemetry.headers]
# Headers sent with every forwarded request. Values are secrets: they are never logged.
# "x-api-key" = "..."

[supervisor]
# How `alien serve` restarts daemons that die: after a delay that starts here and doubles,
# with jitter, up to the maximum.
# restart-backoff-initial-ms = 250
# restart-backoff-max-secs = 30

# A daemon that stayed up this long gets its restart delay reset.
# restart-stable-secs = 60

# This many deaths of the manager, registryd or commandd within the window stops everything
# with a non-zero exit (a crash-looping otelfwd is reported as degraded and retried).
# crash-loop-restarts = 10
# crash-loop-window-secs = 300

# How long a daemon may take to become ready.
# start-timeout-secs = 30

# How long an orderly stop may take in all before what is left is killed (Docker waits 10 s).
# stop-timeout-secs = 9
"#;
