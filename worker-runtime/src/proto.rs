//! The messages of the worker runtime protocol, written as prost structs with the field
//! numbers and types the public SDKs use, and the generated services: `control` (registration,
//! tasks, results) and `wait_until` (background work and drain).

use std::collections::HashMap;

use prost_types::{Duration, Timestamp};

pub mod control {
    include!(concat!(
        env!("OUT_DIR"),
        "/alien_worker.control.ControlService.rs"
    ));
}

pub mod wait_until {
    include!(concat!(
        env!("OUT_DIR"),
        "/alien_worker.wait_until.WaitUntilService.rs"
    ));
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterHttpServerRequest {
    #[prost(uint32, tag = "1")]
    pub port: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterHttpServerResponse {
    #[prost(bool, tag = "1")]
    pub success: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterEventHandlerRequest {
    #[prost(string, tag = "1")]
    pub handler_type: String,
    #[prost(string, tag = "2")]
    pub resource_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterEventHandlerResponse {
    #[prost(bool, tag = "1")]
    pub success: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WaitForTasksRequest {
    #[prost(string, tag = "1")]
    pub application_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Task {
    #[prost(string, tag = "1")]
    pub task_id: String,
    #[prost(oneof = "task::Payload", tags = "2, 3, 4, 5")]
    pub payload: Option<task::Payload>,
}

pub mod task {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Payload {
        #[prost(message, tag = "2")]
        StorageEvent(super::StorageEvent),
        #[prost(message, tag = "3")]
        CronEvent(super::CronEvent),
        #[prost(message, tag = "4")]
        QueueMessage(super::QueueMessage),
        #[prost(message, tag = "5")]
        ArcCommand(super::ArcCommand),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StorageEvent {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub event_type: String,
    #[prost(string, tag = "3")]
    pub bucket: String,
    #[prost(uint64, tag = "4")]
    pub size: u64,
    #[prost(string, tag = "5")]
    pub content_type: String,
    #[prost(message, optional, tag = "6")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "7")]
    pub etag: String,
    #[prost(string, tag = "8")]
    pub region: String,
    #[prost(string, tag = "9")]
    pub version_id: String,
    #[prost(string, tag = "10")]
    pub current_tier: String,
    #[prost(map = "string, string", tag = "11")]
    pub metadata: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CronEvent {
    #[prost(string, tag = "1")]
    pub schedule_name: String,
    #[prost(message, optional, tag = "2")]
    pub scheduled_time: Option<Timestamp>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct QueueMessage {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
    #[prost(string, tag = "3")]
    pub receipt_handle: String,
    #[prost(string, tag = "4")]
    pub source: String,
    #[prost(uint32, tag = "5")]
    pub attempt_count: u32,
    #[prost(message, optional, tag = "6")]
    pub timestamp: Option<Timestamp>,
    #[prost(map = "string, string", tag = "7")]
    pub attributes: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ArcCommand {
    #[prost(string, tag = "1")]
    pub command_id: String,
    #[prost(string, tag = "2")]
    pub command_name: String,
    #[prost(bytes = "vec", tag = "3")]
    pub params: Vec<u8>,
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
    #[prost(message, optional, tag = "5")]
    pub deadline: Option<Timestamp>,
    #[prost(string, tag = "6")]
    pub response_url: String,
    #[prost(string, tag = "7")]
    pub storage_upload_url: String,
    #[prost(uint64, tag = "8")]
    pub max_inline_bytes: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SendTaskResultRequest {
    #[prost(string, tag = "1")]
    pub task_id: String,
    #[prost(oneof = "send_task_result_request::Result", tags = "2, 3")]
    pub result: Option<send_task_result_request::Result>,
}

pub mod send_task_result_request {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Result {
        #[prost(message, tag = "2")]
        Success(super::TaskSuccess),
        #[prost(message, tag = "3")]
        Error(super::TaskError),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskSuccess {
    #[prost(bytes = "vec", tag = "1")]
    pub response_data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskError {
    #[prost(string, tag = "1")]
    pub code: String,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SendTaskResultResponse {
    #[prost(bool, tag = "1")]
    pub acknowledged: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NotifyTaskRegisteredRequest {
    #[prost(string, tag = "1")]
    pub application_id: String,
    #[prost(string, optional, tag = "2")]
    pub task_description: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NotifyTaskRegisteredResponse {
    #[prost(bool, tag = "1")]
    pub success: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WaitForDrainSignalRequest {
    #[prost(string, tag = "1")]
    pub application_id: String,
    #[prost(message, optional, tag = "2")]
    pub timeout: Option<Duration>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WaitForDrainSignalResponse {
    #[prost(bool, tag = "1")]
    pub should_drain: bool,
    #[prost(message, optional, tag = "2")]
    pub drain_timeout: Option<Duration>,
    #[prost(string, tag = "3")]
    pub drain_reason: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NotifyDrainCompleteRequest {
    #[prost(string, tag = "1")]
    pub application_id: String,
    #[prost(uint32, tag = "2")]
    pub tasks_drained: u32,
    #[prost(bool, tag = "3")]
    pub success: bool,
    #[prost(string, optional, tag = "4")]
    pub error_message: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NotifyDrainCompleteResponse {
    #[prost(bool, tag = "1")]
    pub acknowledged: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetTaskCountRequest {
    #[prost(string, tag = "1")]
    pub application_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetTaskCountResponse {
    #[prost(uint32, tag = "1")]
    pub task_count: u32,
}
