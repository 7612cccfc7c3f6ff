//! The `deployments` table. Every change two actors can race on (leases, lifecycle requests,
//! reports) is one conditional `UPDATE ... WHERE` whose changed-row count says whether it
//! happened.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

use super::{NOW, json_column, now_plus, optional_json_column};
use crate::Error;
use crate::lifecycle::DeploymentStatus;
use crate::lifecycle::lease::{STALE_LOCK_SECS, StatusFilter};
use crate::lifecycle::reconcile::Write;
use crate::wire::sync::DeploymentState;
use crate::wire::{DeploymentModel, Platform};

/// A deployment as stored, its JSON columns still JSON text. The raw deployment token and
/// the scheduling column are not read: no answer contains them.
#[derive(Debug)]
pub struct Deployment {
    pub id: String,
    pub name: String,
    pub deployment_group_id: String,
    pub platform: String,
    pub deployment_protocol_version: u32,
    pub base_platform: Option<String>,
    pub status: String,
    pub stack_settings: Box<RawValue>,
    pub stack_state: Option<Box<RawValue>>,
    pub environment_info: Option<Box<RawValue>>,
    pub runtime_metadata: Option<Box<RawValue>>,
    pub current_release_id: Option<String>,
    pub desired_release_id: Option<String>,
    pub import_source: Option<String>,
    pub setup_metadata: Option<Box<RawValue>>,
    pub setup_target: Option<String>,
    pub setup_fingerprint: Option<String>,
    pub setup_fingerprint_version: Option<i64>,
    pub environment_variables: Option<Box<RawValue>>,
    pub retry_requested: bool,
    pub locked_by: Option<String>,
    pub locked_at: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
    pub error: Option<Box<RawValue>>,
    pub workspace_id: String,
    pub project_id: String,
    pub input_values: Option<Box<RawValue>>,
    /// The group's name, when the query joined it.
    pub group_name: Option<String>,
}

impl Deployment {
    pub fn status(&self) -> DeploymentStatus {
        DeploymentStatus::from_db(&self.status)
    }
}

const COLUMNS: &str =
    "d.id, d.name, d.deployment_group_id, d.platform, d.deployment_protocol_version,
    d.base_platform, d.status, d.stack_settings, d.stack_state, d.environment_info,
    d.runtime_metadata, d.current_release_id, d.desired_release_id, d.import_source,
    d.setup_metadata, d.setup_target, d.setup_fingerprint, d.setup_fingerprint_version,
    d.environment_variables, d.retry_requested, d.locked_by, d.locked_at, d.created_at,
    d.updated_at, d.error, d.workspace_id, d.project_id, d.input_values";

/// Where the group's name is, in a query that selects [`COLUMNS`] and then `g.name`.
const GROUP_NAME_COLUMN: usize = 28;

/// A row with its JSON still text, so that row mapping cannot fail on it.
struct Raw {
    id: String,
    name: String,
    deployment_group_id: String,
    platform: String,
    deployment_protocol_version: u32,
    base_platform: Option<String>,
    status: String,
    stack_settings: String,
    stack_state: Option<String>,
    environment_info: Option<String>,
    runtime_metadata: Option<String>,
    current_release_id: Option<String>,
    desired_release_id: Option<String>,
    import_source: Option<String>,
    setup_metadata: Option<String>,
    setup_target: Option<String>,
    setup_fingerprint: Option<String>,
    setup_fingerprint_version: Option<i64>,
    environment_variables: Option<String>,
    retry_requested: bool,
    locked_by: Option<String>,
    locked_at: Option<String>,
    created_at: String,
    updated_at: Option<String>,
    error: Option<String>,
    workspace_id: String,
    project_id: String,
    input_values: Option<String>,
    group_name: Option<String>,
}

fn raw(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        id: row.get(0)?,
        name: row.get(1)?,
        deployment_group_id: row.get(2)?,
        platform: row.get(3)?,
        deployment_protocol_version: row.get(4)?,
        base_platform: row.get(5)?,
        status: row.get(6)?,
        stack_settings: row.get(7)?,
        stack_state: row.get(8)?,
        environment_info: row.get(9)?,
        runtime_metadata: row.get(10)?,
        current_release_id: row.get(11)?,
        desired_release_id: row.get(12)?,
        import_source: row.get(13)?,
        setup_metadata: row.get(14)?,
        setup_target: row.get(15)?,
        setup_fingerprint: row.get(16)?,
        setup_fingerprint_version: row.get(17)?,
        environment_variables: row.get(18)?,
        retry_requested: row.get(19)?,
        locked_by: row.get(20)?,
        locked_at: row.get(21)?,
        created_at: row.get(22)?,
        updated_at: row.get(23)?,
        error: row.get(24)?,
        workspace_id: row.get(25)?,
        project_id: row.get(26)?,
        input_values: row.get(27)?,
        group_name: if row.as_ref().column_count() > GROUP_NAME_COLUMN {
            row.get(GROUP_NAME_COLUMN)?
        } else {
            None
        },
    })
}

