//! The queue trigger: claims the queue's due messages one at a time from the SDK's store
//! (`<dir>/localqueue.sqlite`, format `localqueue.v1`, see docs/compatibility.md) and
//! delivers each as a `QueueMessage` task. A success deletes the message; an error, a
//! timeout or no subscriber leaves it to come back after [`RETRY_AFTER`], as an expired
//! lease would. The runtime only opens a store the app created: the SDK owns its schema.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{Producer, outcome, timestamp};
use crate::proto::send_task_result_request::Result as TaskResult;
use crate::proto::{QueueMessage, task};

const STORE_FILE: &str = "localqueue.sqlite";
const FORMAT: &str = "localqueue.v1";
/// How long the app has to answer one message.
const TASK_TIMEOUT: Duration = Duration::from_secs(300);
/// A claimed message stays hidden from other receivers for longer than the app may take.
const CLAIM_FOR: Duration = Duration::from_secs(330);
/// When a message the app did not take becomes due again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
const POLL_IDLE: Duration = Duration::from_secs(1);
const POLL_AFTER_ERROR: Duration = Duration::from_secs(2);
/// How long a claim waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum StoreError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store has format {found:?}, not {FORMAT}")]
    Format { found: Option<String> },
    #[error("a store operation stopped: {0}")]
    Join(String),
}

/// One delivery of one message.
#[derive(Debug)]
struct Claimed {
    row: i64,
    delivery: String,
    payload: Vec<u8>,
    attempt: u32,
}

impl Claimed {
    /// The handle the SDK's store gives for a delivery: row id and delivery id.
    fn receipt_handle(&self) -> String {
        format!("{}:{}", self.row, self.delivery)
    }
}

pub(super) async fn run(producer: Producer, queue: String, dir: PathBuf) {
    let store = dir.join(STORE_FILE);
    let mut last_error = None;
    loop {
        if producer.stop.is_cancelled() {
            return;
        }
        let claimed = blocking({
            let store = store.clone();
            move || claim(&store)
        })
        .await;
        let message = match claimed {
            Ok(Some(message)) => message,
            Ok(None) => {
                if !producer.pause(POLL_IDLE).await {
                    return;
                }
                continue;
            }
            Err(error) => {
                let error = error.to_string();
                if last_error.as_ref() != Some(&error) {
                    tracing::warn!(queue, store = %store.display(), error, "cannot read the queue");
                }
                last_error = Some(error);
                if !producer.pause(POLL_AFTER_ERROR).await {
                    return;
                }
                continue;
            }
        };
        last_error = None;
        let payload = task::Payload::QueueMessage(QueueMessage {
            id: uuid::Uuid::new_v4().to_string(),
            payload: message.payload.clone(),
            receipt_handle: message.receipt_handle(),
            source: queue.clone(),
            attempt_count: message.attempt,
            timestamp: Some(timestamp(SystemTime::now())),
            attributes: Default::default(),
        });
        let result = tokio::select! {
            result = producer.deliver(payload, TASK_TIMEOUT) => Some(result),
            // A version being replaced hands the message back at once to the one replacing it.
            () = producer.stop.cancelled() => None,
        };
        let settle = match &result {
            Some(Ok(TaskResult::Success(_))) => Settle::Delete,
            Some(result) => {
                tracing::info!(
                    queue,
                    attempt = message.attempt,
                    outcome = outcome(result),
                    "a queue message was not taken; it comes back later"
                );
                Settle::DueIn(RETRY_AFTER)
            }
            None => Settle::DueIn(Duration::ZERO),
        };
        let settled = blocking({
            let store = store.clone();
            move || settle_message(&store, &message, settle)
        })
        .await;
        if let Err(error) = settled {
            tracing::warn!(queue, %error, "cannot settle a queue message; it comes back after its claim");
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| StoreError::Join(join.to_string()))?
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as i64)
        .unwrap_or(0)
}

