//! The command registry: every change to a command is one conditional `UPDATE` whose changed
//! row count says whether it happened, so two racing transitions never both win. Terminal
//! states (`SUCCEEDED`, `FAILED`, `EXPIRED`) never change.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::Error;
use protocol::commands::{BlobKind, CommandState, CommandTarget, DeliveryMode, TargetType};

/// `state NOT IN (terminal)`, the guard of every write.
const NOT_TERMINAL: &str = "state NOT IN ('SUCCEEDED', 'FAILED', 'EXPIRED')";

/// A pull command a receiver may lease now: waiting, or dispatched under a lease that ran
/// out (redelivery).
const LEASABLE: &str = "delivery_mode = 'pull' AND (state = 'PENDING' OR (state = 'DISPATCHED' AND (lease_id IS NULL OR lease_expires_at <= :now)))";

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub id: String,
    pub deployment_id: String,
    pub name: String,
    pub state: CommandState,
    pub delivery_mode: DeliveryMode,
    pub attempt: u32,
    pub deadline: Option<i64>,
    pub target: CommandTarget,
    pub lease_id: Option<String>,
    pub lease_expires_at: Option<i64>,
}

const COLUMNS: &str = "id, deployment_id, name, state, delivery_mode, attempt, deadline, \
     target_resource_id, target_resource_type, lease_id, lease_expires_at";

fn command(row: &Row<'_>) -> rusqlite::Result<Result<Command, Error>> {
    let id: String = row.get(0)?;
    let state: String = row.get(3)?;
    let mode: String = row.get(4)?;
    let kind: String = row.get(8)?;
    let corrupt =
        |what: &str, value: &str| Error::Corrupt(format!("command {id}: {what} {value:?}"));
    let Some(state) = CommandState::parse(&state) else {
        return Ok(Err(corrupt("state", &state)));
    };
    let delivery_mode = match mode.as_str() {
        "push" => DeliveryMode::Push,
        "pull" => DeliveryMode::Pull,
        other => return Ok(Err(corrupt("delivery mode", other))),
    };
    let Some(resource_type) = TargetType::parse(&kind) else {
        return Ok(Err(corrupt("target type", &kind)));
    };
    Ok(Ok(Command {
        deployment_id: row.get(1)?,
        name: row.get(2)?,
        state,
        delivery_mode,
        attempt: row.get(5)?,
        deadline: row.get(6)?,
        target: CommandTarget {
            resource_id: row.get(7)?,
            resource_type,
        },
        lease_id: row.get(9)?,
        lease_expires_at: row.get(10)?,
        id,
    }))
}

/// A size as an SQLite integer.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Command>, Error> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM commands WHERE id = ?1"))?
        .query_row([id], command)
        .optional()?
        .transpose()
}

#[derive(Debug)]
pub struct NewCommand<'a> {
    pub id: &'a str,
    pub deployment_id: &'a str,
    pub name: &'a str,
    pub state: CommandState,
    pub delivery_mode: DeliveryMode,
    pub deadline: Option<i64>,
    pub request_size_bytes: Option<u64>,
    pub target: &'a CommandTarget,
    pub now: i64,
}

pub fn insert(conn: &Connection, new: &NewCommand<'_>) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO commands (id, deployment_id, name, state, delivery_mode, deadline, created_at,
             request_size_bytes, target_resource_id, target_resource_type)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        new.id,
        new.deployment_id,
        new.name,
        new.state.as_str(),
        new.delivery_mode.as_str(),
        new.deadline,
        new.now,
        new.request_size_bytes.map(clamp),
        new.target.resource_id,
        new.target.resource_type.as_str(),
    ])?;
    Ok(())
}

/// The command an unexpired idempotency key names.
pub fn idempotent(conn: &Connection, key: &str, now: i64) -> Result<Option<String>, Error> {
    Ok(conn
        .prepare_cached("SELECT command_id FROM idempotency WHERE key = ?1 AND expires_at > ?2")?
        .query_row(params![key, now], |row| row.get(0))
        .optional()?)
}

