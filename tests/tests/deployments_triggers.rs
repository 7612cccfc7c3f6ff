//! A worker's triggers on the `local` platform, end to end: messages put in its queue's
//! store, objects written to and removed from its storage's directory, and its cron schedule
//! reach the app as tasks over the worker runtime protocol; a message the app takes is gone
//! from the store, one it fails comes back later.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::api::Api;
use e2e::deployments::{LOOPS, Leftovers, endpoint, get, onboard, release, version, wait_running};
use e2e::server::Options;
use e2e::wait_for;
use rusqlite::{Connection, params};
use serde_json::{Value, json};

/// A cron schedule fires at the next minute at the latest.
const CRON_WAIT: Duration = Duration::from_secs(75);
const TASK_WAIT: Duration = Duration::from_secs(30);
const SCHEDULE: &str = "* * * * *";

fn start() -> Api {
    Api::start_with(Options {
        deployment_loops: true,
        config: Some(LOOPS.into()),
        ..Options::default()
    })
}

/// A worker `api` running `image`, invoked by the queue `jobs`, the storage `uploads` and
/// `schedule`.
fn stack(image: &str, schedule: &str) -> Value {
    json!({
        "id": "triggered-app",
        "permissions": {"profiles": {"execution": {}}},
        "resources": {
            "uploads": {"config": {"type": "storage", "id": "uploads"}, "lifecycle": "frozen", "dependencies": []},
            "jobs": {"config": {"type": "queue", "id": "jobs"}, "lifecycle": "frozen", "dependencies": []},
            "api": {
                "config": {
                    "type": "worker", "id": "api", "permissions": "execution",
                    "code": {"type": "image", "image": image},
                    "links": [],
                    "triggers": [
                        {"type": "queue", "queue": {"type": "queue", "id": "jobs"}},
                        {"type": "storage", "storage": {"type": "storage", "id": "uploads"},
                         "events": ["created", "deleted"]},
                        {"type": "schedule", "cron": schedule}
                    ]
                },
                "lifecycle": "live",
                "dependencies": []
            }
        }
    })
}

/// The trigger tasks of `kind` the worker at `url` received, in order.
fn tasks(url: &str, kind: &str) -> Vec<Value> {
    let Some((200, body)) = get(&format!("{url}/tasks")) else {
        return Vec::new();
    };
    let all: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
    all.into_iter()
        .filter(|task| task["kind"] == kind)
        .collect()
}

