//! The workloads' stdout and stderr, as OTLP log records sent to the manager with the
//! deployment's token. A batch the manager has not accepted stays in the output files and
//! is sent again, so nothing is lost while the manager is away.

use deployer::local::logs::{LogBatch, LogSink, encode};

use crate::manager::Manager;

#[derive(Debug, Clone)]
pub struct ManagerLogs {
    pub manager: Manager,
    pub token: String,
}

impl LogSink for ManagerLogs {
    async fn send(&self, batch: LogBatch) -> Result<(), String> {
        self.manager
            .send_logs(&self.token, encode(&batch))
            .await
            .map_err(|e| e.to_string())
    }
}
