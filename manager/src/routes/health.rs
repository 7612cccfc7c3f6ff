//! `GET /health` (no auth): healthy only when every sidecar answers its own `/health`, since
//! the manager cannot serve the API without them; degraded (still 200) while a volume it
//! writes to is full, naming the volume.
//!
//! A full volume is not a reason for a load balancer or an orchestrator to take the manager
//! away or restart it: reads go on, a restart frees nothing, and writes work again by
//! themselves once space is freed. The body says what is wrong.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use plumbing::Daemon;
use plumbing::disk::FullVolume;
use serde::Serialize;
use tokio::task::JoinSet;
use tracing::debug;

use crate::state::AppState;

const READY: &str = "ready";

#[derive(Debug, Serialize)]
pub struct Health {
    status: &'static str,
    /// Only when unhealthy: which daemon is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    daemons: Option<BTreeMap<&'static str, String>>,
    /// Only when one is full: the volumes with no room for writes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<FullVolume>,
}

pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let mut probes = JoinSet::new();
    for client in state.daemons.all() {
        let client = client.clone();
        probes.spawn(async move {
            let answer = client.probe().await;
            if let Err(reason) = &answer {
                debug!(daemon = %client.daemon(), %reason, "health probe failed");
            }
            (client.daemon(), answer)
        });
    }
    let volumes = state.volumes.full().await;
    // A probe task that died leaves its daemon's entry at this.
    let mut daemons: BTreeMap<&'static str, String> = Daemon::SIDECARS
        .into_iter()
        .map(|daemon| (daemon.name(), "unavailable: probe failed".to_owned()))
        .collect();
    while let Some(joined) = probes.join_next().await {
        if let Ok((daemon, answer)) = joined {
            let status = match answer {
                Ok(()) => READY.to_owned(),
                Err(reason) => format!("unavailable: {reason}"),
            };
            daemons.insert(daemon.name(), status);
        }
    }
    if daemons.values().all(|status| status == READY) {
        let status = if volumes.is_empty() {
            "healthy"
        } else {
            "degraded"
        };
        return (
            StatusCode::OK,
            Json(Health {
                status,
                daemons: None,
                volumes,
            }),
        );
    }
    daemons.insert(Daemon::Manager.name(), READY.to_owned());
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(Health {
            status: "unhealthy",
            daemons: Some(daemons),
            volumes,
        }),
    )
}