/// Put-if-absent of an idempotency key (an expired one counts as absent): `true` when this
/// call claimed it.
pub fn claim_idempotency(
    conn: &Connection,
    key: &str,
    command_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<bool, Error> {
    let changed = conn
        .prepare_cached(
            "INSERT INTO idempotency (key, command_id, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET command_id = excluded.command_id,
                 expires_at = excluded.expires_at
             WHERE idempotency.expires_at <= ?4",
        )?
        .execute(params![key, command_id, expires_at, now])?;
    Ok(changed == 1)
}

/// Removes idempotency keys past their lifetime.
pub fn forget_idempotency(conn: &Connection, now: i64) -> Result<usize, Error> {
    Ok(conn
        .prepare_cached("DELETE FROM idempotency WHERE expires_at <= ?1")?
        .execute([now])?)
}

/// A terminal write (`complete_command`): `true` when this call made the command terminal.
/// Any lease goes with it.
pub fn complete(
    conn: &Connection,
    id: &str,
    state: CommandState,
    response_size: Option<u64>,
    error: Option<&str>,
    now: i64,
) -> Result<bool, Error> {
    debug_assert!(state.is_terminal());
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE commands SET state = ?2, completed_at = ?3, response_size_bytes = ?4,
                 error = ?5, lease_id = NULL, lease_acquired_at = NULL, lease_expires_at = NULL
             WHERE id = ?1 AND {NOT_TERMINAL}"
        ))?
        .execute(params![
            id,
            state.as_str(),
            now,
            response_size.map(clamp),
            error
        ])?;
    Ok(changed == 1)
}

/// `PENDING_UPLOAD` → `PENDING`; `false` when the command was not waiting for its upload.
pub fn upload_done(conn: &Connection, id: &str) -> Result<bool, Error> {
    let changed = conn
        .prepare_cached(
            "UPDATE commands SET state = 'PENDING' WHERE id = ?1 AND state = 'PENDING_UPLOAD'",
        )?
        .execute([id])?;
    Ok(changed == 1)
}

/// Whether the storage URL signed `signature` may write `id`'s `body` now: only while the
/// command is in `expected`, the state that waits for that body, and only if the URL has not
/// written before.
pub fn check_storage_write(
    conn: &Connection,
    id: &str,
    body: BlobKind,
    signature: &str,
    expected: CommandState,
) -> Result<(), Error> {
    let command = get(conn, id)?.ok_or_else(|| Error::CommandNotFound(id.to_owned()))?;
    if command.state != expected {
        return Err(Error::StorageUploadNotExpected {
            command_id: id.to_owned(),
            body: body.as_str(),
            state: command.state.as_str(),
        });
    }
    let used = conn
        .prepare_cached(
            "SELECT 1 FROM storage_writes WHERE command_id = ?1 AND body = ?2 AND signature = ?3",
        )?
        .exists(params![id, body.as_str(), signature])?;
    if used {
        return Err(Error::StorageUrlUsed {
            command_id: id.to_owned(),
            body: body.as_str(),
        });
    }
    Ok(())
}

/// Records that the storage URL signed `signature` wrote `id`'s `body`, if it may (see
/// [`check_storage_write`]). Inside an immediate transaction, with the body put in place
/// before the commit, so that of two racing writes one lands and the other is refused.
pub fn claim_storage_write(
    conn: &Connection,
    id: &str,
    body: BlobKind,
    signature: &str,
    expected: CommandState,
    now: i64,
) -> Result<(), Error> {
    check_storage_write(conn, id, body, signature, expected)?;
    conn.prepare_cached(
        "INSERT INTO storage_writes (command_id, body, signature, written_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, body.as_str(), signature, now])?;
    Ok(())
}

/// `mark_dispatched_if_not_terminal`, for push delivery.
pub fn mark_dispatched(conn: &Connection, id: &str, now: i64) -> Result<bool, Error> {
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE commands SET state = 'DISPATCHED', dispatched_at = ?2
             WHERE id = ?1 AND {NOT_TERMINAL}"
        ))?
        .execute(params![id, now])?;
    Ok(changed == 1)
}

