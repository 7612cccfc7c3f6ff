//! The `deployment_groups` table. Groups are created and read; the public API has no way to
//! change or delete one.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::NOW;
use crate::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentGroup {
    pub id: String,
    pub name: String,
    pub max_deployments: i64,
    /// Counted live: the stored `deployment_count` column is not kept up to date.
    pub deployment_count: i64,
    pub created_at: String,
}

const COLUMNS: &str = "g.id, g.name, g.max_deployments,
    (SELECT count(*) FROM deployments AS d WHERE d.deployment_group_id = g.id), g.created_at";

fn group(row: &Row<'_>) -> rusqlite::Result<DeploymentGroup> {
    Ok(DeploymentGroup {
        id: row.get(0)?,
        name: row.get(1)?,
        max_deployments: row.get(2)?,
        deployment_count: row.get(3)?,
        created_at: row.get(4)?,
    })
}

pub fn insert(
    conn: &Connection,
    id: &str,
    name: &str,
    max_deployments: i64,
) -> Result<DeploymentGroup, Error> {
    Ok(conn
        .prepare_cached(&format!(
            "INSERT INTO deployment_groups (id, name, max_deployments, created_at, seq)
             VALUES (?1, ?2, ?3, {NOW}, (SELECT COALESCE(MAX(seq), 0) + 1 FROM deployment_groups))
             RETURNING id, name, max_deployments, 0, created_at"
        ))?
        .query_row(params![id, name, max_deployments], group)?)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<DeploymentGroup>, Error> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM deployment_groups AS g WHERE g.id = ?1"
        ))?
        .query_row([id], group)
        .optional()?)
}

/// Newest first; only `only` when given.
pub fn list(conn: &Connection, only: Option<&str>) -> Result<Vec<DeploymentGroup>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deployment_groups AS g
         WHERE ?1 IS NULL OR g.id = ?1 ORDER BY g.seq DESC"
    ))?;
    let rows = stmt.query_map([only], group)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn newest_id(conn: &Connection) -> Result<Option<String>, Error> {
    Ok(conn
        .prepare_cached("SELECT id FROM deployment_groups ORDER BY seq DESC LIMIT 1")?
        .query_row([], |row| row.get(0))
        .optional()?)
}

/// The groups a client's `deploymentGroupId` filter means: the group with that id, or the
/// groups with that name, since the CLI sends names there (names are not unique).
pub fn ids_by_id_or_name(conn: &Connection, id_or_name: &str) -> Result<Vec<String>, Error> {
    let mut stmt =
        conn.prepare_cached("SELECT id FROM deployment_groups WHERE id = ?1 OR name = ?1")?;
    let rows = stmt.query_map([id_or_name], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn groups_are_listed_newest_first_and_found_by_id_or_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("manager.db"))
            .await
            .expect("open");
        store
            .transaction(|tx| {
                insert(tx, "dg_1", "acme", 100)?;
                insert(tx, "dg_2", "globex", 5)?;
                insert(tx, "dg_3", "acme", 1)?;
                tx.execute(
                    "INSERT INTO deployments (id, name, deployment_group_id, platform, status, stack_settings)
                     VALUES ('dep_1', 'a', 'dg_2', 'aws', 'pending', '{}'), ('dep_2', 'b', 'dg_2', 'aws', 'pending', '{}')",
                    [],
                )?;
                Ok(())
            })
            .await
            .expect("insert");
        let (all, one, newest, acme, by_id, none) = store
            .read(|conn| {
                Ok((
                    list(conn, None)?,
                    list(conn, Some("dg_2"))?,
                    newest_id(conn)?,
                    ids_by_id_or_name(conn, "acme")?,
                    ids_by_id_or_name(conn, "dg_2")?,
                    get(conn, "dg_nope")?,
                ))
            })
            .await
            .expect("read");
        let ids: Vec<&str> = all.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids, ["dg_3", "dg_2", "dg_1"]);
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].max_deployments, one[0].deployment_count), (5, 2));
        assert_eq!(newest.as_deref(), Some("dg_3"));
        let mut acme = acme;
        acme.sort();
        assert_eq!(acme, ["dg_1", "dg_3"]);
        assert_eq!(by_id, ["dg_2"]);
        assert_eq!(none, None);
    }
}
