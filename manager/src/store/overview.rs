//! What `alien serve`'s live view shows of each deployment, read by that process (not the
//! manager daemon) on a read-only connection of its own: WAL lets it read beside the
//! manager's writer, and it never writes.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// One deployment, as the view prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentLine {
    /// The group's name, or its id when the group is gone.
    pub group: String,
    pub name: String,
    pub status: String,
    pub current_release_id: Option<String>,
    pub desired_release_id: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}

/// Every deployment, oldest first; none while the database does not exist yet. Blocking.
pub fn deployments(database: &Path) -> Result<Vec<DeploymentLine>, rusqlite::Error> {
    if !database.exists() {
        return Ok(Vec::new());
    }
    let conn = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut statement = conn.prepare(
        "SELECT COALESCE(g.name, d.deployment_group_id), d.name, d.status,
                d.current_release_id, d.desired_release_id, COALESCE(d.updated_at, d.created_at)
         FROM deployments d LEFT JOIN deployment_groups g ON g.id = d.deployment_group_id
         ORDER BY d.created_at, d.id",
    )?;
    let lines = statement.query_map([], |row| {
        Ok(DeploymentLine {
            group: row.get(0)?,
            name: row.get(1)?,
            status: row.get(2)?,
            current_release_id: row.get(3)?,
            desired_release_id: row.get(4)?,
            updated_at: row.get(5)?,
        })
    })?;
    lines.collect()
}