/// Up to `limit` leasable commands of one target, oldest first.
pub fn leasable(
    conn: &Connection,
    deployment_id: &str,
    target_id: &str,
    now: i64,
    limit: u32,
) -> Result<Vec<String>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id FROM commands
         WHERE deployment_id = :dep AND target_resource_id = :target
             AND delivery_mode = 'pull' AND state IN ('PENDING', 'DISPATCHED') AND {LEASABLE}
         ORDER BY rowid LIMIT :limit"
    ))?;
    let rows = stmt.query_map(
        rusqlite::named_params! {
            ":dep": deployment_id, ":target": target_id, ":now": now, ":limit": limit
        },
        |row| row.get(0),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Takes a lease on a leasable command: put-if-absent of the lease (a live lease of anyone
/// else's keeps it), `DISPATCHED`, and one more attempt when it was dispatched before (the
/// previous lease ran out without an answer). `None` when the command was not leasable.
pub fn lease(
    conn: &Connection,
    id: &str,
    lease_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<Option<Command>, Error> {
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE commands SET attempt = attempt + (state = 'DISPATCHED'),
                 state = 'DISPATCHED', dispatched_at = :now,
                 lease_id = :lease, lease_acquired_at = :now, lease_expires_at = :expires
             WHERE id = :id AND {LEASABLE}"
        ))?
        .execute(rusqlite::named_params! {
            ":id": id, ":lease": lease_id, ":now": now, ":expires": expires_at
        })?;
    if changed == 0 {
        return Ok(None);
    }
    get(conn, id)
}

/// The command a live lease is on.
pub fn leased(conn: &Connection, lease_id: &str, now: i64) -> Result<Option<Command>, Error> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM commands WHERE lease_id = ?1 AND lease_expires_at > ?2"
    ))?
    .query_row(params![lease_id, now], command)
    .optional()?
    .transpose()
}

/// Gives a live lease up: the lease goes, and a dispatched command goes back to `PENDING`
/// with one more attempt. `None` when there is no such live lease; otherwise whether the
/// command was put back.
pub fn release(conn: &Connection, lease_id: &str, now: i64) -> Result<Option<bool>, Error> {
    let Some(command) = leased(conn, lease_id, now)? else {
        return Ok(None);
    };
    let released = conn
        .prepare_cached(
            "UPDATE commands SET state = 'PENDING', attempt = attempt + 1, lease_id = NULL,
                 lease_acquired_at = NULL, lease_expires_at = NULL
             WHERE id = ?1 AND lease_id = ?2 AND state = 'DISPATCHED'",
        )?
        .execute(params![command.id, lease_id])?
        == 1;
    if !released {
        conn.prepare_cached(
            "UPDATE commands SET lease_id = NULL, lease_acquired_at = NULL, lease_expires_at = NULL
             WHERE id = ?1 AND lease_id = ?2",
        )?
        .execute(params![command.id, lease_id])?;
    }
    Ok(Some(released))
}

/// When the soonest live lease of a target runs out, for a long poll to wake then.
pub fn next_lease_expiry(
    conn: &Connection,
    deployment_id: &str,
    target_id: &str,
    now: i64,
) -> Result<Option<i64>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT min(lease_expires_at) FROM commands
             WHERE deployment_id = ?1 AND target_resource_id = ?2 AND delivery_mode = 'pull'
                 AND state IN ('PENDING', 'DISPATCHED') AND lease_expires_at > ?3",
        )?
        .query_row(params![deployment_id, target_id, now], |row| row.get(0))?)
}

