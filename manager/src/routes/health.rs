//! `GET /health` (spec §3.1, no auth): healthy only when every sidecar answers its own
//! `/health`, since the manager cannot serve the API without them.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use plumbing::Daemon;
use plumbing::uds::{self, UdsError};
use serde::Serialize;
use tokio::task::JoinSet;
use tracing::debug;

use crate::server::AppState;

/// Short enough for a load balancer's health check to get an answer in time.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

const READY: &str = "ready";

#[derive(Debug, Serialize)]
pub struct Health {
    status: &'static str,
    /// Only when unhealthy: which daemon is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    daemons: Option<BTreeMap<&'static str, String>>,
}

pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let mut probes = JoinSet::new();
    for daemon in Daemon::SIDECARS {
        let socket = state.data.socket(daemon);
        probes.spawn(async move {
            let answer = match uds::get(&socket, "/health", PROBE_TIMEOUT).await {
                Ok((StatusCode::OK, _)) => Ok(()),
                Ok((status, _)) => Err(format!("HTTP {}", status.as_u16())),
                Err(error) => {
                    debug!(%daemon, %error, "health probe failed");
                    Err(reason(&error))
                }
            };
            (daemon, answer)
        });
    }
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
        return (
            StatusCode::OK,
            Json(Health {
                status: "healthy",
                daemons: None,
            }),
        );
    }
    daemons.insert(Daemon::Manager.name(), READY.to_owned());
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(Health {
            status: "unhealthy",
            daemons: Some(daemons),
        }),
    )
}

/// Why a probe failed, without the socket's path: this endpoint needs no token.
fn reason(error: &UdsError) -> String {
    match error {
        UdsError::Connect { source, .. } => source.to_string(),
        UdsError::Http { source, .. } => source.to_string(),
        UdsError::Timeout { timeout, .. } => format!("no answer within {timeout:?}"),
        _ => "probe failed".to_owned(),
    }
}
