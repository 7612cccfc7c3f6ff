//! The `releases` table. Releases are immutable: inserted, never changed or deleted.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::value::RawValue;

use super::{NOW, json_column, optional_json_column};
use crate::Error;

#[derive(Debug)]
pub struct Release {
    pub id: String,
    pub workspace_id: String,
    pub project_id: String,
    /// `{platform: Stack}` as the client sent it.
    pub stack: Box<RawValue>,
    pub git_commit_sha: Option<String>,
    pub git_commit_ref: Option<String>,
    pub git_commit_message: Option<String>,
    pub created_at: String,
}

#[derive(Debug)]
pub struct NewRelease<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub stack: &'a str,
    pub git_commit_sha: Option<&'a str>,
    pub git_commit_ref: Option<&'a str>,
    pub git_commit_message: Option<&'a str>,
}

const COLUMNS: &str = "id, workspace_id, project_id, stack, git_commit_sha, git_commit_ref, git_commit_message, created_at";

/// A row with its JSON still text, so that row mapping cannot fail on it.
struct Raw {
    id: String,
    workspace_id: String,
    project_id: String,
    stack: String,
    git_commit_sha: Option<String>,
    git_commit_ref: Option<String>,
    git_commit_message: Option<String>,
    created_at: String,
}

fn raw(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        id: row.get(0)?,
        workspace_id: row.get(1)?,
        project_id: row.get(2)?,
        stack: row.get(3)?,
        git_commit_sha: row.get(4)?,
        git_commit_ref: row.get(5)?,
        git_commit_message: row.get(6)?,
        created_at: row.get(7)?,
    })
}

impl Raw {
    fn decode(self) -> Result<Release, Error> {
        let stack = json_column("release", &self.id, "stack", self.stack)?;
        Ok(Release {
            id: self.id,
            workspace_id: self.workspace_id,
            project_id: self.project_id,
            stack,
            git_commit_sha: self.git_commit_sha,
            git_commit_ref: self.git_commit_ref,
            git_commit_message: self.git_commit_message,
            created_at: self.created_at,
        })
    }
}

/// Inserts a release as the newest: its sequence number is taken inside the insert, which
/// the single writer runs one at a time.
pub fn insert(conn: &Connection, release: &NewRelease<'_>) -> Result<Release, Error> {
    let row = conn
        .prepare_cached(&format!(
            "INSERT INTO releases (id, project_id, stack, git_commit_sha, git_commit_ref, git_commit_message, created_at, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, {NOW}, (SELECT COALESCE(MAX(seq), 0) + 1 FROM releases))
             RETURNING {COLUMNS}"
        ))?
        .query_row(
            params![
                release.id,
                release.project_id,
                release.stack,
                release.git_commit_sha,
                release.git_commit_ref,
                release.git_commit_message
            ],
            raw,
        )?;
    row.decode()
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Release>, Error> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM releases WHERE id = ?1"))?
        .query_row([id], raw)
        .optional()?
        .map(Raw::decode)
        .transpose()
}

pub fn exists(conn: &Connection, id: &str) -> Result<bool, Error> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM releases WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn latest(conn: &Connection) -> Result<Option<Release>, Error> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM releases ORDER BY seq DESC LIMIT 1"
    ))?
    .query_row([], raw)
    .optional()?
    .map(Raw::decode)
    .transpose()
}

pub fn latest_id(conn: &Connection) -> Result<Option<String>, Error> {
    Ok(conn
        .prepare_cached("SELECT id FROM releases ORDER BY seq DESC LIMIT 1")?
        .query_row([], |row| row.get(0))
        .optional()?)
}

/// Newest first.
pub fn list(conn: &Connection) -> Result<Vec<Release>, Error> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM releases ORDER BY seq DESC"))?;
    let rows = stmt.query_map([], raw)?;
    rows.map(|row| row?.decode()).collect()
}

/// The stack a release holds for one platform: `None` when there is no such release,
/// `Some(None)` when it has no stack for the platform.
pub fn platform_stack(
    conn: &Connection,
    id: &str,
    platform: &str,
) -> Result<Option<Option<Box<RawValue>>>, Error> {
    let found: Option<Option<String>> = conn
        .prepare_cached("SELECT json_extract(stack, '$.' || ?2) FROM releases WHERE id = ?1")?
        .query_row(params![id, platform], |row| row.get(0))
        .optional()?;
    found
        .map(|stack| optional_json_column("release", id, "stack", stack))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn latest_is_the_last_inserted_and_platform_stacks_are_extracted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("manager.db"))
            .await
            .expect("open");
        for id in ["rel_b", "rel_a", "rel_c"] {
            store
                .transaction(move |tx| {
                    insert(
                        tx,
                        &NewRelease {
                            id,
                            project_id: "default",
                            stack: r#"{"aws": {"resources": {}}, "local": {"id": "x"}}"#,
                            git_commit_sha: Some("abc"),
                            git_commit_ref: None,
                            git_commit_message: None,
                        },
                    )
                })
                .await
                .expect("insert");
        }
        let (latest, list, stacks) = store
            .read(|conn| {
                Ok((
                    latest(conn)?.map(|r| r.id),
                    list(conn)?.into_iter().map(|r| r.id).collect::<Vec<_>>(),
                    [
                        platform_stack(conn, "rel_a", "local")?,
                        platform_stack(conn, "rel_a", "gcp")?,
                        platform_stack(conn, "rel_nope", "local")?,
                    ]
                    .map(|found| found.map(|stack| stack.map(|s| s.get().to_owned()))),
                ))
            })
            .await
            .expect("read");
        assert_eq!(latest.as_deref(), Some("rel_c"));
        assert_eq!(list, ["rel_c", "rel_a", "rel_b"]);
        assert_eq!(
            stacks,
            [Some(Some(r#"{"id":"x"}"#.to_owned())), Some(None), None]
        );
    }
}
