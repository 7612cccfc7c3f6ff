//! The push deployment loop and the heartbeat loop. Each pass takes the manager's lock on a
//! few deployments, steps them with the engine, reports every step (so that a crash loses at
//! most the step in flight) and releases the lock.

use std::sync::Arc;
use std::time::Duration;

use deployer::engine::{self, Step};
use deployer::platform::Platform;
use deployer::state::DeploymentState;
use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::manager::{Acquired, Manager, ManagerError, session};

/// Deployments stepped at once, and per lock request.
const BATCH: u32 = 4;
/// Lock requests per pass of the deployment loop.
const DEPLOY_BATCHES: usize = 16;
/// Lock requests per pass of the heartbeat loop: up to 100 deployments.
const HEARTBEAT_BATCHES: usize = 25;
/// Engine steps per deployment per pass.
const STEPS: usize = 100;
/// The lock is renewed this often while steps run (the manager breaks it after 5 minutes).
const RENEW_EVERY: Duration = Duration::from_secs(60);
/// How long a report is retried while the manager is away (restarting, say).
const REPORT_PATIENCE: Duration = Duration::from_secs(120);

/// What the deployment loop takes: every status with work left, and failed ones whose retry
/// was asked for (the manager matches those only with the flag).
const WORK: [&str; 14] = [
    "pending",
    "initial-setup",
    "provisioning",
    "waiting-for-machines",
    "update-pending",
    "updating",
    "delete-pending",
    "deleting",
    "preflights-failed",
    "initial-setup-failed",
    "provisioning-failed",
    "update-failed",
    "refresh-failed",
    "delete-failed",
];

pub struct Loops<P> {
    pub manager: Manager,
    pub platform: Arc<P>,
    pub shutdown: CancellationToken,
}

impl<P: Platform + 'static> Loops<P> {
    pub async fn deployment_loop(self: Arc<Self>, interval: Duration) {
        // A new release or a redeploy makes a running deployment update-pending in the
        // manager: running ones are the heartbeat loop's.
        self.every(interval, &WORK, DEPLOY_BATCHES, Self::deploy)
            .await;
    }

    /// Checks the running deployments at once (a restart of deployd stopped or orphaned their
    /// workloads), then every `interval`.
    pub async fn heartbeat_loop(self: Arc<Self>, interval: Duration) {
        self.every(interval, &["running"], HEARTBEAT_BATCHES, Self::heartbeat)
            .await;
    }

    /// Until shutdown, every `interval`: up to `batches` times, locks up to [`BATCH`]
    /// deployments in `statuses` and hands each to `work`, at once, until none is left.
    async fn every<F, W>(
        self: Arc<Self>,
        interval: Duration,
        statuses: &[&str],
        batches: usize,
        work: W,
    ) where
        W: Fn(Arc<Self>, String, Acquired) -> F,
        F: std::future::Future<Output = ()>,
    {
        loop {
            for _ in 0..batches {
                let session = session();
                let acquired = match self.manager.acquire(&session, statuses, BATCH).await {
                    Ok(acquired) => acquired,
                    Err(error) => {
                        debug!(%error, ?statuses, "cannot take deployments");
                        break;
                    }
                };
                if acquired.is_empty() {
                    break;
                }
                join_all(
                    acquired
                        .into_iter()
                        .map(|d| work(self.clone(), session.clone(), d)),
                )
                .await;
                if self.shutdown.is_cancelled() {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Steps one locked deployment until it settles, waits, or runs out of steps.
    async fn deploy(self: Arc<Self>, session: String, acquired: Acquired) {
        let id = acquired.id.clone();
        let renewing = self.renew_while_held(&id, &session);
        let outcome = async {
            let plan = self.manager.plan(&id).await?;
            let mut state = plan.state;
            state.retry_requested |= acquired.retry_requested;
            for _ in 0..STEPS {
                let before = state.status;
                let Step {
                    state: next,
                    suggested_delay_ms,
                    ..
                } = engine::step(&*self.platform, &id, state, &plan.config).await;
                if next.status != before {
                    info!(deployment_id = %id, from = ?before, to = ?next.status, "deployment status");
                }
                let settled = next.status.is_settled() && !next.retry_requested;
                state = self
                    .report(&id, &session, &next, false, suggested_delay_ms)
                    .await?;
                if settled || suggested_delay_ms.is_some() || self.shutdown.is_cancelled() {
                    break;
                }
            }
            Ok::<(), ManagerError>(())
        };
        let outcome = tokio::select! {
            outcome = outcome => outcome,
            () = renewing => Ok(()),
        };
        if let Err(error) = outcome {
            warn!(deployment_id = %id, %error, "deployment pass failed");
        }
        if let Err(error) = self.manager.release(&id, &session).await {
            debug!(deployment_id = %id, %error, "cannot release the lock");
        }
    }

    async fn heartbeat(self: Arc<Self>, session: String, acquired: Acquired) {
        let id = acquired.id.clone();
        let heartbeats_off = acquired
            .stack_settings
            .as_ref()
            .and_then(|s| s.get("heartbeats"))
            .and_then(|h| h.as_str())
            == Some("off");
        if !heartbeats_off && acquired.status == "running" {
            let outcome = async {
                let plan = self.manager.plan(&id).await?;
                let step = engine::refresh(&*self.platform, &id, plan.state, &plan.config).await;
                self.report(&id, &session, &step.state, step.update_heartbeat, None)
                    .await
                    .map(drop)
            };
            if let Err(error) = outcome.await {
                warn!(deployment_id = %id, %error, "health check failed");
            }
        }
        if let Err(error) = self.manager.release(&id, &session).await {
            debug!(deployment_id = %id, %error, "cannot release the lock");
        }
    }

    /// Reports a step, retrying while the manager is away: the step is done and must not be
    /// lost (the next pass would redo it, but the driver's work is already there).
    async fn report(
        &self,
        id: &str,
        session: &str,
        state: &DeploymentState,
        update_heartbeat: bool,
        delay: Option<u64>,
    ) -> Result<DeploymentState, ManagerError> {
        let deadline = tokio::time::Instant::now() + REPORT_PATIENCE;
        let mut backoff = Duration::from_secs(1);
        loop {
            match self
                .manager
                .reconcile(id, session, state, update_heartbeat, delay)
                .await
            {
                Ok(current) => return Ok(current),
                Err(error) if error.is_transient() && tokio::time::Instant::now() < deadline => {
                    debug!(deployment_id = %id, %error, "report failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Renews the lock every minute; never returns unless renewing fails for good.
    async fn renew_while_held(&self, id: &str, session: &str) {
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            if let Err(error) = self.manager.renew(id, session).await
                && !error.is_transient()
            {
                warn!(deployment_id = %id, %error, "lost the lock");
                return;
            }
        }
    }
}
