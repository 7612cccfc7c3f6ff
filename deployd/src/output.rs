//! Workloads' stdout and stderr, as OTLP log records, into otelfwd's queue over its socket
//! (as the manager forwards a workload's own telemetry), so they reach the configured
//! backend like everything else the deployment sends.

use std::path::PathBuf;

use axum::body::Body;
use deployer::local::logs::{LogBatch, LogSink, encode};
use http::{Request, StatusCode};
use protocol::otelfwd::{self, Origin, Signal};

#[derive(Debug, Clone)]
pub struct Otelfwd {
    pub socket: PathBuf,
}

impl LogSink for Otelfwd {
    async fn send(&self, batch: LogBatch) -> Result<(), String> {
        let origin = Origin {
            deployment_id: batch.deployment_id.clone(),
            ..Origin::default()
        };
        let query = serde_urlencoded::to_string(&origin).map_err(|e| e.to_string())?;
        let request = Request::post(format!("{}?{query}", otelfwd::ingest_path(Signal::Logs)))
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Body::from(encode(&batch)))
            .map_err(|e| e.to_string())?;
        let response = plumbing::uds::send(&self.socket, request)
            .await
            .map_err(|e| e.to_string())?;
        match response.status() {
            StatusCode::OK => Ok(()),
            status => Err(format!("otelfwd answered {status}")),
        }
    }
}
