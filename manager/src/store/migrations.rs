//! Schema migrations, versioned by `PRAGMA user_version`: version N means the first N entries
//! of [`MIGRATIONS`] are applied. Append new ones; never edit an applied one.

use std::path::Path;

use rusqlite::Connection;

use crate::Error;

const MIGRATIONS: &[&str] = &[
    INITIAL_SCHEMA,
    CREATION_ORDER,
    REACHED_RELEASE,
    PUSH_TARGETS,
];

/// The public manager's tables, columns and indexes, less `commands`, which commandd keeps.
const INITIAL_SCHEMA: &str = "
CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    deployment_group_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    deployment_protocol_version INTEGER NOT NULL DEFAULT 1,
    base_platform TEXT,
    status TEXT NOT NULL,
    stack_settings TEXT NOT NULL,
    stack_state TEXT,
    environment_info TEXT,
    runtime_metadata TEXT,
    current_release_id TEXT,
    desired_release_id TEXT,
    import_source TEXT,
    setup_metadata TEXT,
    setup_target TEXT,
    setup_fingerprint TEXT,
    setup_fingerprint_version INTEGER,
    environment_variables TEXT,
    deployment_token TEXT,
    retry_requested INTEGER NOT NULL DEFAULT 0,
    locked_by TEXT,
    locked_at TEXT,
    next_step_after TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT,
    error TEXT,
    workspace_id TEXT NOT NULL DEFAULT 'default',
    project_id TEXT NOT NULL DEFAULT 'default',
    input_values TEXT
);

CREATE TABLE releases (
    id TEXT PRIMARY KEY,
    stack TEXT NOT NULL,
    git_commit_sha TEXT,
    git_commit_ref TEXT,
    git_commit_message TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    workspace_id TEXT NOT NULL DEFAULT 'default',
    project_id TEXT NOT NULL DEFAULT 'default'
);

CREATE TABLE deployment_groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    max_deployments INTEGER NOT NULL DEFAULT 100,
    deployment_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    workspace_id TEXT NOT NULL DEFAULT 'default',
    project_id TEXT NOT NULL DEFAULT 'default'
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    deployment_group_id TEXT,
    deployment_id TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_deployments_group ON deployments(deployment_group_id);
CREATE UNIQUE INDEX idx_deployments_group_name ON deployments(deployment_group_id, name);
CREATE INDEX idx_deployments_status ON deployments(status);
CREATE INDEX idx_deployments_locked ON deployments(locked_by, locked_at);
CREATE INDEX idx_deployments_project ON deployments(workspace_id, project_id);
CREATE INDEX idx_deployments_next_step ON deployments(status, next_step_after);
CREATE INDEX idx_releases_project ON releases(workspace_id, project_id);
CREATE INDEX idx_deployment_groups_project ON deployment_groups(workspace_id, project_id);
";

/// "Newest first" and "latest" by a sequence number rather than by `created_at`, which is
/// text, ties within a millisecond, and moves with the clock. Existing rows are numbered in
/// the order they were created; new ones take the next number inside their insert. Also the
/// indexes the API's lists and filters need.
const CREATION_ORDER: &str = "
ALTER TABLE releases ADD COLUMN seq INTEGER;
UPDATE releases SET seq = ordered.n
FROM (SELECT rowid AS r, row_number() OVER (ORDER BY created_at, rowid) AS n FROM releases) AS ordered
WHERE releases.rowid = ordered.r;
CREATE UNIQUE INDEX idx_releases_seq ON releases(seq);

ALTER TABLE deployment_groups ADD COLUMN seq INTEGER;
UPDATE deployment_groups SET seq = ordered.n
FROM (SELECT rowid AS r, row_number() OVER (ORDER BY created_at, rowid) AS n FROM deployment_groups) AS ordered
WHERE deployment_groups.rowid = ordered.r;
CREATE UNIQUE INDEX idx_deployment_groups_seq ON deployment_groups(seq);
CREATE INDEX idx_deployment_groups_name ON deployment_groups(name);

