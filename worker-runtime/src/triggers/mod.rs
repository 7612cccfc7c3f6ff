//! The worker's triggers: producers that turn queue messages, storage events and cron times
//! into tasks on the app's task stream, as the public local platform delivers them. Each runs
//! once the app subscribes to tasks, and stops when the runtime's intake closes, so that a
//! version being replaced takes no new work.

mod queue;
pub(crate) mod schedule;
mod storage;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::TriggerSource;
use crate::hub::{Hub, TaskFailure};
use crate::proto::send_task_result_request::Result as TaskResult;
use crate::proto::{Task, task};

/// Starts one producer per trigger; they end when `stop` is cancelled.
pub fn start(sources: &[TriggerSource], hub: Arc<Hub>, stop: CancellationToken) -> TaskTracker {
    let tracker = TaskTracker::new();
    for source in sources.iter().cloned() {
        let hub = hub.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = hub.subscribed() => {}
                () = stop.cancelled() => return,
            }
            let producer = Producer { hub, stop };
            match source {
                TriggerSource::Queue { queue, dir } => queue::run(producer, queue, dir).await,
                TriggerSource::Storage {
                    storage,
                    dir,
                    events,
                } => storage::run(producer, storage, dir, events).await,
                TriggerSource::Schedule { cron, state_dir } => {
                    schedule::run(producer, cron, state_dir).await
                }
            }
        });
    }
    tracker.close();
    tracker
}

/// What every producer has: the app's task stream and the runtime's stop.
struct Producer {
    hub: Arc<Hub>,
    stop: CancellationToken,
}

impl Producer {
    /// Sends one task under a fresh id and waits up to `timeout` for the app's result.
    async fn deliver(
        &self,
        payload: task::Payload,
        timeout: Duration,
    ) -> Result<TaskResult, TaskFailure> {
        let task = Task {
            task_id: uuid::Uuid::new_v4().to_string(),
            payload: Some(payload),
        };
        self.hub.run_task(task, timeout).await
    }

    /// Sleeps `duration`; false when the runtime stops meanwhile.
    async fn pause(&self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.stop.cancelled() => false,
        }
    }
}

fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(at)
}

/// A result the app reported, as the log says it.
fn outcome(result: &Result<TaskResult, TaskFailure>) -> String {
    match result {
        Ok(TaskResult::Success(_)) => "success".into(),
        Ok(TaskResult::Error(error)) => format!("error {}: {}", error.code, error.message),
        Err(failure) => failure.to_string(),
    }
}
