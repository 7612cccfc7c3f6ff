//! The worker runtime: runs one version of one worker app and stands between it and the
//! world (docs/architecture.md, "Worker runtime").
//!
//! [`run`] binds the app's gRPC port and the worker's transport port on 127.0.0.1, starts
//! the app with the protocol's variables, serves it the runtime protocol (registration,
//! tasks, wait-until), proxies the transport port to the port the app registers, runs pushed
//! commands at `/_alien/commands`, and keeps a state file for its caller. It returns `Ok`
//! after a stop asked through `shutdown`, and an error when the app exits by itself.

mod child;
mod commands;
pub mod config;
mod grpc;
mod hub;
pub mod proto;
mod proxy;
mod state;
mod triggers;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use child::app_env;
pub use config::{App, RuntimeConfig};
pub use state::RuntimeState;

use crate::child::AppProcess;
use crate::commands::{Commands, Identity};
use crate::hub::Hub;
use crate::proxy::Proxy;

/// After this long without registration (or without a task subscriber) the runtime says so
/// in its log, and goes on waiting: a late app is still served once it registers.
const REGISTRATION_WARNING: Duration = Duration::from_secs(30);

/// How long the stop waits for the app's wait-until tasks to drain.
const DRAIN_WAIT: Duration = Duration::from_secs(15);

/// How long the triggers have to hand back a message they hold when the runtime stops.
const TRIGGERS_STOP: Duration = Duration::from_secs(6);

/// How long the app has between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Which of the two ports a bind failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Grpc,
    Transport,
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Port::Grpc => "gRPC",
            Port::Transport => "transport",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid runtime config: {reason}")]
    Config { reason: String },
    /// The caller may pick another port and start again.
    #[error("cannot bind the {which} port {port} on 127.0.0.1: {source}")]
    Bind {
        which: Port,
        port: u16,
        source: std::io::Error,
    },
    #[error("cannot start the app: {source}")]
    Spawn { source: std::io::Error },
    #[error("cannot write the state file: {source}")]
    State { source: std::io::Error },
    /// The app exited without being asked to; the caller restarts the runtime.
    #[error("the app exited by itself ({status})")]
    AppExited { status: String },
}

async fn bind(which: Port, port: u16) -> Result<TcpListener, RuntimeError> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|source| RuntimeError::Bind {
            which,
            port,
            source,
        })
}

/// Writes the state file off the async threads.
async fn write_state(path: &std::path::Path, state: RuntimeState) -> Result<(), RuntimeError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || state.write(&path))
        .await
        .map_err(|join| std::io::Error::other(join.to_string()))
        .and_then(|written| written)
        .map_err(|source| RuntimeError::State { source })
}

