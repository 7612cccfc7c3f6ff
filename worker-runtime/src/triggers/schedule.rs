//! The schedule trigger: a 5-field cron expression in UTC, delivered as a `CronEvent` task
//! named by the expression itself at each fire time. The last fire time is kept in
//! `<state_dir>/<hash of the expression>/last-fired` and claimed under a file lock, so a
//! time is fired once even while two versions of the worker run side by side, and a time
//! missed while no version ran is fired once when one starts.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use sha2::{Digest, Sha256};

use super::{Producer, outcome};
use crate::proto::{CronEvent, task};

const TASK_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest sleep before the clock is read again (it may have been set meanwhile).
const RECHECK: Duration = Duration::from_secs(30);

/// Parses a 5-field expression (minute hour day-of-month month day-of-week).
pub(crate) fn parse(expression: &str) -> Result<Cron, String> {
    let fields = expression.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "the cron expression {expression:?} has {fields} fields, not 5"
        ));
    }
    Cron::from_str(expression)
        .map_err(|error| format!("the cron expression {expression:?} is invalid: {error}"))
}

pub(super) async fn run(producer: Producer, expression: String, state_dir: PathBuf) {
    let cron = match parse(&expression) {
        Ok(cron) => cron,
        Err(error) => {
            tracing::error!(error, "the schedule trigger is off");
            return;
        }
    };
    let record = state_dir.join(hex::encode(&Sha256::digest(expression.as_bytes())[..8]));
    let mut next = match first_fire(&cron, &record).await {
        Ok(next) => next,
        Err(error) => {
            tracing::error!(schedule = expression, %error, "the schedule trigger is off");
            return;
        }
    };
    loop {
        let now = Utc::now();
        if next > now {
            let wait = (next - now).to_std().unwrap_or_default().min(RECHECK);
            if !producer.pause(wait).await {
                return;
            }
            continue;
        }
        match claim_blocking(&record, next).await {
            Ok(true) => {
                let payload = task::Payload::CronEvent(CronEvent {
                    schedule_name: expression.clone(),
                    scheduled_time: Some(prost_types::Timestamp {
                        seconds: next.timestamp(),
                        nanos: 0,
                    }),
                });
                let result = producer.deliver(payload, TASK_TIMEOUT).await;
                tracing::debug!(schedule = expression, at = %next, outcome = outcome(&result), "fired");
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(schedule = expression, %error, "cannot record a fire time; skipped");
            }
        }
        match cron.find_next_occurrence(&Utc::now(), false) {
            Ok(after) => next = after,
            Err(error) => {
                tracing::error!(schedule = expression, %error, "no later fire time");
                return;
            }
        }
    }
}

/// The first time to fire: the latest one missed since the last fire on record, or else
/// the next one from now.
async fn first_fire(cron: &Cron, record: &Path) -> Result<DateTime<Utc>, String> {
    let record = record.to_owned();
    let last = tokio::task::spawn_blocking(move || read_last(&record))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let now = Utc::now();
    if let Some(last) = last
        && let Ok(due) = cron.find_next_occurrence(&last, false)
        && due <= now
    {
        return cron
            .find_previous_occurrence(&now, true)
            .map_err(|e| e.to_string());
    }
    cron.find_next_occurrence(&now, false)
        .map_err(|e| e.to_string())
}

async fn claim_blocking(record: &Path, at: DateTime<Utc>) -> std::io::Result<bool> {
    let record = record.to_owned();
    tokio::task::spawn_blocking(move || claim(&record, at))
        .await
        .map_err(std::io::Error::other)?
}

fn read_last(record: &Path) -> std::io::Result<Option<DateTime<Utc>>> {
    match std::fs::read_to_string(record.join("last-fired")) {
        Ok(text) => Ok(DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|at| at.with_timezone(&Utc))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Records `at` as fired unless it (or a later time) already is; true when this call did.
fn claim(record: &Path, at: DateTime<Utc>) -> std::io::Result<bool> {
    std::fs::create_dir_all(record)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(record.join("lock"))?;
    lock.lock()?;
    let fresh = read_last(record)?.is_none_or(|last| last < at);
    if fresh {
        plumbing::durable::replace(&record.join("last-fired"), at.to_rfc3339().as_bytes())?;
    }
    // The lock is released when `lock` is dropped.
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn only_five_field_expressions_are_taken() {
        assert!(parse("*/5 * * * *").is_ok());
        assert!(parse("0 0 * * * *").is_err(), "six fields");
        assert!(parse("* * *").is_err());
        assert!(parse("61 * * * *").is_err());
    }

    #[test]
    fn a_time_is_claimed_once_and_never_before_a_later_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = dir.path().join("h");
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 10, 5, 0)
            .single()
            .expect("time");
        assert!(claim(&record, at).expect("claim"));
        assert!(!claim(&record, at).expect("again"), "claimed twice");
        let earlier = at - chrono::Duration::minutes(1);
        assert!(!claim(&record, earlier).expect("earlier"));
        assert_eq!(read_last(&record).expect("read"), Some(at));
    }
}
