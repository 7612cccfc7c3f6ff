//! What the gRPC services, the proxy and the command path share: the app's registration,
//! the task broadcast with its result waiters, and the wait-until counters and drain.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{broadcast, oneshot, watch};

use crate::proto::send_task_result_request::Result as TaskResult;
use crate::proto::{Task, WaitForDrainSignalResponse};

/// Tasks a subscriber may fall behind by before it skips some, as the public runtime allows.
const TASK_BUFFER: usize = 1024;

/// How long an app is told it has to drain.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a task got no result from the app; the text is what the submitted error says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskFailure {
    #[error("Failed to send task: channel closed")]
    NoSubscriber,
    #[error("Task result timeout")]
    Timeout,
    #[error("No result in response")]
    NoResult,
}

#[derive(Debug)]
pub struct Hub {
    app_port: watch::Sender<Option<u16>>,
    subscribed: watch::Sender<bool>,
    tasks: broadcast::Sender<Task>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Option<TaskResult>>>>,
    task_counts: Mutex<HashMap<String, u32>>,
    parked_drains: Mutex<HashMap<String, oneshot::Sender<&'static str>>>,
    draining: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            app_port: watch::Sender::new(None),
            subscribed: watch::Sender::new(false),
            tasks: broadcast::Sender::new(TASK_BUFFER),
            waiters: Mutex::default(),
            task_counts: Mutex::default(),
            parked_drains: Mutex::default(),
            draining: watch::Sender::new(false),
        }
    }
}

/// A poisoned lock only means another request panicked; the maps stay usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    /// The app's HTTP port, as last registered.
    pub fn app_port(&self) -> Option<u16> {
        *self.app_port.borrow()
    }

    pub fn register_port(&self, port: u16) {
        self.app_port.send_replace(Some(port));
    }

    /// Resolves once the app has registered its HTTP server.
    pub async fn registered(&self) {
        let mut port = self.app_port.subscribe();
        // The sender lives in `self`, so the wait ends only when a port is there.
        let _ = port.wait_for(Option::is_some).await;
    }

    /// Resolves once a first `WaitForTasks` subscriber came.
    pub async fn subscribed(&self) {
        let mut subscribed = self.subscribed.subscribe();
        let _ = subscribed.wait_for(|yes| *yes).await;
    }

    /// A new `WaitForTasks` subscriber.
    pub fn subscribe(&self) -> broadcast::Receiver<Task> {
        let receiver = self.tasks.subscribe();
        self.subscribed.send_replace(true);
        receiver
    }

    /// Delivers `task` to every subscriber and waits up to `budget` for the first result.
    pub async fn run_task(&self, task: Task, budget: Duration) -> Result<TaskResult, TaskFailure> {
        let id = task.task_id.clone();
        let (sender, receiver) = oneshot::channel();
        lock(&self.waiters).insert(id.clone(), sender);
        if self.tasks.send(task).is_err() {
            lock(&self.waiters).remove(&id);
            return Err(TaskFailure::NoSubscriber);
        }
        let outcome = tokio::time::timeout(budget, receiver).await;
        lock(&self.waiters).remove(&id);
        match outcome {
            Ok(Ok(Some(result))) => Ok(result),
            Ok(Ok(None)) => Err(TaskFailure::NoResult),
            // The waiter is only dropped by a later task with the same id replacing it.
            Ok(Err(_)) | Err(_) => Err(TaskFailure::Timeout),
        }
    }

    /// A result from the app; one for an unknown or finished task is dropped.
    pub fn task_result(&self, task_id: &str, result: Option<TaskResult>) {
        if let Some(waiter) = lock(&self.waiters).remove(task_id) {
            let _ = waiter.send(result);
        }
    }

    pub fn task_registered(&self, application_id: &str) {
        *lock(&self.task_counts)
            .entry(application_id.to_owned())
            .or_default() += 1;
    }

    pub fn tasks_drained(&self, application_id: &str, drained: u32) {
        if let Some(count) = lock(&self.task_counts).get_mut(application_id) {
            *count = count.saturating_sub(drained);
        }
    }

    pub fn task_count(&self, application_id: &str) -> u32 {
        lock(&self.task_counts)
            .get(application_id)
            .copied()
            .unwrap_or(0)
    }

    /// The sum over all apps, which the stop waits to reach zero.
    pub fn total_task_count(&self) -> u64 {
        lock(&self.task_counts)
            .values()
            .map(|&n| u64::from(n))
            .sum()
    }

    /// Parks until the drain (or until a later call for the same app replaces this one).
    pub async fn wait_for_drain(&self, application_id: &str) -> WaitForDrainSignalResponse {
        let (sender, receiver) = oneshot::channel();
        let replaced = lock(&self.parked_drains).insert(application_id.to_owned(), sender);
        if let Some(replaced) = replaced {
            let _ = replaced.send("runtime_shutdown");
        }
        let mut draining = self.draining.subscribe();
        let reason = tokio::select! {
            reason = receiver => reason.unwrap_or("shutdown"),
            _ = draining.wait_for(|yes| *yes) => "shutdown",
        };
        WaitForDrainSignalResponse {
            should_drain: true,
            drain_timeout: Some(prost_types::Duration {
                seconds: DRAIN_TIMEOUT.as_secs() as i64,
                nanos: 0,
            }),
            drain_reason: reason.to_owned(),
        }
    }

    /// Tells every parked and every later `WaitForDrainSignal` to drain.
    pub fn drain(&self) {
        self.draining.send_replace(true);
        for (_, parked) in lock(&self.parked_drains).drain() {
            let _ = parked.send("shutdown");
        }
    }
}
