//! The counters `GET /status` reports, kept per signal since otelfwd started.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::queue::QueueStats;
use plumbing::clock;
use protocol::otelfwd::SignalStatus;

#[derive(Debug, Default)]
pub struct Counters {
    pub accepted_records: AtomicU64,
    pub accepted_items: AtomicU64,
    pub sent_records: AtomicU64,
    pub sent_items: AtomicU64,
    pub sent_batches: AtomicU64,
    pub retried: AtomicU64,
    pub dropped_records: AtomicU64,
    pub dropped_items: AtomicU64,
    pub discarded_records: AtomicU64,
    pub discarded_items: AtomicU64,
    pub refused_full: AtomicU64,
    pub corrupt_records: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set_last_error(&self, error: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }

    pub fn status(&self, queue: QueueStats) -> SignalStatus {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let now = u64::try_from(clock::now_ms()).unwrap_or_default();
        SignalStatus {
            queue_records: queue.records,
            queue_items: queue.items,
            queue_bytes: queue.bytes,
            oldest_record_age_secs: queue
                .oldest_enqueued_ms
                .map(|t| now.saturating_sub(t) as f64 / 1000.0),
            accepted_records: get(&self.accepted_records),
            accepted_items: get(&self.accepted_items),
            sent_records: get(&self.sent_records),
            sent_items: get(&self.sent_items),
            sent_batches: get(&self.sent_batches),
            retried: get(&self.retried),
            dropped_records: get(&self.dropped_records),
            dropped_items: get(&self.dropped_items),
            discarded_records: get(&self.discarded_records),
            discarded_items: get(&self.discarded_items),
            refused_full: get(&self.refused_full),
            corrupt_records: get(&self.corrupt_records) + queue.corrupt_at_open,
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}
