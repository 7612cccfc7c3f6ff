//! Wakes the agent syncs that wait for their deployment to change (docs/architecture.md,
//! The agent sync's long poll).
//!
//! A waiter watches one deployment; every write that changes what a deployment's agent is
//! asked to do (its desired release, its status, its retry request) or removes it calls
//! [`DeploymentChanges::changed`] once its transaction is committed, so that what a woken
//! waiter reads shows the change. Only watched deployments have an entry: a write to one that
//! nobody watches costs a map lookup, and an entry goes with its last waiter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

#[derive(Debug, Clone, Default)]
pub struct DeploymentChanges {
    watched: Arc<Mutex<HashMap<String, watch::Sender<()>>>>,
}

impl DeploymentChanges {
    /// Starts watching deployment `id`: every change told from now on wakes the watch.
    pub fn watch(&self, id: &str) -> Watch {
        let receiver = self
            .lock()
            .entry(id.to_owned())
            .or_insert_with(|| watch::channel(()).0)
            .subscribe();
        Watch {
            id: id.to_owned(),
            changes: self.clone(),
            receiver: Some(receiver),
        }
    }

    /// Wakes whoever watches deployment `id`; call it after the write's commit.
    pub fn changed(&self, id: &str) {
        if let Some(sender) = self.lock().get(id) {
            sender.send_replace(());
        }
    }

    /// [`changed`](Self::changed) for each of `ids`, under one lock.
    pub fn all_changed<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let watched = self.lock();
        for sender in ids.into_iter().filter_map(|id| watched.get(id)) {
            sender.send_replace(());
        }
    }

    /// How many deployments are watched.
    #[cfg(test)]
    fn watched(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<()>>> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One waiter's watch of one deployment. Dropping it (the answer is sent, or the client went
/// away and its request was dropped) ends the watch.
#[derive(Debug)]
pub struct Watch {
    id: String,
    changes: DeploymentChanges,
    /// Always there until the drop, which takes it under the lock.
    receiver: Option<watch::Receiver<()>>,
}

impl Watch {
    /// Resolves once a change was told since the watch began or since the last call.
    pub async fn changed(&mut self) {
        let Some(receiver) = self.receiver.as_mut() else {
            return std::future::pending().await;
        };
        // The sender stays in the map while this receiver lives, so this never fails; if it
        // did, waiting on is right: the caller's deadline still ends the wait.
        if receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watched = self.changes.lock();
        drop(self.receiver.take());
        if watched
            .get(&self.id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            watched.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn woken(watch: &mut Watch) -> bool {
        tokio::time::timeout(Duration::from_millis(50), watch.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_change_wakes_the_watches_of_its_deployment_only() {
        let changes = DeploymentChanges::default();
        let (mut one, mut also_one, mut two) = (
            changes.watch("dep_1"),
            changes.watch("dep_1"),
            changes.watch("dep_2"),
        );
        changes.changed("dep_1");
        assert!(woken(&mut one).await);
        assert!(woken(&mut also_one).await);
        assert!(!woken(&mut two).await, "another deployment");
        assert!(!woken(&mut one).await, "each change wakes once");
        changes.all_changed(["dep_2", "dep_3"]);
        assert!(woken(&mut two).await);
        assert!(!woken(&mut one).await);
    }

    #[tokio::test]
    async fn a_change_before_the_watch_does_not_wake_it() {
        let changes = DeploymentChanges::default();
        let _before = changes.watch("dep_1");
        changes.changed("dep_1");
        let mut after = changes.watch("dep_1");
        assert!(!woken(&mut after).await);
    }

    #[tokio::test]
    async fn the_last_watch_of_a_deployment_takes_its_entry_away() {
        let changes = DeploymentChanges::default();
        let one = changes.watch("dep_1");
        let also_one = changes.watch("dep_1");
        let two = changes.watch("dep_2");
        assert_eq!(changes.watched(), 2);
        drop(one);
        assert_eq!(changes.watched(), 2, "dep_1 is still watched");
        drop(also_one);
        drop(two);
        assert_eq!(changes.watched(), 0);
        changes.changed("dep_1");
        assert_eq!(changes.watched(), 0, "telling nobody adds nothing");
    }

    #[tokio::test]
    async fn a_dropped_wait_ends_its_watch() {
        let changes = DeploymentChanges::default();
        let mut watch = changes.watch("dep_1");
        let waiting = tokio::spawn(async move { watch.changed().await });
        tokio::task::yield_now().await;
        waiting.abort();
        assert!(waiting.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(changes.watched(), 0);
    }
}
