//! The pull-mode agent (`alien agent`, docs/architecture.md "The pull agent"): runs on a
//! customer's machine, reaches out to the manager, and runs its deployment there with the
//! deployment engine and the `local` platform that deployd uses for push deployments.
//!
//! The first start asks the manager for the deployment (`POST /v1/initialize` with a
//! deployment-group token) and keeps the id and the deployment's own token in its data
//! directory; from then on it uses only that token. Two loops share the deployment's record:
//! the sync loop reports it to the manager and records what the manager asks for (a release,
//! a retry, a delete); the deployment loop alone moves it, one engine step at a time, and
//! checks the running workloads every heartbeat interval. A third relays commands to the
//! deployment's workers, which the manager cannot reach.

mod commands;
pub mod config;
mod connect;
mod deploy;
mod manager;
mod output;
mod relay;
mod store;
mod sync;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deployer::local::gateway::Gateways;
use deployer::local::logs::Shipper;
use deployer::local::{ComputeParts, Local};
use otelfwd::Pipeline;
use plumbing::config::TelemetryConfig;
use protocol::otelfwd::{Origin, Signal};
use tokio::sync::{Mutex, Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{Config, InitialRelease, Token};
pub use manager::ManagerError;

use crate::manager::Manager;
use crate::store::{Identity, Record, Store};

/// How long each workload has to stop when the agent stops.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The longest pause between two attempts to reach a manager that is away.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Data(String),
    #[error("the manager refused to set this agent up: {0}")]
    Initialize(ManagerError),
    #[error("cannot open the image cache: {0}")]
    Images(#[from] images::Error),
    #[error("cannot find the alien executable: {0}")]
    Program(std::io::Error),
    #[error("cannot serve the relay to the manager on 127.0.0.1: {0}")]
    Relay(std::io::Error),
    #[error("a start-up task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What the loops share.
struct Agent {
    config: Config,
    store: Arc<Store>,
    manager: Manager,
    identity: Identity,
    platform: Arc<Local>,
    record: Mutex<Record>,
    /// The record's revision, for the sync loop to report each new state at once.
    revision: watch::Sender<u64>,
    /// Wakes the deployment loop: the manager asked for something.
    requested: Notify,
    /// The agent's OTLP receiver, where the workloads send their telemetry.
    telemetry_url: Option<String>,
}

impl Agent {
    /// Replaces the record on disk (off the async threads) while `record` is held, so that
    /// writes land in the order they were made.
    async fn save(&self, record: &Record) {
        let snapshot = record.clone();
        let store = self.store.clone();
        let written = tokio::task::spawn_blocking(move || store.save_record(&snapshot)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "cannot keep the deployment's record"),
            Err(error) => warn!(%error, "cannot keep the deployment's record"),
        }
        self.revision.send_if_modified(|revision| {
            let moved = *revision != record.revision;
            *revision = record.revision;
            moved
        });
    }
}

/// Runs the agent until `shutdown`; then stops the workloads (their addresses are served by
/// this process) and returns. A kill leaves them running, and the next start adopts them.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AgentError> {
    config.check()?;
    let store = {
        let dir = config.data_dir.clone();
        tokio::task::spawn_blocking(move || Store::open(&dir)).await??
    };
    let connector = connect::connector(config.ca_file.as_deref())?;
    let relay = relay::start(
        config.base_url(),
        connector.clone(),
        store.relay_port()?,
        shutdown.clone(),
    )
    .await
    .map_err(AgentError::Relay)?;
    store.save_relay_port(relay.port())?;
    let manager = Manager::new(&config, connector, relay);
    let identity = tokio::select! {
        identity = identify(&store, &manager, &config) => identity?,
        () = shutdown.cancelled() => return Ok(()),
    };
    info!(deployment_id = %identity.deployment_id, manager = %manager.base_url(), "agent started");
    let record = store.record()?.unwrap_or_else(Record::new);
    let telemetry = Arc::new(open_telemetry(&store, &manager, &identity).await?);
    let receiver = receive_telemetry(&config, &telemetry, &identity, &shutdown).await;
    let receiving = receiver.as_ref().map(|(_, task)| task.abort_handle());
    let (platform, shipping) = prepare(
        &store,
        &telemetry,
        relay,
        receiver.as_ref().map(|(address, _)| *address),
        &shutdown,
    )
    .await?;
    let agent = Arc::new(Agent {
        revision: watch::Sender::new(record.revision),
        record: Mutex::new(record),
        config,
        store: Arc::new(store),
        manager,
        identity,
        platform: platform.clone(),
        requested: Notify::new(),
        telemetry_url: receiver
            .as_ref()
            .map(|(address, _)| format!("http://{address}")),
    });
    let syncing = tokio::spawn(agent.clone().sync_loop(shutdown.clone()));
    let deploying = tokio::spawn(agent.clone().deployment_loop(shutdown.clone()));
    let relaying = tokio::spawn(agent.clone().commands_loop(shutdown.clone()));
    let _ = syncing.await;
    let _ = deploying.await;
    let _ = relaying.await;
    platform.stop_all(STOP_GRACE).await;
    let _ = shipping.await;
    if let Some(receiving) = receiving {
        receiving.abort();
    }
    telemetry.stop();
    Ok(())
}