impl Raw {
    fn decode(self) -> Result<Deployment, Error> {
        const TABLE: &str = "deployment";
        let id = self.id;
        let json = |column, text| optional_json_column(TABLE, &id, column, text);
        Ok(Deployment {
            stack_settings: json_column(TABLE, &id, "stack_settings", self.stack_settings)?,
            stack_state: json("stack_state", self.stack_state)?,
            environment_info: json("environment_info", self.environment_info)?,
            runtime_metadata: json("runtime_metadata", self.runtime_metadata)?,
            setup_metadata: json("setup_metadata", self.setup_metadata)?,
            environment_variables: json("environment_variables", self.environment_variables)?,
            error: json("error", self.error)?,
            input_values: json("input_values", self.input_values)?,
            name: self.name,
            deployment_group_id: self.deployment_group_id,
            platform: self.platform,
            deployment_protocol_version: self.deployment_protocol_version,
            base_platform: self.base_platform,
            status: self.status,
            current_release_id: self.current_release_id,
            desired_release_id: self.desired_release_id,
            import_source: self.import_source,
            setup_target: self.setup_target,
            setup_fingerprint: self.setup_fingerprint,
            setup_fingerprint_version: self.setup_fingerprint_version,
            retry_requested: self.retry_requested,
            locked_by: self.locked_by,
            locked_at: self.locked_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            workspace_id: self.workspace_id,
            project_id: self.project_id,
            group_name: self.group_name,
            id,
        })
    }
}

/// `'a','b'` for an `IN` list of statuses; they are our own constants, never client text.
fn status_list(statuses: &[DeploymentStatus]) -> String {
    statuses
        .iter()
        .map(|status| format!("'{status}'"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Deployment>, Error> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deployments AS d WHERE d.id = ?1"
    ))?
    .query_row([id], raw)
    .optional()?
    .map(Raw::decode)
    .transpose()
}

/// The group a deployment is in, for authorizing a call that names it.
pub fn group_of(conn: &Connection, id: &str) -> Result<Option<String>, Error> {
    Ok(conn
        .prepare_cached("SELECT deployment_group_id FROM deployments WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()?)
}

/// The release a deployment's images are pulled from, always one the manager assigned it:
/// the last desired release it reported reaching, else its desired one. The current release
/// its reports name is not: a report could name any release. `None` when there is no such
/// deployment, `Some(None)` when it has neither.
pub fn pull_release_of(conn: &Connection, id: &str) -> Result<Option<Option<String>>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(reached_release_id, desired_release_id) FROM deployments WHERE id = ?1",
        )?
        .query_row([id], |row| row.get(0))
        .optional()?)
}

/// A deployment's stored status, for explaining why a conditional change did not happen.
pub fn status_of(conn: &Connection, id: &str) -> Result<Option<String>, Error> {
    Ok(conn
        .prepare_cached("SELECT status FROM deployments WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()?)
}

/// Which deployments a list shows.
#[derive(Debug, Clone, Copy)]
pub enum GroupFilter<'a> {
    All,
    /// The deployments of these groups (none: no deployments).
    Groups(&'a [String]),
}

/// Newest first, with each group's name.
pub fn list(
    conn: &Connection,
    groups: GroupFilter<'_>,
    name: Option<&str>,
) -> Result<Vec<Deployment>, Error> {
    let mut sql = format!(
        "SELECT {COLUMNS}, g.name FROM deployments AS d
         LEFT JOIN deployment_groups AS g ON g.id = d.deployment_group_id WHERE 1"
    );
    let mut values: Vec<SqlValue> = Vec::new();
    if let GroupFilter::Groups(ids) = groups {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sql.push_str(&format!(
            " AND d.deployment_group_id IN ({})",
            vec!["?"; ids.len()].join(",")
        ));
        values.extend(ids.iter().cloned().map(SqlValue::Text));
    }
    if let Some(name) = name {
        sql.push_str(" AND d.name = ?");
        values.push(SqlValue::Text(name.to_owned()));
    }
    sql.push_str(" ORDER BY d.seq DESC");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), raw)?;
    rows.map(|row| row?.decode()).collect()
}