/// Runs the worker until `shutdown` is cancelled (then stops it in order and returns `Ok`)
/// or until the app exits by itself ([`RuntimeError::AppExited`]).
pub async fn run(config: RuntimeConfig, shutdown: CancellationToken) -> Result<(), RuntimeError> {
    config.check()?;
    let grpc_listener = bind(Port::Grpc, config.grpc_port).await?;
    let transport_listener = bind(Port::Transport, config.transport_port).await?;
    let mut state = RuntimeState {
        pid: std::process::id(),
        child_pid: None,
        grpc_port: config.grpc_port,
        transport_port: config.transport_port,
        ready: false,
    };
    write_state(&config.state_file, state.clone()).await?;

    let hub = Arc::new(Hub::default());
    // Intake (the proxy and pushes) stops first; the gRPC server last, once the app is gone.
    let stopping = CancellationToken::new();
    let grpc_stop = CancellationToken::new();
    let grpc = tokio::spawn(grpc::serve(grpc_listener, hub.clone(), grpc_stop.clone()));
    let commands = Arc::new(Commands::new(
        hub.clone(),
        Identity {
            token: config.commands_token.clone(),
            deployment_id: config.deployment_id.clone(),
            worker_id: config.worker_id.clone(),
            timeout: Duration::from_secs(config.timeout_seconds),
        },
        stopping.clone(),
    ));
    let proxy = Arc::new(Proxy::new(
        hub.clone(),
        commands.clone(),
        stopping.clone(),
        config.plain_port,
    ));
    let proxy = tokio::spawn(proxy.serve(transport_listener));
    let triggers = triggers::start(&config.triggers, hub.clone(), stopping.clone());

    let mut app = match &config.app {
        App::External => None,
        _ => match AppProcess::spawn(&config).await {
            Ok(app) => Some(app),
            Err(error) => {
                stopping.cancel();
                grpc_stop.cancel();
                return Err(error);
            }
        },
    };
    if let Some(app) = &app {
        tracing::info!(
            worker_id = config.worker_id,
            pid = app.pid(),
            grpc_port = config.grpc_port,
            transport_port = config.transport_port,
            "the app started"
        );
        state.child_pid = Some(app.pid());
        write_state(&config.state_file, state.clone()).await?;
    }

    let readiness = {
        let hub = hub.clone();
        let path = config.state_file.clone();
        let mut state = state.clone();
        let plain_port = config.plain_port;
        tokio::spawn(async move {
            let registered = async {
                wait_logging(hub.registered(), "RegisterHttpServer").await;
                wait_logging(hub.subscribed(), "WaitForTasks").await;
            };
            // A plain image is ready once it listens; an SDK app once it registered and
            // subscribed, whichever comes first.
            tokio::select! {
                () = registered => {}
                () = listening(plain_port) => {}
            }
            state.ready = true;
            if let Err(error) = write_state(&path, state).await {
                tracing::error!(%error, "cannot record that the app is ready");
            }
            tracing::info!("the app is ready");
        })
    };

    let outcome = tokio::select! {
        () = shutdown.cancelled() => None,
        status = exited(&mut app) => Some(status),
    };
    readiness.abort();
    stopping.cancel();
    let result = match outcome {
        Some(status) => {
            let status = match status {
                Ok(status) => status.to_string(),
                Err(error) => error.to_string(),
            };
            tracing::error!(status, "the app exited by itself");
            Err(RuntimeError::AppExited { status })
        }
        None => {
            tracing::info!("stopping: intake closed, finishing accepted commands");
            let _ = proxy.await;
            // Triggers hand back what they hold; a stuck store must not hold the stop.
            let _ = tokio::time::timeout(TRIGGERS_STOP, triggers.wait()).await;
            commands.finish_accepted().await;
            hub.drain();
            let drained = async {
                while hub.total_task_count() > 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            if tokio::time::timeout(DRAIN_WAIT, drained).await.is_err() {
                tracing::info!("wait-until tasks still counted after the drain wait");
            }
            if let Some(app) = app {
                app.stop(STOP_GRACE).await;
            }
            Ok(())
        }
    };
    grpc_stop.cancel();
    // Streams to an app that is gone end with its connections; do not wait on a stuck one.
    let _ = tokio::time::timeout(Duration::from_secs(1), grpc).await;
    result
}

/// Resolves once something accepts connections on `port` (polled); never without a port.
async fn listening(port: Option<u16>) {
    let Some(port) = port else {
        return std::future::pending().await;
    };
    while tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resolves when the app the runtime started exits; never for an app the caller runs.
async fn exited(app: &mut Option<AppProcess>) -> std::io::Result<std::process::ExitStatus> {
    match app {
        Some(app) => app.exited().await,
        None => std::future::pending().await,
    }
}

async fn wait_logging(event: impl std::future::Future<Output = ()>, what: &str) {
    tokio::pin!(event);
    if tokio::time::timeout(REGISTRATION_WARNING, &mut event)
        .await
        .is_err()
    {
        tracing::warn!(
            waited_seconds = REGISTRATION_WARNING.as_secs(),
            "the app has not called {what} yet; still waiting"
        );
        event.await;
    }
}