/// The durable queues of the workloads' telemetry, forwarded to the manager's `/v1/{signal}`
/// (through the relay) with the deployment's token.
async fn open_telemetry(
    store: &Store,
    manager: &Manager,
    identity: &Identity,
) -> Result<Pipeline, AgentError> {
    let root = store.dir().join("telemetry");
    let base = manager.local_base_url().to_owned();
    let token = identity.token.clone();
    let config = TelemetryConfig {
        // One forwarded batch must fit the manager's body limit (2 MiB by default): batches
        // go uncompressed, as the public manager forwards bodies untouched.
        max_body_bytes: 2 << 20,
        max_decompressed_bytes: 3 << 19,
        batch_max_bytes: 1 << 20,
        queue_max_bytes: 256 << 20,
        retry_max_ms: 30_000,
        ..TelemetryConfig::default()
    };
    let timeout = config.request_timeout();
    tokio::task::spawn_blocking(move || {
        Pipeline::start(&root, &config, |signal| {
            Some(otelfwd::Target::manager(&base, &token, signal, timeout))
        })
    })
    .await?
    .map_err(|e| AgentError::Data(format!("cannot open the telemetry queue: {e}")))
}

/// The OTLP/HTTP receiver for the workloads on `OTLP_HOST:OTLP_PORT`: its address and its
/// task, or none when the address cannot be bound (the workloads then send to the manager
/// directly, as they do in push mode).
async fn receive_telemetry(
    config: &Config,
    telemetry: &Pipeline,
    identity: &Identity,
    shutdown: &CancellationToken,
) -> Option<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = match tokio::net::TcpListener::bind(config.otlp).await {
        Ok(listener) => listener,
        Err(error) => {
            warn!(address = %config.otlp, %error, "cannot receive the workloads' telemetry here; they send it to the manager directly");
            return None;
        }
    };
    let address = listener.local_addr().ok()?;
    let origin = Origin {
        deployment_id: identity.deployment_id.clone(),
        ..Origin::default()
    };
    let router = otelfwd::server::otlp_router(telemetry.ingest_state(), origin);
    let shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            warn!(%error, "the telemetry receiver stopped");
        }
    });
    info!(%address, "receiving the workloads' telemetry");
    Some((address, task))
}

/// The deployment this agent runs: the one on record, or the configured one, or a new one
/// the manager sets up for it (retried while the manager cannot be reached).
async fn identify(
    store: &Store,
    manager: &Manager,
    config: &Config,
) -> Result<Identity, AgentError> {
    if let Some(identity) = store.identity()? {
        if let Some(configured) = &config.deployment_id
            && configured != &identity.deployment_id
        {
            return Err(AgentError::Config(format!(
                "DEPLOYMENT_ID is {configured}, but the data directory {} belongs to {}; \
                 use another data directory for another deployment",
                store.dir().display(),
                identity.deployment_id
            )));
        }
        return Ok(identity);
    }
    let identity = match &config.deployment_id {
        Some(id) => Identity {
            deployment_id: id.clone(),
            token: config.token.expose().to_owned(),
        },
        None => {
            let mut backoff = Duration::from_secs(1);
            loop {
                match manager
                    .initialize(config.token.expose(), &config.name, config.initial_release)
                    .await
                {
                    Ok(initialized) if initialized.deployment_model.as_deref() == Some("push") => {
                        return Err(AgentError::Config(format!(
                            "deployment {} is a push deployment: the manager deploys it \
                             itself; onboard this machine under another name",
                            initialized.deployment_id
                        )));
                    }
                    Ok(initialized) => {
                        break Identity {
                            deployment_id: initialized.deployment_id,
                            token: initialized
                                .token
                                .unwrap_or_else(|| config.token.expose().to_owned()),
                        };
                    }
                    Err(error) if error.is_transient() => {
                        warn!(%error, retry_in = ?backoff, "cannot set this agent up yet");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    Err(error) => return Err(AgentError::Initialize(error)),
                }
            }
        }
    };
    store.save_identity(&identity)?;
    Ok(identity)
}

/// The local platform, rooted in the data directory, with what a previous agent left
/// running adopted; and the shipper of the workloads' output into the logs queue. Images
/// of the manager's registry are pulled through the `relay`.
async fn prepare(
    store: &Store,
    telemetry: &Pipeline,
    relay: SocketAddr,
    receiver: Option<SocketAddr>,
    shutdown: &CancellationToken,
) -> Result<(Arc<Local>, tokio::task::JoinHandle<()>), AgentError> {
    let program = std::env::current_exe().map_err(AgentError::Program)?;
    let images = {
        let dir = store.dir().join("images");
        Arc::new(tokio::task::spawn_blocking(move || images::ImageStore::open(&dir)).await??)
    };
    let shipper = Arc::new(Shipper::default());
    let shipping = tokio::spawn(shipper.clone().run(
        output::QueuedLogs {
            queue: telemetry.queue(Signal::Logs).clone(),
        },
        shutdown.clone(),
    ));
    let platform = Arc::new(Local::new(
        store.dir().join("deployments"),
        ComputeParts {
            images,
            program: program.clone(),
            gateways: Arc::new(Gateways::default()),
            shipper,
            manager: relay,
            telemetry: receiver,
        },
    ));
    platform.recover().await;
    platform.use_launcher(deployer::local::detect_launcher(program).await?);
    Ok((platform, shipping))
}
