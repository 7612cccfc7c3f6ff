//! The one writing connection, on a thread of its own, with group commit: the transactions
//! queued while one runs join it, each under its own savepoint, and one fsync commits them
//! all. A caller hears of success only after that commit, and a transaction that fails or
//! panics is rolled back to its savepoint without touching the others.

use std::panic::{AssertUnwindSafe, catch_unwind};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use crate::{Error, StartError};

/// Transactions that may share one commit. More wait for the next one, so that a long queue
/// cannot hold the first caller's answer back without bound.
const MAX_BATCH: usize = 128;

/// Writes that may wait for the writer before callers wait to queue one.
const QUEUE: usize = 1024;

/// A transaction's body, run inside the batch's transaction and its own savepoint; it gets
/// the reason instead when no transaction could be opened. It answers its caller at once if
/// it failed, or returns how to answer once the batch's commit is known.
type Batched = Box<dyn FnOnce(Result<&Connection, &rusqlite::Error>) -> Option<Answer> + Send>;

/// Answers a caller whose transaction succeeded, with the outcome of the batch's commit.
type Answer = Box<dyn FnOnce(Result<(), &rusqlite::Error>) + Send>;

enum Job {
    Batched(Batched),
    /// Runs with the connection to itself, between batches.
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
}

#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Moves `conn` to a writer thread, which stops when the last `Writer` is dropped.
    pub fn start(conn: Connection) -> Result<Writer, StartError> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("database-writer".into())
            .spawn(move || run(conn, queue))
            .map_err(StartError::WriterThread)?;
        Ok(Writer { jobs })
    }

    /// Runs `f` with the connection to itself, for work that manages its own transactions
    /// (and may fail in ways of its own, `E`).
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Alone(Box::new(move |conn| {
            let _ = reply.send(f(conn));
        })))
        .await?;
        answer.await.map_err(|_| Error::WriteAbandoned)?
    }

    /// Runs `f` in a transaction that is durable when this returns `Ok`, and rolled back
    /// when `f` fails. It begins IMMEDIATE, so what `f` reads still holds when it writes,
    /// also against another process sharing the file.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Batched = Box::new(move |conn| {
            let result = conn.map_err(Error::write_failed).and_then(f);
            match result {
                Ok(value) => Some(Box::new(move |committed: Result<(), &rusqlite::Error>| {
                    let _ = reply.send(committed.map(|()| value).map_err(Error::write_failed));
                })),
                Err(error) => {
                    let _ = reply.send(Err(error));
                    None
                }
            }
        });
        self.send(Job::Batched(job)).await?;
        // A dropped reply means the body panicked; the writer logged it.
        answer.await.map_err(|_| Error::WriteAbandoned)?
    }

    async fn send(&self, job: Job) -> Result<(), Error> {
        self.jobs.send(job).await.map_err(|_| Error::WriteAbandoned)
    }
}

fn run(mut conn: Connection, mut queue: mpsc::Receiver<Job>) {
    let mut next = None;
    loop {
        let Some(job) = next.take().or_else(|| queue.blocking_recv()) else {
            return;
        };
        match job {
            Job::Alone(f) => {
                if catch_unwind(AssertUnwindSafe(|| f(&mut conn))).is_err() {
                    error!("a database write panicked; its transaction was rolled back");
                }
            }
            Job::Batched(first) => next = batch(&conn, first, &mut queue),
        }
    }
}

