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
use deployer::local::Local;
use plumbing::{Daemon, DaemonContext};
use tracing::info;

use crate::loops::Loops;
use crate::manager::Manager;

#[derive(Debug, thiserror::Error)]
pub enum DeploydError {
    #[error(transparent)]
    Serve(#[from] plumbing::uds::UdsError),
}

pub async fn run(ctx: DaemonContext) -> Result<(), DeploydError> {
    let server = &ctx.config.server;
    let platform = Arc::new(Local::new(ctx.data.state_dir(Daemon::Deployd)));
    let loops = Arc::new(Loops {
        manager: Manager::new(ctx.data.socket(Daemon::Manager)),
        platform,
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
    let served = plumbing::uds::serve_sidecar(&ctx, Daemon::Deployd, Router::new()).await;
    for task in tasks {
        let _ = task.await;
    }
    Ok(served?)
}
