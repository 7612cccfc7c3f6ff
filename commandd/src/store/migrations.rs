//! Schema migrations, versioned by `PRAGMA user_version`: version N means the first N entries
//! of [`MIGRATIONS`] are applied, each in its own transaction. Append; never edit one.

pub const MIGRATIONS: &[&str] = &[INITIAL_SCHEMA, STORAGE_WRITES];

/// Times are Unix milliseconds. The public manager keeps the pending index, the deadline
/// index, leases and idempotency keys as separate KV keys (docs/compatibility.md, Commands);
/// here they are rows and indexes, so that each of their changes is one conditional
/// statement together with the command's state.
const INITIAL_SCHEMA: &str = "
-- The registry: one row per command, with the lease a receiver holds. Creation
-- order is the rowid: the pending index is `commands_pending`, oldest first.
CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    delivery_mode TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    deadline INTEGER,
    created_at INTEGER NOT NULL,
    dispatched_at INTEGER,
    completed_at INTEGER,
    request_size_bytes INTEGER,
    response_size_bytes INTEGER,
    error TEXT,
    target_resource_id TEXT NOT NULL,
    target_resource_type TEXT NOT NULL,
    lease_id TEXT,
    lease_acquired_at INTEGER,
    lease_expires_at INTEGER
);
CREATE INDEX commands_deployment ON commands (deployment_id);
CREATE INDEX commands_pending ON commands (deployment_id, target_resource_id)
    WHERE delivery_mode = 'pull' AND state IN ('PENDING', 'DISPATCHED');
CREATE INDEX commands_deadline ON commands (deadline)
    WHERE deadline IS NOT NULL AND state NOT IN ('SUCCEEDED', 'FAILED', 'EXPIRED');
CREATE UNIQUE INDEX commands_lease ON commands (lease_id) WHERE lease_id IS NOT NULL;

-- `idem:{dep}:{rid}:{command}:{key}` → command id, for 24 hours.
CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    command_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The local backend's key-value store: params and response documents (`cmd:{id}:params`,
-- `cmd:{id}:response`).
CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
";

/// The storage `PUT` URLs that have written their body, each named by its signature: a URL
/// writes once (docs/compatibility.md, Commands).
const STORAGE_WRITES: &str = "
CREATE TABLE storage_writes (
    command_id TEXT NOT NULL,
    body TEXT NOT NULL,
    signature TEXT NOT NULL,
    written_at INTEGER NOT NULL,
    PRIMARY KEY (command_id, body, signature)
) WITHOUT ROWID;
";