/// Runs `first` and the transactions queued behind it as one transaction, and returns a
/// job that has to run alone if one was met.
fn batch(conn: &Connection, first: Batched, queue: &mut mpsc::Receiver<Job>) -> Option<Job> {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        first(Err(&e));
        return None;
    }
    let mut answers = Vec::new();
    let mut job = first;
    let mut alone = None;
    loop {
        if let Some(answer) = in_savepoint(conn, job) {
            answers.push(answer);
        }
        // An I/O or disk-full error makes SQLite roll the whole transaction back; whatever
        // ran in it so far is gone, and nothing more may run outside a transaction.
        if conn.is_autocommit() {
            let lost = rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("the transaction was rolled back by the database".into()),
            );
            for answer in answers {
                answer(Err(&lost));
            }
            return alone;
        }
        if answers.len() >= MAX_BATCH {
            break;
        }
        match queue.try_recv() {
            Ok(Job::Batched(next)) => job = next,
            Ok(other) => {
                alone = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    let committed = conn.execute_batch("COMMIT");
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for answer in answers {
        answer(committed.as_ref().map(|_| ()));
    }
    alone
}

/// Runs one transaction's body inside the batch; its changes stay only if it succeeded.
fn in_savepoint(conn: &Connection, job: Batched) -> Option<Answer> {
    if let Err(e) = conn.execute_batch("SAVEPOINT body") {
        // Told of the failure, the body answers its caller and asks for nothing more.
        let _ = job(Err(&e));
        return None;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| job(Ok(conn))));
    let answer = outcome.unwrap_or_else(|_| {
        error!("a database write panicked; its changes were rolled back");
        None
    });
    let ended = match answer {
        Some(_) => conn.execute_batch("RELEASE body"),
        None => conn.execute_batch("ROLLBACK TO body; RELEASE body"),
    };
    match (answer, ended) {
        (answer, Ok(())) => answer,
        (answer, Err(e)) => {
            error!(error = %e, "cannot end a savepoint of a database write");
            if let Some(answer) = answer {
                answer(Err(&e));
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (Writer, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(dir.path().join("w.db")).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .expect("schema");
        (Writer::start(conn).expect("writer"), dir)
    }

    async fn count(writer: &Writer) -> i64 {
        writer
            .write(|conn| {
                Ok::<_, Error>(conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0))?)
            })
            .await
            .expect("count")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn failing_and_panicking_transactions_do_not_touch_their_batch() {
        let (writer, _dir) = writer();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..200_i64 {
            let writer = writer.clone();
            tasks.spawn(async move {
                let result = writer
                    .transaction(move |conn| {
                        conn.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                        match n % 10 {
                            3 => Err(Error::BadRequest("refused".into())),
                            7 => panic!("a bug in a write path"),
                            _ => Ok(n),
                        }
                    })
                    .await;
                (n, result)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let (n, result) = joined.expect("joined");
            match (n % 10, result) {
                (3, Err(Error::BadRequest(_))) | (7, Err(Error::WriteAbandoned)) => {}
                (_, Ok(got)) => assert_eq!(got, n),
                (_, other) => panic!("{n}: {other:?}"),
            }
        }
        assert_eq!(count(&writer).await, 160);
        let stored: Vec<i64> = writer
            .write(|conn| {
                let mut stmt = conn.prepare("SELECT n FROM t WHERE n % 10 IN (3, 7)")?;
                let rows = stmt.query_map([], |row| row.get(0))?;
                Ok::<_, Error>(rows.collect::<Result<_, _>>()?)
            })
            .await
            .expect("query");
        assert!(stored.is_empty(), "{stored:?}");
    }

    #[tokio::test]
    async fn a_batch_that_cannot_commit_fails_all_its_transactions() {
        let (writer, _dir) = writer();
        // A deferred foreign key violation passes each statement and fails only the COMMIT.
        writer
            .write(|conn| {
                conn.execute_batch(
                    "PRAGMA foreign_keys = ON;
                     CREATE TABLE parent (id INTEGER PRIMARY KEY);
                     CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);",
                )?;
                Ok::<_, Error>(())
            })
            .await
            .expect("schema");
        let result = writer
            .transaction(|conn| {
                conn.execute("INSERT INTO t (n) VALUES (1)", [])?;
                conn.execute("INSERT INTO child (p) VALUES (42)", [])?;
                Ok(())
            })
            .await;
        assert!(matches!(result, Err(Error::Write(_))), "{result:?}");
        assert_eq!(count(&writer).await, 0, "rolled back");
        writer
            .transaction(|conn| Ok(conn.execute("INSERT INTO t (n) VALUES (2)", [])?))
            .await
            .expect("the writer goes on");
        assert_eq!(count(&writer).await, 1);
    }
}