/// Where a deployment's telemetry comes from, as the vendor's backend is told.
#[derive(Debug)]
pub struct Origin {
    pub name: String,
    pub deployment_group_id: String,
    pub group_name: Option<String>,
    pub current_release_id: Option<String>,
}

pub fn origin(conn: &Connection, id: &str) -> Result<Option<Origin>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT d.name, d.deployment_group_id, g.name, d.current_release_id
             FROM deployments AS d LEFT JOIN deployment_groups AS g ON g.id = d.deployment_group_id
             WHERE d.id = ?1",
        )?
        .query_row([id], |row| {
            Ok(Origin {
                name: row.get(0)?,
                deployment_group_id: row.get(1)?,
                group_name: row.get(2)?,
                current_release_id: row.get(3)?,
            })
        })
        .optional()?)
}

/// The id of the deployment named `name` in a group.
pub fn id_by_name(conn: &Connection, group_id: &str, name: &str) -> Result<Option<String>, Error> {
    Ok(conn
        .prepare_cached("SELECT id FROM deployments WHERE deployment_group_id = ?1 AND name = ?2")?
        .query_row([group_id, name], |row| row.get(0))
        .optional()?)
}

pub fn newest(conn: &Connection) -> Result<Option<Deployment>, Error> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deployments AS d ORDER BY d.seq DESC LIMIT 1"
    ))?
    .query_row([], raw)
    .optional()?
    .map(Raw::decode)
    .transpose()
}

#[derive(Debug)]
pub struct NewDeployment<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub deployment_group_id: &'a str,
    pub platform: Platform,
    pub base_platform: Option<Platform>,
    pub stack_settings: &'a str,
    pub stack_state: Option<&'a str>,
    pub environment_variables: Option<&'a str>,
    pub input_values: Option<&'a str>,
    pub desired_release_id: Option<&'a str>,
    /// The deployment's own token, kept raw because workloads are given it: the local
    /// runtime accepts pushed commands only with it.
    pub deployment_token: &'a str,
}