ALTER TABLE deployments ADD COLUMN seq INTEGER;
UPDATE deployments SET seq = ordered.n
FROM (SELECT rowid AS r, row_number() OVER (ORDER BY created_at, rowid) AS n FROM deployments) AS ordered
WHERE deployments.rowid = ordered.r;
CREATE UNIQUE INDEX idx_deployments_seq ON deployments(seq);
CREATE INDEX idx_deployments_group_seq ON deployments(deployment_group_id, seq);
";

/// The release a deployment pulls images from must be one the manager assigned it, not one
/// its own report names: `reached_release_id` is the last desired release a report said the
/// deployment reached. A database from before could not tell the two apart, so the current
/// release it records, if it is a release there, is taken as reached.
const REACHED_RELEASE: &str = "
ALTER TABLE deployments ADD COLUMN reached_release_id TEXT;
UPDATE deployments SET reached_release_id = current_release_id
WHERE current_release_id IN (SELECT id FROM releases);
";

/// Where each command-enabled worker of a deployment takes pushed commands, as deployd, which
/// runs them, last reported it (a JSON object of worker id to URL). Only deployd writes it:
/// a client's stack state is never a source of push targets.
const PUSH_TARGETS: &str = "
ALTER TABLE deployments ADD COLUMN push_targets TEXT;
";

/// Brings the database at `path` (named in errors) up to date, one transaction per
/// migration, so that a crash leaves it at some whole version.
pub fn apply(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    Ok(plumbing::sqlite::migrate(conn, path, MIGRATIONS)?)
}

#[cfg(test)]
mod tests {
    use plumbing::sqlite::SqliteError;

    use super::*;

    const LATEST: i64 = MIGRATIONS.len() as i64;