/// Waits until the worker received at least `count` tasks of `kind`.
fn wait_tasks(api: &Api, url: &str, kind: &str, count: usize, within: Duration) -> Vec<Value> {
    wait_for(within, || {
        let seen = tasks(url, kind);
        (seen.len() >= count).then_some(seen)
    })
    .unwrap_or_else(|| {
        panic!(
            "the worker got {:?} of {count} {kind} tasks; server stderr:\n{}",
            tasks(url, kind),
            api.server().stderr()
        )
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The queue's store as the SDK creates it (format `localqueue.v1`).
fn queue_store(dir: &Path) -> Connection {
    let connection = Connection::open(dir.join("localqueue.sqlite")).expect("the queue's store");
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT OR IGNORE INTO meta (key, value) VALUES ('format', 'localqueue.v1');
             CREATE TABLE IF NOT EXISTS messages (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, payload_type TEXT NOT NULL,
                 payload_data TEXT NOT NULL, enqueued_at INTEGER NOT NULL,
                 visible_at INTEGER NOT NULL, attempt INTEGER NOT NULL DEFAULT 0,
                 receipt_handle TEXT);
             CREATE INDEX IF NOT EXISTS idx_messages_visible
                 ON messages (visible_at, enqueued_at, id);",
        )
        .expect("the store's schema");
    connection
}

/// Sends a message as the SDK's `send` does.
fn send(store: &Connection, kind: &str, data: &str) {
    let now = now_ms();
    store
        .execute(
            "INSERT INTO messages (payload_type, payload_data, enqueued_at, visible_at, attempt) \
             VALUES (?1, ?2, ?3, ?3, 0)",
            params![kind, data, now],
        )
        .expect("send");
}

/// `(id, attempt, visible_at, receipt_handle)` of every message left in the store.
fn left(store: &Connection) -> Vec<(i64, i64, i64, Option<String>)> {
    let mut statement = store
        .prepare("SELECT id, attempt, visible_at, receipt_handle FROM messages ORDER BY id")
        .expect("select");
    statement
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Writes `content` to `name` under `dir` as the SDK's storage does: a staging file renamed
/// into place.
fn put_object(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let target = dir.join(name);
    let staging = dir.join(format!("{name}#4242"));
    std::fs::write(&staging, content).expect("staging file");
    std::fs::rename(&staging, &target).expect("rename into place");
    target
}

#[test]
fn queue_messages_storage_events_and_cron_times_reach_a_worker_as_tasks() {
    let api = start();
    let v1 = version("trig");
    let leftovers = Leftovers::of(&api, &[&v1]);
    let image = e2e::workloads::push(&api, "alien-test-worker", &v1, &[]);
    let release_id = release(&api, stack(&image, SCHEDULE));
    let deployment = onboard(&api);
    let running = wait_running(&api, &deployment.id, &release_id);
    let url = endpoint(&running, "api");
    let dir = api
        .server()
        .data_dir()
        .join("deployments")
        .join(&deployment.id);

    // Queue: two messages taken and deleted, one failed and left for later, in FIFO order.
    let store = queue_store(&dir.join("queue").join("jobs"));
    send(&store, "json", r#"{ "n": 1 }"#);
    send(&store, "text", "hello");
    send(&store, "json", r#"{"ask": "fail"}"#);
    let queued = wait_tasks(&api, &url, "queue", 3, TASK_WAIT);
    let payloads: Vec<&str> = queued
        .iter()
        .map(|t| t["payload"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(payloads, [r#"{"n":1}"#, "hello", r#"{"ask":"fail"}"#]);
    for task in &queued {
        assert_eq!(task["source"], "jobs", "{task}");
        assert_eq!(task["attemptCount"], 1, "{task}");
        assert!(
            task["id"].as_str().is_some_and(|id| id.len() == 36),
            "{task}"
        );
    }
    let failed = &queued[2];
    let left_after = wait_for(TASK_WAIT, || {
        let rows = left(&store);
        (rows.len() == 1).then_some(rows)
    })
    .unwrap_or_else(|| panic!("the taken messages stay in the store: {:?}", left(&store)));
    let (row, attempt, visible_at, receipt) = &left_after[0];
    assert_eq!(*attempt, 1);
    assert_eq!(
        failed["receiptHandle"].as_str().unwrap_or_default(),
        format!("{row}:{}", receipt.as_deref().unwrap_or_default()),
        "the handle names the store's row and this delivery"
    );
    assert!(
        *visible_at > now_ms() + 15_000,
        "a failed message comes back later, not at once: due at {visible_at}"
    );

    // Storage: objects renamed into place or written directly, then one removed.
    let storage = dir.join("storage").join("uploads");
    std::fs::create_dir_all(storage.join("reports")).expect("a folder");
    // The recursive watch adds the new folder when it sees it.
    std::thread::sleep(Duration::from_millis(500));
    let report = put_object(&storage, "reports/a.txt", b"12345");
    std::fs::write(storage.join("top.txt"), b"0123456789").expect("a direct write");
    // The size is read when the event is handled: the object must still be there.
    wait_tasks(&api, &url, "storage", 2, TASK_WAIT);
    std::fs::remove_file(&report).expect("remove");
    let events = wait_tasks(&api, &url, "storage", 3, TASK_WAIT);
    let seen: Vec<(String, String, u64)> = events
        .iter()
        .map(|e| {
            assert_eq!(e["bucket"], "uploads", "{e}");
            (
                e["eventType"].as_str().unwrap_or_default().to_owned(),
                e["key"].as_str().unwrap_or_default().to_owned(),
                e["size"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("created".into(), "reports/a.txt".into(), 5),
            ("created".into(), "top.txt".into(), 10),
            ("deleted".into(), "reports/a.txt".into(), 0),
        ]
    );

    // Schedule: a fire at a whole minute, named by the expression, once per time.
    let fired = wait_tasks(&api, &url, "cron", 1, CRON_WAIT);
    for fire in &fired {
        assert_eq!(fire["scheduleName"], SCHEDULE, "{fire}");
        let at = fire["scheduledTime"].as_i64().unwrap_or(1);
        assert_eq!(at % 60, 0, "a fire time at a whole minute: {fire}");
    }
    let mut times: Vec<i64> = fired
        .iter()
        .filter_map(|f| f["scheduledTime"].as_i64())
        .collect();
    times.dedup();
    assert_eq!(times.len(), fired.len(), "a time fired twice: {fired:?}");

    leftovers.delete(&api, &deployment.id);
}

#[test]
fn a_schedule_the_runtime_cannot_read_fails_the_deployment_and_names_the_expression() {
    let api = start();
    let v1 = version("badcron");
    let leftovers = Leftovers::of(&api, &[&v1]);
    let image = e2e::workloads::push(&api, "alien-test-worker", &v1, &[]);
    release(&api, stack(&image, "every minute"));
    let deployment = onboard(&api);
    let failed = wait_for(Duration::from_secs(60), || {
        let record = api.deployment(&deployment.id);
        (record["status"] == "provisioning-failed").then_some(record)
    })
    .unwrap_or_else(|| {
        panic!(
            "the deployment did not fail: {:#}",
            api.deployment(&deployment.id)
        )
    });
    let error = &failed["stackState"]["resources"]["api"]["error"];
    assert_eq!(error["code"], "RESOURCE_CONFIG_INVALID", "{failed:#}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("every minute"), "{message}");
    leftovers.delete(&api, &deployment.id);
}