/// Opens the store the app created, or `None` while there is none.
fn open(store: &Path) -> Result<Option<Connection>, StoreError> {
    if !store.exists() {
        return Ok(None);
    }
    let connection = Connection::open_with_flags(
        store,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    let found: Option<String> = connection
        .query_row("SELECT value FROM meta WHERE key = 'format'", [], |row| {
            row.get(0)
        })
        .optional()
        .or_else(|error| match &error {
            // A store the app is still creating has no meta table yet.
            rusqlite::Error::SqliteFailure(_, Some(message))
                if message.starts_with("no such table") =>
            {
                Ok(None)
            }
            _ => Err(error),
        })?;
    match found.as_deref() {
        Some(FORMAT) => Ok(Some(connection)),
        None => Ok(None),
        Some(_) => Err(StoreError::Format { found }),
    }
}

/// Takes the oldest due message, hidden from other receivers for [`CLAIM_FOR`].
fn claim(store: &Path) -> Result<Option<Claimed>, StoreError> {
    let Some(mut connection) = open(store)? else {
        return Ok(None);
    };
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_ms();
    let row: Option<i64> = transaction
        .query_row(
            "SELECT id FROM messages WHERE visible_at <= ?1 ORDER BY enqueued_at, id LIMIT 1",
            params![now],
            |row| row.get(0),
        )
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let delivery = uuid::Uuid::new_v4().to_string();
    let (kind, data, attempt): (String, String, i64) = transaction.query_row(
        "UPDATE messages SET visible_at = ?1, attempt = attempt + 1, receipt_handle = ?2 \
         WHERE id = ?3 RETURNING payload_type, payload_data, attempt",
        params![now + CLAIM_FOR.as_millis() as i64, delivery, row],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    transaction.commit()?;
    Ok(Some(Claimed {
        row,
        delivery,
        payload: payload_bytes(&kind, data),
        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
    }))
}

/// A JSON payload goes to the app compact, a text one as it is.
fn payload_bytes(kind: &str, data: String) -> Vec<u8> {
    if kind == "json"
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(&data)
    {
        return value.to_string().into_bytes();
    }
    data.into_bytes()
}

#[derive(Debug, Clone, Copy)]
enum Settle {
    Delete,
    DueIn(Duration),
}

/// Acts on this delivery only: a message claimed again since then is left to its new one.
fn settle_message(store: &Path, message: &Claimed, settle: Settle) -> Result<(), StoreError> {
    let Some(connection) = open(store)? else {
        return Ok(());
    };
    match settle {
        Settle::Delete => connection.execute(
            "DELETE FROM messages WHERE id = ?1 AND receipt_handle = ?2",
            params![message.row, message.delivery],
        )?,
        Settle::DueIn(after) => connection.execute(
            "UPDATE messages SET visible_at = ?1 WHERE id = ?2 AND receipt_handle = ?3",
            params![
                now_ms() + after.as_millis() as i64,
                message.row,
                message.delivery
            ],
        )?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store as the SDK creates it.
    fn store(dir: &Path) -> Connection {
        let connection = Connection::open(dir.join(STORE_FILE)).expect("open");
        connection
            .execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('format', 'localqueue.v1');
                 CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT,
                   payload_type TEXT NOT NULL, payload_data TEXT NOT NULL,
                   enqueued_at INTEGER NOT NULL, visible_at INTEGER NOT NULL,
                   attempt INTEGER NOT NULL DEFAULT 0, receipt_handle TEXT);",
            )
            .expect("schema");
        connection
    }

    fn send(connection: &Connection, kind: &str, data: &str, at: i64) {
        connection
            .execute(
                "INSERT INTO messages (payload_type, payload_data, enqueued_at, visible_at) \
                 VALUES (?1, ?2, ?3, ?3)",
                params![kind, data, at],
            )
            .expect("send");
    }

    #[test]
    fn messages_are_claimed_oldest_first_once_each_and_settled_by_their_delivery() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            claim(&dir.path().join(STORE_FILE))
                .expect("no store")
                .is_none()
        );
        let connection = store(dir.path());
        let path = dir.path().join(STORE_FILE);
        send(&connection, "text", "second", 2);
        send(&connection, "json", "{ \"n\" : 1 }", 1);

        let first = claim(&path).expect("claim").expect("a message");
        assert_eq!(first.payload, br#"{"n":1}"#);
        assert_eq!(first.attempt, 1);
        assert!(
            first
                .receipt_handle()
                .starts_with(&format!("{}:", first.row))
        );
        let second = claim(&path).expect("claim").expect("another message");
        assert_eq!(second.payload, b"second");
        assert!(claim(&path).expect("claim").is_none(), "both are claimed");

        settle_message(&path, &first, Settle::Delete).expect("delete");
        settle_message(&path, &second, Settle::DueIn(Duration::ZERO)).expect("release");
        let again = claim(&path).expect("claim").expect("the released one");
        assert_eq!((again.row, again.attempt), (second.row, 2));
        // The first delivery of the second message no longer settles it.
        settle_message(&path, &second, Settle::Delete).expect("stale settle");
        let left: i64 = connection
            .query_row("SELECT count(*) FROM messages", [], |row| row.get(0))
            .expect("count");
        assert_eq!(left, 1);
    }

    #[test]
    fn a_store_of_another_format_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let connection = store(dir.path());
        connection
            .execute("UPDATE meta SET value = 'localqueue.v9'", [])
            .expect("format");
        let error = claim(&dir.path().join(STORE_FILE)).expect_err("refused");
        assert!(error.to_string().contains("localqueue.v9"), "{error}");
    }
}
