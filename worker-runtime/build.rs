//! Generates the gRPC server and client of the worker runtime protocol from Rust descriptions
//! of its two services (the messages are hand-written prost structs in `src/proto.rs`), so the
//! build needs no protoc.

use tonic_build::manual::{Builder, Method, Service};

const CODEC: &str = "tonic_prost::ProstCodec";

fn method(name: &str, route: &str, input: &str, output: &str, streaming: bool) -> Method {
    let builder = Method::builder()
        .name(name)
        .route_name(route)
        .input_type(format!("crate::proto::{input}"))
        .output_type(format!("crate::proto::{output}"))
        .codec_path(CODEC);
    if streaming {
        builder.server_streaming().build()
    } else {
        builder.build()
    }
}

fn main() {
    let control = Service::builder()
        .name("ControlService")
        .package("alien_worker.control")
        .method(method(
            "register_http_server",
            "RegisterHttpServer",
            "RegisterHttpServerRequest",
            "RegisterHttpServerResponse",
            false,
        ))
        .method(method(
            "register_event_handler",
            "RegisterEventHandler",
            "RegisterEventHandlerRequest",
            "RegisterEventHandlerResponse",
            false,
        ))
        .method(method(
            "wait_for_tasks",
            "WaitForTasks",
            "WaitForTasksRequest",
            "Task",
            true,
        ))
        .method(method(
            "send_task_result",
            "SendTaskResult",
            "SendTaskResultRequest",
            "SendTaskResultResponse",
            false,
        ))
        .build();
    let wait_until = Service::builder()
        .name("WaitUntilService")
        .package("alien_worker.wait_until")
        .method(method(
            "notify_task_registered",
            "NotifyTaskRegistered",
            "NotifyTaskRegisteredRequest",
            "NotifyTaskRegisteredResponse",
            false,
        ))
        .method(method(
            "wait_for_drain_signal",
            "WaitForDrainSignal",
            "WaitForDrainSignalRequest",
            "WaitForDrainSignalResponse",
            false,
        ))
        .method(method(
            "notify_drain_complete",
            "NotifyDrainComplete",
            "NotifyDrainCompleteRequest",
            "NotifyDrainCompleteResponse",
            false,
        ))
        .method(method(
            "get_task_count",
            "GetTaskCount",
            "GetTaskCountRequest",
            "GetTaskCountResponse",
            false,
        ))
        .build();
    Builder::new().compile(&[control, wait_until]);
}
