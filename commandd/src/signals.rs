//! Wake-ups for long polls: a counter per key (a command's id, or a deployment's target),
//! bumped when something a waiter may want happened. A waiter subscribes before it looks,
//! so a bump between its look and its wait is never lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

#[derive(Debug, Clone, Default)]
pub struct Signals {
    senders: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl Signals {
    pub fn subscribe(&self, key: &str) -> watch::Receiver<u64> {
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        // Keys nobody waits on any more go here, so the map holds only live waits.
        senders.retain(|_, sender| sender.receiver_count() > 0);
        senders
            .entry(key.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub fn bump(&self, key: &str) {
        let senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = senders.get(key) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// The key of a target's leases.
pub fn target_key(deployment_id: &str, target_id: &str) -> String {
    format!("target:{deployment_id}:{target_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bump_after_subscribing_wakes_the_waiter() {
        let signals = Signals::default();
        let mut rx = signals.subscribe("cmd_a");
        signals.bump("cmd_b");
        signals.bump("cmd_a");
        tokio::time::timeout(std::time::Duration::from_secs(1), rx.changed())
            .await
            .expect("woken")
            .expect("open");
        drop(rx);
        let _other = signals.subscribe("cmd_c");
        assert_eq!(signals.senders.lock().expect("lock").len(), 1);
    }
}
