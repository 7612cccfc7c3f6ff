//! The workloads' stdout and stderr, as OTLP log records, into the agent's durable logs
//! queue, which forwards them to the manager with everything else the workloads send.

use std::sync::Arc;

use deployer::local::logs::{LogBatch, LogSink, encode};
use otelfwd::queue::Queue;

#[derive(Debug, Clone)]
pub struct QueuedLogs {
    pub queue: Arc<Queue>,
}

impl LogSink for QueuedLogs {
    async fn send(&self, batch: LogBatch) -> Result<(), String> {
        let items = u32::try_from(batch.lines.len()).unwrap_or(u32::MAX);
        self.queue
            .push(encode(&batch), items)
            .await
            .map_err(|e| e.to_string())
    }
}
