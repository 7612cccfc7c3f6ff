//! The deployment loop: the only writer of the deployment's state. It applies what the
//! manager asked for, moves the deployment one engine step at a time (honouring the delay a
//! step suggests), and, while the deployment runs, checks its workloads every heartbeat
//! interval and restarts those that died, once at start too (they may have died while the
//! agent was down).

use std::sync::Arc;
use std::time::Duration;

use deployer::config::DeploymentConfig;
use deployer::engine::{self, Step};
use deployer::state::{DeploymentState, Status};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::Agent;

/// How often the loop looks when nothing woke it.
const IDLE: Duration = Duration::from_secs(1);

/// What the loop does next.
enum Work {
    Step(DeploymentState, DeploymentConfig),
    Check(DeploymentState, DeploymentConfig),
    Nothing,
}

impl Agent {
    pub(crate) async fn deployment_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut next_check = Instant::now();
        let mut not_before = Instant::now();
        loop {
            let now = Instant::now();
            let work = if now < not_before {
                Work::Nothing
            } else {
                self.next_work(now >= next_check).await
            };
            let mut pause = IDLE;
            match work {
                Work::Step(state, config) => {
                    let id = &self.identity.deployment_id;
                    let before = state.status;
                    let step = engine::step(&*self.platform, id, state, &config).await;
                    if step.state.status != before {
                        info!(deployment_id = %id, from = ?before, to = ?step.state.status, "deployment status");
                    }
                    match step.suggested_delay_ms {
                        Some(ms) => not_before = Instant::now() + Duration::from_millis(ms),
                        None => pause = Duration::ZERO,
                    }
                    self.record_step(step, false).await;
                }
                Work::Check(state, config) => {
                    let id = &self.identity.deployment_id;
                    let step = engine::refresh(&*self.platform, id, state, &config).await;
                    next_check = Instant::now() + self.config.heartbeat_interval;
                    self.record_step(step, true).await;
                }
                Work::Nothing => {}
            }
            if pause.is_zero() {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.requested.notified() => not_before = Instant::now(),
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Applies the manager's requests and says what is to be done.
    async fn next_work(&self, check_due: bool) -> Work {
        let mut record = self.record.lock().await;
        let requests = std::mem::take(&mut record.requests);
        if !requests.is_empty() {
            let state = &mut record.state;
            if let Some(adopted) = requests.adopt {
                info!(status = ?adopted.status, "taking the deployment as the manager knows it");
                *state = adopted;
            }
            if let Some(target) = requests.target {
                // A new release moves a deployment that runs, or whose last update or check
                // failed, as the manager moves a push deployment.
                let eligible = matches!(
                    state.status,
                    Status::Running | Status::UpdateFailed | Status::RefreshFailed
                );
                let moving =
                    eligible && state.current_release.as_ref().and_then(|r| r.id()) != target.id();
                state.target_release = Some(target);
                if moving {
                    state.status = Status::UpdatePending;
                }
            }
            if requests.redeploy && state.status == Status::Running {
                info!("the manager asked for a redeploy");
                state.target_release = state.current_release.clone();
                state.status = Status::UpdatePending;
            }
            if requests.delete && !state.status.is_deleting() && state.status != Status::Deleted {
                state.status = Status::DeletePending;
            }
            if requests.retry && state.status.is_failed() {
                state.retry_requested = true;
            }
            record.revision += 1;
            self.save(&record).await;
        }
        let Some(mut config) = record.config.clone() else {
            return Work::Nothing;
        };
        config.telemetry_url = self.telemetry_url.clone();
        config.workload_manager_url = Some(self.manager.local_base_url().to_owned());
        let state = &record.state;
        let waiting = state.status == Status::Pending && state.target_release.is_none();
        if !waiting && (!state.status.is_settled() || state.retry_requested) {
            return Work::Step(state.clone(), config);
        }
        if check_due && state.status == Status::Running && !heartbeats_off(&config) {
            return Work::Check(state.clone(), config);
        }
        Work::Nothing
    }

    /// Keeps the state a step or a check left; a check also leaves heartbeats to report.
    async fn record_step(&self, step: Step, checked: bool) {
        let mut record = self.record.lock().await;
        if checked && step.update_heartbeat {
            record.heartbeats = heartbeats(&self.identity.deployment_id, &step.state);
        }
        record.state = step.state;
        record.revision += 1;
        if checked {
            record.heartbeats_revision = record.revision;
        }
        self.save(&record).await;
    }
}

/// `stackSettings.heartbeats = "off"` turns the checks off.
fn heartbeats_off(config: &DeploymentConfig) -> bool {
    config
        .stack_settings
        .get("heartbeats")
        .and_then(Value::as_str)
        == Some("off")
}

/// One heartbeat per resource, as the sync reports them.
fn heartbeats(deployment_id: &str, state: &DeploymentState) -> Vec<Value> {
    let observed = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let Some(stack) = &state.stack_state else {
        return Vec::new();
    };
    stack
        .resources
        .iter()
        .map(|(id, resource)| {
            json!({
                "deploymentId": deployment_id,
                "resourceId": id,
                "resourceType": resource.kind,
                "controllerPlatform": "local",
                "backend": "local",
                "observedAt": observed,
                "data": {"resourceType": resource.kind, "data": {"status": resource.status}},
                "raw": [],
            })
        })
        .collect()
}
