//! The gRPC side of the protocol: `ControlService` and `WaitUntilService` under the current
//! `alien_worker.*` names and the legacy `alien_bindings.*` ones, all on one h2c listener.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio_stream::wrappers::{BroadcastStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::hub::Hub;
use crate::proto::control::control_service_server::{ControlService, ControlServiceServer};
use crate::proto::wait_until::wait_until_service_server::{
    WaitUntilService, WaitUntilServiceServer,
};
use crate::proto::*;

/// Messages up to this size are decoded: the TS SDK's own cap, far above any command's
/// inline limit.
const MAX_MESSAGE_BYTES: usize = 128 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Control(Arc<Hub>);

#[tonic::async_trait]
impl ControlService for Control {
    async fn register_http_server(
        &self,
        request: Request<RegisterHttpServerRequest>,
    ) -> Result<Response<RegisterHttpServerResponse>, Status> {
        let port = request.into_inner().port;
        let Ok(port) = u16::try_from(port) else {
            return Err(Status::invalid_argument(format!(
                "port {port} is not a TCP port"
            )));
        };
        tracing::info!(port, "the app registered its HTTP server");
        self.0.register_port(port);
        Ok(Response::new(RegisterHttpServerResponse { success: true }))
    }

    async fn register_event_handler(
        &self,
        request: Request<RegisterEventHandlerRequest>,
    ) -> Result<Response<RegisterEventHandlerResponse>, Status> {
        let handler = request.into_inner();
        tracing::info!(
            handler_type = handler.handler_type,
            resource_name = handler.resource_name,
            "the app registered an event handler"
        );
        Ok(Response::new(RegisterEventHandlerResponse {
            success: true,
        }))
    }

    type WaitForTasksStream = futures_util::stream::BoxStream<'static, Result<Task, Status>>;

    async fn wait_for_tasks(
        &self,
        request: Request<WaitForTasksRequest>,
    ) -> Result<Response<Self::WaitForTasksStream>, Status> {
        tracing::debug!(
            application_id = request.get_ref().application_id,
            "the app waits for tasks"
        );
        // A subscriber that falls more than the buffer behind skips what it missed.
        let stream = BroadcastStream::new(self.0.subscribe())
            .filter_map(|task| async move { task.ok().map(Ok) })
            .boxed();
        Ok(Response::new(stream))
    }

    async fn send_task_result(
        &self,
        request: Request<SendTaskResultRequest>,
    ) -> Result<Response<SendTaskResultResponse>, Status> {
        let result = request.into_inner();
        self.0.task_result(&result.task_id, result.result);
        Ok(Response::new(SendTaskResultResponse { acknowledged: true }))
    }
}

#[derive(Debug, Clone)]
struct WaitUntil(Arc<Hub>);

#[tonic::async_trait]
impl WaitUntilService for WaitUntil {
    async fn notify_task_registered(
        &self,
        request: Request<NotifyTaskRegisteredRequest>,
    ) -> Result<Response<NotifyTaskRegisteredResponse>, Status> {
        self.0.task_registered(&request.into_inner().application_id);
        Ok(Response::new(NotifyTaskRegisteredResponse {
            success: true,
        }))
    }

    async fn wait_for_drain_signal(
        &self,
        request: Request<WaitForDrainSignalRequest>,
    ) -> Result<Response<WaitForDrainSignalResponse>, Status> {
        let application_id = request.into_inner().application_id;
        Ok(Response::new(self.0.wait_for_drain(&application_id).await))
    }

    async fn notify_drain_complete(
        &self,
        request: Request<NotifyDrainCompleteRequest>,
    ) -> Result<Response<NotifyDrainCompleteResponse>, Status> {
        let done = request.into_inner();
        self.0
            .tasks_drained(&done.application_id, done.tasks_drained);
        Ok(Response::new(NotifyDrainCompleteResponse {
            acknowledged: true,
        }))
    }

    async fn get_task_count(
        &self,
        request: Request<GetTaskCountRequest>,
    ) -> Result<Response<GetTaskCountResponse>, Status> {
        let task_count = self.0.task_count(&request.into_inner().application_id);
        Ok(Response::new(GetTaskCountResponse { task_count }))
    }
}

/// A generated service that also answers under its pre-rename name.
trait Renamed {
    const CURRENT: &'static str;
    const LEGACY: &'static str;
}

impl<T: ControlService> Renamed for ControlServiceServer<T> {
    const CURRENT: &'static str = "alien_worker.control.ControlService";
    const LEGACY: &'static str = "alien_bindings.control.ControlService";
}

impl<T: WaitUntilService> Renamed for WaitUntilServiceServer<T> {
    const CURRENT: &'static str = "alien_worker.wait_until.WaitUntilService";
    const LEGACY: &'static str = "alien_bindings.wait_until.WaitUntilService";
}

/// Serves `S` under its legacy name by rewriting the path to the current one: SDKs released
/// before the rename call `/alien_bindings.…/<Method>` with identical messages.
#[derive(Debug, Clone)]
struct Legacy<S>(S);

impl<S: Renamed> NamedService for Legacy<S> {
    const NAME: &'static str = S::LEGACY;
}

impl<S, B> tower_service::Service<http::Request<B>> for Legacy<S>
where
    S: Renamed + tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let legacy_prefix = format!("/{}/", S::LEGACY);
        if let Some(method) = request.uri().path().strip_prefix(&legacy_prefix) {
            let path = format!("/{}/{method}", S::CURRENT);
            if let Ok(uri) = http::Uri::builder().path_and_query(path).build() {
                *request.uri_mut() = uri;
            }
        }
        self.0.call(request)
    }
}

/// Serves both services (and their legacy names) on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let control = ControlServiceServer::new(Control(hub.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let wait_until =
        WaitUntilServiceServer::new(WaitUntil(hub)).max_decoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .add_service(control.clone())
        .add_service(wait_until.clone())
        .add_service(Legacy(control))
        .add_service(Legacy(wait_until))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned())
        .await
}