/// Non-terminal commands whose deadline has passed.
pub fn overdue(conn: &Connection, now: i64, limit: u32) -> Result<Vec<Command>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM commands
         WHERE deadline IS NOT NULL AND deadline <= ?1 AND {NOT_TERMINAL}
         ORDER BY deadline LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now, limit], command)?;
    rows.map(|row| row?).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Db;

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path().join("commands.db"))
            .await
            .expect("open");
        (dir, db)
    }

    fn target() -> CommandTarget {
        CommandTarget {
            resource_id: "api".into(),
            resource_type: TargetType::Container,
        }
    }

    fn insert_pull(conn: &Connection, id: &str, now: i64) {
        insert(
            conn,
            &NewCommand {
                id,
                deployment_id: "dep_1",
                name: "run",
                state: CommandState::Pending,
                delivery_mode: DeliveryMode::Pull,
                deadline: None,
                request_size_bytes: Some(4),
                target: &target(),
                now,
            },
        )
        .expect("insert");
    }

    #[tokio::test]
    async fn one_live_lease_per_command_and_redelivery_after_expiry() {
        let (_dir, db) = db().await;
        db.call(|conn| {
            insert_pull(conn, "cmd_a", 0);
            insert_pull(conn, "cmd_b", 1);
            assert_eq!(leasable(conn, "dep_1", "api", 10, 10)?, ["cmd_a", "cmd_b"]);
            let first = lease(conn, "cmd_a", "lease_1", 10, 100)?.expect("leased");
            assert_eq!((first.state, first.attempt), (CommandState::Dispatched, 1));
            // A live lease is never taken twice.
            assert!(lease(conn, "cmd_a", "lease_2", 20, 110)?.is_none());
            assert_eq!(leasable(conn, "dep_1", "api", 20, 10)?, ["cmd_b"]);
            assert_eq!(next_lease_expiry(conn, "dep_1", "api", 20)?, Some(100));
            // Expired: leasable again, with the next attempt.
            let again = lease(conn, "cmd_a", "lease_3", 100, 200)?.expect("re-leased");
            assert_eq!(again.attempt, 2);
            assert!(leased(conn, "lease_1", 100)?.is_none());
            // Release puts it back with one more attempt.
            assert_eq!(release(conn, "lease_3", 150)?, Some(true));
            let back = get(conn, "cmd_a")?.expect("command");
            assert_eq!((back.state, back.attempt), (CommandState::Pending, 3));
            assert_eq!(release(conn, "lease_3", 150)?, None);
            // Terminal writes happen once, and only from a non-terminal state.
            assert!(complete(
                conn,
                "cmd_a",
                CommandState::Succeeded,
                Some(1),
                None,
                160
            )?);
            assert!(!complete(
                conn,
                "cmd_a",
                CommandState::Expired,
                None,
                None,
                170
            )?);
            assert!(!mark_dispatched(conn, "cmd_a", 170)?);
            assert!(lease(conn, "cmd_a", "lease_4", 170, 300)?.is_none());
            assert_eq!(leasable(conn, "dep_1", "api", 170, 10)?, ["cmd_b"]);
            Ok(())
        })
        .await
        .expect("registry");
    }

    #[tokio::test]
    async fn a_storage_url_writes_once_and_only_in_the_state_that_waits_for_it() {
        let (_dir, db) = db().await;
        db.call(|conn| {
            insert_pull(conn, "cmd_a", 0);
            let params = BlobKind::Params;
            let pending = CommandState::Pending;
            check_storage_write(conn, "cmd_a", params, "sig1", pending)?;
            claim_storage_write(conn, "cmd_a", params, "sig1", pending, 1)?;
            let again = claim_storage_write(conn, "cmd_a", params, "sig1", pending, 2);
            assert!(
                matches!(again, Err(Error::StorageUrlUsed { .. })),
                "{again:?}"
            );
            // Another URL, or the other body, is another write.
            claim_storage_write(conn, "cmd_a", params, "sig2", pending, 3)?;
            claim_storage_write(conn, "cmd_a", BlobKind::Response, "sig1", pending, 4)?;
            let dispatched = CommandState::Dispatched;
            let early = check_storage_write(conn, "cmd_a", params, "sig3", dispatched);
            assert!(
                matches!(
                    early,
                    Err(Error::StorageUploadNotExpected {
                        state: "PENDING",
                        ..
                    })
                ),
                "{early:?}"
            );
            let unknown = check_storage_write(conn, "cmd_x", params, "sig1", pending);
            assert!(
                matches!(unknown, Err(Error::CommandNotFound(_))),
                "{unknown:?}"
            );
            Ok(())
        })
        .await
        .expect("storage writes");
    }

    #[tokio::test]
    async fn idempotency_keys_are_put_if_absent_and_expire() {
        let (_dir, db) = db().await;
        db.call(|conn| {
            assert!(claim_idempotency(conn, "k", "cmd_a", 0, 100)?);
            assert!(!claim_idempotency(conn, "k", "cmd_b", 50, 150)?);
            assert_eq!(idempotent(conn, "k", 50)?.as_deref(), Some("cmd_a"));
            assert_eq!(idempotent(conn, "k", 100)?, None);
            assert!(claim_idempotency(conn, "k", "cmd_c", 100, 200)?);
            assert_eq!(idempotent(conn, "k", 150)?.as_deref(), Some("cmd_c"));
            assert_eq!(forget_idempotency(conn, 300)?, 1);
            Ok(())
        })
        .await
        .expect("idempotency");
    }
}