/// The token workloads of deployment `id` are given, if it has one.
pub fn workload_token(conn: &Connection, id: &str) -> Result<Option<String>, Error> {
    Ok(conn
        .prepare_cached("SELECT deployment_token FROM deployments WHERE id = ?1")?
        .query_row([id], |row| row.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// The push targets deployd last reported for deployment `id`: worker id to URL.
pub fn push_targets(conn: &Connection, id: &str) -> Result<BTreeMap<String, String>, Error> {
    let raw = conn
        .prepare_cached("SELECT push_targets FROM deployments WHERE id = ?1")?
        .query_row([id], |row| row.get::<_, Option<String>>(0))
        .optional()?
        .flatten();
    Ok(match raw {
        Some(raw) => serde_json::from_str(&raw)?,
        None => BTreeMap::new(),
    })
}

/// Records where deployd's workers of deployment `id` take pushed commands.
pub fn set_push_targets(
    conn: &Connection,
    id: &str,
    targets: &BTreeMap<String, String>,
) -> Result<(), Error> {
    conn.prepare_cached("UPDATE deployments SET push_targets = ?1 WHERE id = ?2")?
        .execute(params![serde_json::to_string(targets)?, id])?;
    Ok(())
}

/// Inserts a `pending` deployment. A name taken in the group is a
/// `DEPLOYMENT_NAME_CONFLICT`, also when another process took it first.
pub fn insert(conn: &Connection, new: &NewDeployment<'_>) -> Result<Deployment, Error> {
    let inserted = conn
        .prepare_cached(&format!(
            "INSERT INTO deployments (id, name, deployment_group_id, platform, base_platform,
                 status, stack_settings, stack_state, environment_variables, input_values,
                 desired_release_id, deployment_token, created_at, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, '{}', ?6, ?7, ?8, ?9, ?10, ?11, {NOW},
                 (SELECT COALESCE(MAX(seq), 0) + 1 FROM deployments))",
            DeploymentStatus::Pending
        ))?
        .execute(params![
            new.id,
            new.name,
            new.deployment_group_id,
            new.platform.as_str(),
            new.base_platform.map(Platform::as_str),
            new.stack_settings,
            new.stack_state,
            new.environment_variables,
            new.input_values,
            new.desired_release_id,
            new.deployment_token
        ]);
    match inserted {
        Ok(_) => get(conn, new.id)?.ok_or_else(|| Error::deployment_not_found(new.id)),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(Error::DeploymentNameConflict {
                name: new.name.to_owned(),
                deployment_group_id: new.deployment_group_id.to_owned(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// A new release becomes the desired one of every deployment it applies to: those running,
/// or failed in an update or a refresh, on any platform. Returns their ids, whose agents are
/// to be told.
pub fn adopt_release(conn: &Connection, release_id: &str) -> Result<Vec<String>, Error> {
    let mut statement = conn.prepare_cached(&format!(
        "UPDATE deployments SET desired_release_id = ?1, status = '{}',
             next_step_after = NULL, updated_at = {NOW}
         WHERE status IN ({})
         RETURNING id",
        DeploymentStatus::UpdatePending,
        status_list(&DeploymentStatus::RELEASE_ELIGIBLE)
    ))?;
    let ids = statement.query_map([release_id], |row| row.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}

/// Asks for a teardown, unless one is under way or nothing is left to tear down here.
pub fn request_cleanup(conn: &Connection, id: &str) -> Result<bool, Error> {
    let mut untouched = DeploymentStatus::DELETE_UNDER_WAY.to_vec();
    untouched.extend(DeploymentStatus::SETUP_TEARDOWN);
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE deployments SET status = '{}', runtime_metadata = COALESCE(runtime_metadata, '{{}}'),
                 next_step_after = NULL, updated_at = {NOW}
             WHERE id = ?1 AND status NOT IN ({})",
            DeploymentStatus::DeletePending,
            status_list(&untouched)
        ))?
        .execute([id])?;
    Ok(changed == 1)
}

pub fn remove(conn: &Connection, id: &str) -> Result<bool, Error> {
    Ok(conn
        .prepare_cached("DELETE FROM deployments WHERE id = ?1")?
        .execute([id])?
        == 1)
}

/// Flags a retry, only from a status a retry can restart.
pub fn request_retry(conn: &Connection, id: &str) -> Result<bool, Error> {
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE deployments SET retry_requested = 1, next_step_after = NULL, updated_at = {NOW}
             WHERE id = ?1 AND status IN ({})",
            status_list(&DeploymentStatus::RETRYABLE)
        ))?
        .execute([id])?;
    Ok(changed == 1)
}

/// Asks for an update, unless a deletion is under way: a redeploy must not undo it.
pub fn request_redeploy(conn: &Connection, id: &str) -> Result<bool, Error> {
    // A pull deployment's agent learns of it from a sync, which sends a target only when
    // a release is desired: the one it runs, for a redeploy (see `reconcile::sync_ignores`).
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE deployments SET status = '{}', next_step_after = NULL, updated_at = {NOW},
                desired_release_id = CASE
                    WHEN json_extract(stack_settings, '$.deploymentModel') = 'pull'
                    THEN COALESCE(desired_release_id, current_release_id)
                    ELSE desired_release_id END
             WHERE id = ?1 AND status NOT IN ({})",
            DeploymentStatus::UpdatePending,
            status_list(&DeploymentStatus::DELETE_UNDER_WAY)
        ))?
        .execute([id])?;
    Ok(changed == 1)
}

/// Which deployments an acquire looks at (the rules are [`crate::lifecycle::lease`]).
#[derive(Debug)]
pub struct AcquireQuery<'a> {
    pub session: &'a str,
    pub model: DeploymentModel,
    pub statuses: &'a StatusFilter,
    pub ids: Option<&'a [String]>,
    pub platforms: Option<&'a [Platform]>,
    pub limit: u32,
}

impl AcquireQuery<'_> {
    /// The `WHERE` clause and its parameters; `None` when it can match nothing.
    fn predicate(&self) -> Option<(String, Vec<SqlValue>)> {
        let StatusFilter { direct, with_retry } = self.statuses;
        if direct.is_empty() && with_retry.is_empty() {
            return None;
        }
        let mut values = vec![
            SqlValue::Real(-f64::from(STALE_LOCK_SECS)),
            SqlValue::Text(self.model.as_str().to_owned()),
        ];
        let mut sql = format!(
            "(status IN ({}) OR (retry_requested = 1 AND status IN ({})))
             AND (locked_by IS NULL OR locked_at IS NULL OR locked_at < {})
             AND (next_step_after IS NULL OR next_step_after <= {NOW})
             AND COALESCE(json_extract(stack_settings, '$.deploymentModel'), 'push') = ?",
            status_list(direct),
            status_list(with_retry),
            now_plus("?"),
        );
        if let Some(ids) = self.ids {
            if ids.is_empty() {
                return None;
            }
            sql.push_str(&format!(" AND id IN ({})", vec!["?"; ids.len()].join(",")));
            values.extend(ids.iter().cloned().map(SqlValue::Text));
        }
        if let Some(platforms) = self.platforms {
            if platforms.is_empty() {
                return None;
            }
            sql.push_str(&format!(
                " AND platform IN ({})",
                vec!["?"; platforms.len()].join(",")
            ));
            values.extend(
                platforms
                    .iter()
                    .map(|p| SqlValue::Text(p.as_str().to_owned())),
            );
        }
        Some((sql, values))
    }
}