    fn user_version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("user_version")
    }

    fn names(conn: &Connection, kind: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = ?1 AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .expect("prepare");
        stmt.query_map([kind], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    #[test]
    fn a_fresh_database_gets_the_schema_and_reopening_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("manager.db");
        let mut conn = Connection::open(&path).expect("open");
        apply(&mut conn, &path).expect("migrate");
        assert_eq!(user_version(&conn), LATEST);
        assert_eq!(
            names(&conn, "table"),
            ["deployment_groups", "deployments", "releases", "tokens"]
        );
        assert_eq!(
            names(&conn, "index"),
            [
                "idx_deployment_groups_name",
                "idx_deployment_groups_project",
                "idx_deployment_groups_seq",
                "idx_deployments_group",
                "idx_deployments_group_name",
                "idx_deployments_group_seq",
                "idx_deployments_locked",
                "idx_deployments_next_step",
                "idx_deployments_project",
                "idx_deployments_seq",
                "idx_deployments_status",
                "idx_releases_project",
                "idx_releases_seq",
            ]
        );
        conn.execute(
            "INSERT INTO tokens (id, type, key_prefix, key_hash) VALUES ('tok_1', 'admin', 'p', 'h')",
            [],
        )
        .expect("insert");
        drop(conn);

        let mut conn = Connection::open(&path).expect("reopen");
        apply(&mut conn, &path).expect("migrate again");
        assert_eq!(user_version(&conn), LATEST);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM tokens", [], |row| row.get(0))
            .expect("count");
        assert_eq!(rows, 1, "data survives");
    }

    #[test]
    fn a_version_1_database_is_numbered_in_creation_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("manager.db");
        let mut conn = Connection::open(&path).expect("open");
        let tx = conn.transaction().expect("begin");
        tx.execute_batch(MIGRATIONS[0]).expect("version 1");
        tx.pragma_update(None, "user_version", 1)
            .expect("set version");
        // Inserted out of order, with a tie, and in the public manager's nanosecond form.
        tx.execute_batch(
            "INSERT INTO releases (id, stack, created_at) VALUES
                 ('rel_c', '{}', '2026-01-03T00:00:00.000000001+00:00'),
                 ('rel_a', '{}', '2026-01-01T00:00:00+00:00'),
                 ('rel_b1', '{}', '2026-01-02T00:00:00+00:00'),
                 ('rel_b2', '{}', '2026-01-02T00:00:00+00:00');
             INSERT INTO deployment_groups (id, name, created_at) VALUES
                 ('dg_2', 'b', '2026-01-02T00:00:00+00:00'),
                 ('dg_1', 'a', '2026-01-01T00:00:00+00:00');
             INSERT INTO deployments (id, name, deployment_group_id, platform, status, stack_settings, created_at) VALUES
                 ('dep_2', 'b', 'dg_1', 'aws', 'running', '{}', '2026-01-02T00:00:00+00:00'),
                 ('dep_1', 'a', 'dg_1', 'aws', 'running', '{}', '2026-01-01T00:00:00+00:00');",
        )
        .expect("rows");
        tx.commit().expect("commit");

        apply(&mut conn, &path).expect("migrate");
        assert_eq!(user_version(&conn), LATEST);
        let order = |table: &str| -> Vec<String> {
            let mut stmt = conn
                .prepare(&format!("SELECT id FROM {table} ORDER BY seq"))
                .expect("prepare");
            stmt.query_map([], |row| row.get(0))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows")
        };
        assert_eq!(order("releases"), ["rel_a", "rel_b1", "rel_b2", "rel_c"]);
        assert_eq!(order("deployment_groups"), ["dg_1", "dg_2"]);
        assert_eq!(order("deployments"), ["dep_1", "dep_2"]);
    }

    #[test]
    fn a_version_2_database_takes_recorded_current_releases_as_reached() {
        let mut conn = Connection::open_in_memory().expect("open");
        let tx = conn.transaction().expect("begin");
        for migration in &MIGRATIONS[..2] {
            tx.execute_batch(migration).expect("earlier versions");
        }
        tx.pragma_update(None, "user_version", 2)
            .expect("set version");
        tx.execute_batch(
            "INSERT INTO releases (id, stack, seq) VALUES ('rel_a', '{}', 1);
             INSERT INTO deployments (id, name, deployment_group_id, platform, status, stack_settings, current_release_id, desired_release_id, seq) VALUES
                 ('dep_1', 'a', 'dg_1', 'local', 'running', '{}', 'rel_a', NULL, 1),
                 ('dep_2', 'b', 'dg_1', 'local', 'running', '{}', 'rel_gone', 'rel_a', 2),
                 ('dep_3', 'c', 'dg_1', 'local', 'pending', '{}', NULL, 'rel_a', 3);",
        )
        .expect("rows");
        tx.commit().expect("commit");

        apply(&mut conn, Path::new(":memory:")).expect("migrate");
        assert_eq!(user_version(&conn), LATEST);
        let mut stmt = conn
            .prepare("SELECT id, reached_release_id FROM deployments ORDER BY seq")
            .expect("prepare");
        let reached: Vec<(String, Option<String>)> = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            reached,
            [
                ("dep_1".to_owned(), Some("rel_a".to_owned())),
                ("dep_2".to_owned(), None),
                ("dep_3".to_owned(), None),
            ]
        );
    }

    #[test]
    fn the_deployment_name_is_unique_within_a_group() {
        let mut conn = Connection::open_in_memory().expect("open");
        apply(&mut conn, Path::new(":memory:")).expect("migrate");
        let insert = |id: &str, group: &str| {
            conn.execute(
                "INSERT INTO deployments (id, name, deployment_group_id, platform, status, stack_settings)
                 VALUES (?1, 'web', ?2, 'aws', 'pending', '{}')",
                [id, group],
            )
        };
        insert("dep_1", "dg_a").expect("first");
        insert("dep_2", "dg_b").expect("other group");
        assert!(insert("dep_3", "dg_a").is_err(), "same group and name");
    }

    #[test]
    fn a_newer_or_nonsensical_schema_version_is_refused() {
        for version in [LATEST + 1, -1] {
            let mut conn = Connection::open_in_memory().expect("open");
            conn.pragma_update(None, "user_version", version)
                .expect("set version");
            let error = apply(&mut conn, Path::new("/data/manager.db")).expect_err("refused");
            assert!(
                matches!(
                    error,
                    Error::Sqlite(SqliteError::UnknownSchema { found, .. }) if found == version
                ),
                "{error:?}"
            );
            assert!(error.to_string().contains("/data/manager.db"), "{error}");
            assert_eq!(user_version(&conn), version, "left untouched");
        }
    }
}
