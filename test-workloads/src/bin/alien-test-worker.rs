//! A worker as an app built with the Rust SDK behaves: connects to the runtime at
//! `ALIEN_WORKER_GRPC_ADDRESS`, serves HTTP on 127.0.0.1:0 and registers it, registers a
//! command handler for every name, and runs the tasks it is sent. Every HTTP request is
//! answered with its version, except `/env` (its environment), `/exists/<path>` (whether the
//! path exists inside), `/redirect` (a 302 to `/`) and `/tasks` (the trigger tasks it was
//! sent, as JSON, in order).
//! A command answers `{"echo": <params>, "version": V}`; the command `fail` answers an error,
//! and so does a queue message whose payload contains `fail`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use http::{StatusCode, header};
use tokio_stream::StreamExt;
use worker_runtime::proto::control::control_service_client::ControlServiceClient;
use worker_runtime::proto::send_task_result_request::Result as TaskResult;
use worker_runtime::proto::{
    ArcCommand, RegisterEventHandlerRequest, RegisterHttpServerRequest, SendTaskResultRequest,
    TaskError, TaskSuccess, WaitForTasksRequest, task,
};

/// The trigger tasks received so far, as `/tasks` shows them.
type Received = Arc<Mutex<Vec<serde_json::Value>>>;

type Control = ControlServiceClient<tonic::transport::Channel>;

fn fail(what: &str, error: impl std::fmt::Display) -> ! {
    eprintln!("alien-test-worker: {what}: {error}");
    std::process::exit(1)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut stop = test_workloads::Stop::install();
    let args = test_workloads::Args::from_env();
    let address = std::env::var("ALIEN_WORKER_GRPC_ADDRESS")
        .unwrap_or_else(|e| fail("ALIEN_WORKER_GRPC_ADDRESS", e));
    let mut control = ControlServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap_or_else(|e| fail("cannot connect to the runtime", e));

    let listener = test_workloads::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await;
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| fail("no local address", e))
        .port();
    println!(
        "alien-test-worker {} listening on port {port}",
        args.version
    );
    control
        .register_http_server(RegisterHttpServerRequest {
            port: u32::from(port),
        })
        .await
        .unwrap_or_else(|e| fail("RegisterHttpServer", e));
    control
        .register_event_handler(RegisterEventHandlerRequest {
            handler_type: "command".into(),
            resource_name: "*".into(),
        })
        .await
        .unwrap_or_else(|e| fail("RegisterEventHandler", e));
    let tasks = control
        .wait_for_tasks(WaitForTasksRequest {
            application_id: format!("alien-test-worker-{}", std::process::id()),
        })
        .await
        .unwrap_or_else(|e| fail("WaitForTasks", e))
        .into_inner();
    let received = Received::default();
    tokio::spawn(run_tasks(
        control,
        tasks,
        args.version.clone(),
        received.clone(),
    ));

    let version = args.version;
    test_workloads::serve(listener, &mut stop, move |request| {
        if let Some(answer) = test_workloads::exists_answer(request.uri().path()) {
            return answer;
        }
        match request.uri().path() {
            "/env" => test_workloads::env_json(),
            "/tasks" => {
                let tasks = received
                    .lock()
                    .map(|tasks| serde_json::Value::from(tasks.clone()))
                    .unwrap_or_default();
                test_workloads::answer(StatusCode::OK, "application/json", tasks.to_string())
            }
            "/redirect" => {
                let mut answer = test_workloads::answer(StatusCode::FOUND, "text/plain", "moved");
                answer
                    .headers_mut()
                    .insert(header::LOCATION, header::HeaderValue::from_static("/"));
                answer
            }
            _ => test_workloads::answer(StatusCode::OK, "text/plain", version.clone()),
        }
    })
    .await;
}

/// Runs tasks one after the other in the order they come, as the SDKs do.
async fn run_tasks(
    mut control: Control,
    mut tasks: tonic::Streaming<worker_runtime::proto::Task>,
    version: String,
    received: Received,
) {
    while let Some(task) = tasks.next().await {
        let task = match task {
            Ok(task) => task,
            Err(error) => fail("the task stream broke", error),
        };
        let result = match &task.payload {
            Some(task::Payload::ArcCommand(command)) => command_result(command, &version),
            Some(trigger) => {
                let (seen, result) = trigger_result(trigger);
                if let Ok(mut received) = received.lock() {
                    received.push(seen);
                }
                result
            }
            None => TaskResult::Success(TaskSuccess::default()),
        };
        let sent = control
            .send_task_result(SendTaskResultRequest {
                task_id: task.task_id,
                result: Some(result),
            })
            .await;
        if let Err(error) = sent {
            eprintln!("alien-test-worker: SendTaskResult: {error}");
        }
    }
}

fn command_result(command: &ArcCommand, version: &str) -> TaskResult {
    if command.command_name == "fail" {
        return TaskResult::Error(TaskError {
            code: "COMMAND_ERROR".into(),
            message: "the command fail always fails".into(),
        });
    }
    let params = if command.params.is_empty() {
        Ok(serde_json::json!({}))
    } else {
        serde_json::from_slice::<serde_json::Value>(&command.params)
    };
    match params {
        Ok(params) => TaskResult::Success(TaskSuccess {
            response_data: serde_json::json!({"echo": params, "version": version})
                .to_string()
                .into_bytes(),
        }),
        Err(error) => TaskResult::Error(TaskError {
            code: "COMMAND_ERROR".into(),
            message: format!("params are not JSON: {error}"),
        }),
    }
}

/// What `/tasks` shows of a trigger task, and the answer: an error for a queue message whose
/// payload says `fail`, success otherwise.
fn trigger_result(payload: &task::Payload) -> (serde_json::Value, TaskResult) {
    let seconds = |at: &Option<prost_types::Timestamp>| at.as_ref().map(|at| at.seconds);
    let seen = match payload {
        task::Payload::QueueMessage(message) => serde_json::json!({
            "kind": "queue", "id": message.id, "source": message.source,
            "payload": String::from_utf8_lossy(&message.payload),
            "receiptHandle": message.receipt_handle, "attemptCount": message.attempt_count,
            "timestamp": seconds(&message.timestamp),
        }),
        task::Payload::StorageEvent(event) => serde_json::json!({
            "kind": "storage", "bucket": event.bucket, "key": event.key,
            "eventType": event.event_type, "size": event.size,
            "timestamp": seconds(&event.timestamp),
        }),
        task::Payload::CronEvent(event) => serde_json::json!({
            "kind": "cron", "scheduleName": event.schedule_name,
            "scheduledTime": seconds(&event.scheduled_time),
        }),
        task::Payload::ArcCommand(_) => serde_json::Value::Null,
    };
    let fails = matches!(payload, task::Payload::QueueMessage(message)
        if String::from_utf8_lossy(&message.payload).contains("fail"));
    let result = if fails {
        TaskResult::Error(TaskError {
            code: "HANDLER_ERROR".into(),
            message: "the message asked to fail".into(),
        })
    } else {
        TaskResult::Success(TaskSuccess::default())
    };
    (seen, result)
}
