//! deployd: the push deployment loop and the heartbeat loop of the manager, on the
//! deployment engine with the `local` platform. It is a client of the manager's lock
//! protocol over the manager's own socket; it serves only `GET /health` on its socket, for
//! the supervisor. A panic or a hang in a driver stays in this process: the API runs on.

mod loops;
mod manager;
mod output;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use deployer::local::gateway::Gateways;
use deployer::local::logs::Shipper;
use deployer::local::{ComputeParts, Local};
use plumbing::uds::Sidecar;
use plumbing::{Daemon, DaemonContext};
use tracing::info;

use crate::loops::Loops;
use crate::manager::Manager;
use crate::output::Otelfwd;

/// How long each workload has to stop when deployd stops: within the supervisor's budget.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DeploydError {
    #[error(transparent)]
    Serve(#[from] plumbing::uds::UdsError),
    #[error("cannot open the image cache: {0}")]
    Images(#[from] images::Error),
    #[error("cannot find the alien executable: {0}")]
    Program(std::io::Error),
    #[error("a start-up task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Serves its health check at once (the supervisor counts deployd started then), and
/// prepares the platform (the image cache, the OCI runtime's probe, the workloads a previous
/// deployd left) in the meantime; the loops start once it is ready.
pub async fn run(ctx: DaemonContext) -> Result<(), DeploydError> {
    let sidecar = Sidecar::bind(&ctx, Daemon::Deployd)?;
    let serving = {
        let ctx = ctx.clone();
        tokio::spawn(async move { sidecar.serve(&ctx, Router::new()).await })
    };
    let prepared = tokio::select! {
        prepared = prepare(&ctx) => Some(prepared),
        () = ctx.shutdown.cancelled() => None,
    };
    let (platform, shipping) = match prepared {
        Some(Ok(prepared)) => prepared,
        Some(Err(error)) => {
            ctx.shutdown.cancel();
            let _ = serving.await;
            return Err(error);
        }
        None => return Ok(serving.await??),
    };
    let server = &ctx.config.server;
    let loops = Arc::new(Loops {
        manager: Manager::new(ctx.data.socket(Daemon::Manager)),
        platform: platform.clone(),
        shutdown: ctx.shutdown.clone(),
    });
    let mut tasks = Vec::new();
    if server.disable_deployment_loop {
        info!("the deployment loop is disabled");
    } else {
        let interval = Duration::from_secs(server.deployment_interval_secs.max(1));
        tasks.push(tokio::spawn(loops.clone().deployment_loop(interval)));
    }
    if server.disable_heartbeat_loop {
        info!("the heartbeat loop is disabled");
    } else {
        let interval = Duration::from_secs(server.heartbeat_interval_secs.max(1));
        tasks.push(tokio::spawn(loops.clone().heartbeat_loop(interval)));
    }
    let served = serving.await;
    for task in tasks {
        let _ = task.await;
    }
    // Without deployd their stable addresses are gone: stop them in order rather than leave
    // them unreachable. A crash (kill -9) leaves them running, and the next start adopts
    // them.
    platform.stop_all(STOP_GRACE).await;
    let _ = shipping.await;
    Ok(served??)
}

/// The local platform with what a previous deployd left running adopted, and the shipper of
/// the workloads' output.
async fn prepare(
    ctx: &DaemonContext,
) -> Result<(Arc<Local>, tokio::task::JoinHandle<()>), DeploydError> {
    let program = std::env::current_exe().map_err(DeploydError::Program)?;
    let images = {
        let dir = ctx.data.images_dir();
        Arc::new(tokio::task::spawn_blocking(move || images::ImageStore::open(&dir)).await??)
    };
    let shipper = Arc::new(Shipper::default());
    let shipping = tokio::spawn(shipper.clone().run(
        Otelfwd {
            socket: ctx.data.socket(Daemon::Otelfwd),
        },
        ctx.shutdown.clone(),
    ));
    let platform = Arc::new(Local::new(
        ctx.data.state_dir(Daemon::Deployd),
        ComputeParts {
            images,
            program: program.clone(),
            gateways: Arc::new(Gateways::default()),
            shipper,
            manager: std::net::SocketAddr::from((
                std::net::Ipv4Addr::LOCALHOST,
                ctx.config.server.port,
            )),
            telemetry: None,
        },
    ));
    // What runs is served again before the runtime is probed: after a crash the stable
    // addresses come back at once, however long the probe takes.
    platform.recover().await;
    platform.use_launcher(deployer::local::detect_launcher(program).await?);
    Ok((platform, shipping))
}
