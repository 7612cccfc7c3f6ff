//! The sync loop: reports the deployment's record to the manager (`POST /v1/sync`) and
//! records what the answer asks for. A sync with nothing new to report asks the manager to
//! hold it until there is news (our long-poll, `waitSeconds`), so a new release reaches the
//! agent as soon as it exists; a change of the record cuts that wait short and is reported
//! at once. A manager that answers at once anyway (the public one) is synced every
//! `SYNC_INTERVAL`. While the manager is away the workloads run on, untouched.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deployer::state::{DeploymentState, Status};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::manager::{SyncAnswer, SyncReport};
use crate::store::Record;
use crate::{Agent, MAX_BACKOFF};

/// The longest wait the manager holds a sync for.
const MAX_WAIT: Duration = Duration::from_secs(30);

impl Agent {
    pub(crate) async fn sync_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut moved = self.revision.subscribe();
        let mut reported: Option<u64> = None;
        let mut backoff = Duration::from_secs(1);
        let mut last_error = None;
        let wait = self.config.sync_interval.min(MAX_WAIT);
        loop {
            let (state, heartbeats, revision) = {
                let record = self.record.lock().await;
                moved.borrow_and_update();
                (
                    record.state.clone(),
                    record.heartbeats.clone(),
                    record.revision,
                )
            };
            let holding = reported == Some(revision) && heartbeats.is_empty();
            let report = SyncReport {
                deployment_id: &self.identity.deployment_id,
                current_state: &state,
                resource_heartbeats: &heartbeats,
                operator_version: env!("CARGO_PKG_VERSION"),
                wait_seconds: (holding && self.config.long_poll).then_some(wait.as_secs()),
            };
            let started = Instant::now();
            let answer = tokio::select! {
                answer = self.manager.sync(&self.identity.token, &report) => answer,
                // The record moved while the manager holds the sync: report it now.
                _ = moved.changed(), if report.wait_seconds.is_some() => continue,
                () = shutdown.cancelled() => return,
            };
            let pause = match answer {
                Ok(answer) => {
                    if last_error.take().is_some() {
                        info!("the manager is reachable again");
                    }
                    backoff = Duration::from_secs(1);
                    reported = Some(revision);
                    let news = self.apply(answer, revision).await;
                    let elapsed = started.elapsed();
                    // Nothing new, and the manager did not hold the sync (the public one, or
                    // no long-poll asked): the next one after the interval.
                    (holding && !news && elapsed < wait / 2)
                        .then(|| self.config.sync_interval.saturating_sub(elapsed))
                }
                Err(error) => {
                    let text = error.to_string();
                    if last_error.as_ref() != Some(&text) {
                        warn!(error = text, "sync failed; the workloads keep running");
                    } else {
                        debug!(error = text, "sync failed again");
                    }
                    last_error = Some(text);
                    let pause = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF.min(self.config.sync_interval));
                    Some(pause)
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = moved.changed() => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }

    /// Records what the answer asks for; true when that is something new.
    async fn apply(&self, answer: SyncAnswer, reported: u64) -> bool {
        let mut record = self.record.lock().await;
        if record.heartbeats_revision <= reported {
            record.heartbeats.clear();
        }
        let before = serde_json::to_value(&record.requests).unwrap_or_default();
        if let Some(current) = answer.current_state {
            ask_from_record(&mut record, current);
        }
        if let Some(target) = answer.target {
            let known = [
                record.state.target_release.as_ref(),
                record.requests.target.as_ref(),
            ]
            .into_iter()
            .flatten()
            .any(|release| release.id() == target.release_info.id());
            let running_it = record.state.status == Status::Running
                && record.state.current_release.as_ref().and_then(|r| r.id())
                    == target.release_info.id();
            if !known && !running_it {
                info!(release_id = ?target.release_info.id(), "the manager sent a release");
                record.requests.target = Some(target.release_info);
            }
            record.config = Some(target.config);
        }
        let news = serde_json::to_value(&record.requests).unwrap_or_default() != before;
        self.save(&record).await;
        drop(record);
        if news {
            self.requested.notify_one();
        }
        news
    }
}

/// What the manager's record asks of this machine: a delete, a retry, a redeploy, or (for an agent that
/// has nothing yet, say after its data directory was lost) the deployment as the manager
/// knows it, whose workloads the first health check then starts here.
fn ask_from_record(record: &mut Record, current: DeploymentState) {
    let local = &record.state;
    if current.status.is_deleting()
        && !local.status.is_deleting()
        && local.status != Status::Deleted
    {
        record.requests.delete = true;
    } else if current.retry_requested && local.status.is_failed() {
        record.requests.retry = true;
    } else if current.status == Status::UpdatePending
        && local.status == Status::Running
        && current.current_release.as_ref().and_then(|r| r.id())
            == local.current_release.as_ref().and_then(|r| r.id())
    {
        // The manager took back the `running` this machine reported: a redeploy of the
        // release it runs, asked for since.
        record.requests.redeploy = true;
    } else if local.status == Status::Pending
        && local.stack_state.is_none()
        && local.current_release.is_none()
        && current.status != Status::Pending
    {
        record.requests.adopt = Some(current);
    }
}