/// Locks up to `limit` matching deployments for `session`, oldest first, and returns them as
/// they were before (so `retry_requested` shows the flag the lock consumed), with the lock.
pub fn acquire(conn: &Connection, query: &AcquireQuery<'_>) -> Result<Vec<Deployment>, Error> {
    let Some((predicate, values)) = query.predicate() else {
        return Ok(Vec::new());
    };
    let candidates = {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM deployments AS d WHERE {predicate} ORDER BY d.seq LIMIT ?"
        ))?;
        let mut with_limit = values.clone();
        with_limit.push(SqlValue::Integer(i64::from(query.limit)));
        let rows = stmt.query_map(params_from_iter(with_limit), raw)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let mut lock = conn.prepare_cached(&format!(
        "UPDATE deployments SET locked_by = ?, locked_at = {NOW}, retry_requested = 0
         WHERE {predicate} AND id = ? RETURNING locked_at"
    ))?;
    let mut acquired = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let mut lock_values = vec![SqlValue::Text(query.session.to_owned())];
        lock_values.extend(values.iter().cloned());
        lock_values.push(SqlValue::Text(candidate.id.clone()));
        let locked_at: Option<String> = lock
            .query_row(params_from_iter(lock_values), |row| row.get(0))
            .optional()?;
        if let Some(locked_at) = locked_at {
            let mut deployment = candidate.decode()?;
            deployment.locked_by = Some(query.session.to_owned());
            deployment.locked_at = Some(locked_at);
            acquired.push(deployment);
        }
    }
    Ok(acquired)
}

/// Extends `session`'s lock; `false` when the session does not hold it.
pub fn renew_lock(conn: &Connection, id: &str, session: &str) -> Result<bool, Error> {
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE deployments SET locked_at = {NOW} WHERE id = ?1 AND locked_by = ?2"
        ))?
        .execute([id, session])?;
    Ok(changed == 1)
}

/// Drops `session`'s lock; another session's lock stays.
pub fn release_lock(conn: &Connection, id: &str, session: &str) -> Result<(), Error> {
    conn.prepare_cached(
        "UPDATE deployments SET locked_by = NULL, locked_at = NULL WHERE id = ?1 AND locked_by = ?2",
    )?
    .execute([id, session])?;
    Ok(())
}

/// Persists a reported state as [`crate::lifecycle::reconcile::write`] decided. Matched by id
/// only: reports are not gated on the lock. A report that reaches the desired release also
/// records it as reached (see [`pull_release_of`]).
pub fn apply_report(
    conn: &Connection,
    id: &str,
    state: &DeploymentState,
    write: &Write,
) -> Result<(), Error> {
    let json =
        |value: &Option<serde_json::Value>| value.as_ref().map(serde_json::to_string).transpose();
    let delay_seconds = write.delay_ms.map(|ms| ms as f64 / 1000.0);
    conn.prepare_cached(&format!(
        "UPDATE deployments SET
             status = ?1, stack_state = ?2, environment_info = ?3, runtime_metadata = ?4,
             current_release_id = ?5,
             reached_release_id = CASE WHEN ?6 THEN desired_release_id ELSE reached_release_id END,
             desired_release_id = CASE WHEN ?6 THEN NULL ELSE desired_release_id END,
             retry_requested = ?7, error = ?8, deployment_protocol_version = ?9,
             next_step_after = CASE WHEN ?10 IS NULL THEN NULL ELSE {} END,
             updated_at = {NOW},
             locked_at = CASE WHEN ?11 THEN {NOW} ELSE locked_at END
         WHERE id = ?12",
        now_plus("?10")
    ))?
    .execute(params![
        write.status.as_str(),
        json(&state.stack_state)?,
        json(&state.environment_info)?,
        json(&state.runtime_metadata)?,
        write.current_release_id,
        write.clear_desired_release,
        write.retry_requested,
        json(&write.error)?,
        write.protocol_version,
        delay_seconds,
        write.renew_lock,
        id,
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests;
