//! Workloads' stdout and stderr as OTLP log records, into otelfwd's queue over its socket
//! (as the manager forwards a workload's own telemetry), so they reach the configured
//! backend like everything else the deployment sends.

use std::path::PathBuf;

use axum::body::Body;
use deployer::local::logs::{LogBatch, LogSink};
use http::{Request, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use protocol::otelfwd::{self, Origin, Signal};

/// OTLP severity numbers of an INFO and an ERROR record.
const INFO: i32 = 9;
const ERROR: i32 = 17;

#[derive(Debug, Clone)]
pub struct Otelfwd {
    pub socket: PathBuf,
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// The batch as one OTLP logs request: the resource is the workload (`service.name` is its
/// id), each line a record with its stream.
pub fn encode(batch: &LogBatch) -> Vec<u8> {
    let records = batch
        .lines
        .iter()
        .map(|line| {
            let stderr = line.stream == deployer::local::logs::Stream::Stderr;
            LogRecord {
                time_unix_nano: line.time_unix_nano,
                observed_time_unix_nano: line.time_unix_nano,
                severity_number: if stderr { ERROR } else { INFO },
                severity_text: if stderr { "ERROR" } else { "INFO" }.to_owned(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(line.text.clone())),
                }),
                attributes: vec![attribute("log.iostream", line.stream.name())],
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", &batch.resource_id),
                    attribute("alien.resource_id", &batch.resource_id),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
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
