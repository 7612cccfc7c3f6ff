//! The sync family: leases for push clients that drive a deployment from outside (acquire,
//! renew, reconcile, release), and the pull agent's periodic sync (docs/compatibility.md,
//! Deployment lifecycle).

use axum::Json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::Error;
use crate::auth::{Caller, Subject};
use crate::authz::{Op, Target, authorize};
use crate::extract::{JsonBody, QueryPairs};
use crate::lifecycle::DeploymentStatus;
use crate::lifecycle::lease::{StatusFilter, valid_acquire_mode};
use crate::lifecycle::reconcile::{self, Recorded};
use crate::routes::wait;
use crate::services::changes::Watch;
use crate::services::deployments::load_in;
use crate::state::AppState;
use crate::store::Store;
use crate::store::deployments::{self, AcquireQuery, Deployment};
use crate::store::releases;
use crate::wire::sync::{
    AcquireRequest, AcquireResponse, AcquiredDeployment, AgentSyncRequest, AgentSyncResponse,
    DeploymentConfig, DeploymentRecord, DeploymentState, EnvironmentSnapshot, Plan,
    ReconcileRequest, ReconcileResponse, ReleaseInfo, SyncSessionRequest, SyncTarget,
    TargetRelease,
};
use crate::wire::{Platform, Success, zulu};

/// The session the agent sync reports under: agents hold no lease.
const AGENT_SESSION: &str = "agent-sync";

pub async fn acquire(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<AcquireRequest>,
) -> Result<Json<AcquireResponse>, Error> {
    let subject = caller.authenticate(&state.store).await?;
    match &request.deployment_ids {
        Some(ids) => authorize_all(&state, &subject, ids.clone()).await?,
        None => authorize(&subject, Op::AcquireAny, Target::Nothing)?,
    }
    if let Some(mode) = request
        .acquire_mode
        .as_deref()
        .filter(|mode| !valid_acquire_mode(mode))
    {
        return Err(Error::BadRequest(format!("Invalid acquireMode: {mode}")));
    }
    let filter = StatusFilter::new(request.statuses.as_deref());
    let acquired = state
        .store
        .transaction(move |tx| {
            deployments::acquire(
                tx,
                &AcquireQuery {
                    session: &request.session,
                    model: request.deployment_model,
                    statuses: &filter,
                    ids: request.deployment_ids.as_deref(),
                    platforms: request.platforms.as_deref(),
                    limit: request.limit,
                },
            )
        })
        .await?;
    let deployments = acquired
        .into_iter()
        .map(|deployment| {
            Ok(AcquiredDeployment {
                deployment: record(deployment)?,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Json(AcquireResponse { deployments }))
}

/// Every named deployment exists (404) and may be synced by `subject` (403).
async fn authorize_all(state: &AppState, subject: &Subject, ids: Vec<String>) -> Result<(), Error> {
    let groups = state
        .store
        .read(move |conn| {
            ids.into_iter()
                .map(|id| match deployments::group_of(conn, &id)? {
                    Some(group) => Ok((id, group)),
                    None => Err(Error::DeploymentNotFound { deployment_id: id }),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    for (id, group_id) in &groups {
        authorize(
            subject,
            Op::SyncDeployment,
            Target::Deployment { id, group_id },
        )
        .map_err(|_| Error::forbidden("Access denied: cannot acquire these deployments"))?;
    }
    Ok(())
}

/// Persists a push client's report. Not gated on the lease: the only guard is that a report
/// never undoes a pending delete.
pub async fn reconcile(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<ReconcileRequest>,
) -> Result<Json<ReconcileResponse>, Error> {
    let subject = caller.authenticate(&state.store).await?;
    let system = caller.is_system();
    let (id, current) = state
        .store
        .transaction(move |tx| {
            let deployment = load_in(tx, &subject, &request.deployment_id, Op::SyncDeployment)?;
            let mut report: DeploymentState = serde_json::from_str(request.state.get())
                .map_err(|e| Error::BadRequest(format!("Invalid deployment state: {e}")))?;
            known_release(tx, &report)?;
            reconcile::preserve_gate_answers(
                parse(deployment.runtime_metadata.as_deref())?.as_ref(),
                &mut report,
            );
            if report.target_release.is_none()
                && let Some(desired) = &deployment.desired_release_id
                && let Some(Some(stack)) =
                    releases::platform_stack(tx, desired, &deployment.platform)?
            {
                report.target_release = Some(ReleaseInfo {
                    release_id: Some(desired.clone()),
                    version: None,
                    description: None,
                    stack: serde_json::from_str(stack.get())?,
                });
            }
            let write = reconcile::write(
                &recorded(&deployment),
                &report,
                &request.session,
                request.suggested_delay_ms,
            );
            deployments::apply_report(tx, &deployment.id, &report, &write)?;
            if system {
                if write.status == DeploymentStatus::Deleted {
                    // The push loop's delete is the one that removes the row.
                    deployments::remove(tx, &deployment.id)?;
                } else {
                    deployments::set_push_targets(
                        tx,
                        &deployment.id,
                        &push_targets(report.stack_state.as_ref()),
                    )?;
                }
            }
            // The client adopts what it is answered: a kept pending delete, not its report.
            report.status = write.status;
            Ok((deployment.id, report))
        })
        .await?;
    state.changes.changed(&id);
    Ok(Json(ReconcileResponse {
        success: true,
        current,
    }))
}

pub async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<SyncSessionRequest>,
) -> Result<Json<Success>, Error> {
    let subject = caller.authenticate(&state.store).await?;
    state
        .store
        .transaction(move |tx| {
            let deployment = load_in(tx, &subject, &request.deployment_id, Op::SyncDeployment)?;
            if deployments::renew_lock(tx, &deployment.id, &request.session)? {
                Ok(())
            } else {
                Err(Error::DeploymentLocked {
                    deployment_id: deployment.id,
                })
            }
        })
        .await?;
    Ok(Json(Success::new()))
}

/// Always succeeds: a lease that is not the session's is left alone.
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<SyncSessionRequest>,
) -> Result<Json<Success>, Error> {
    let subject = caller.authenticate(&state.store).await?;
    state
        .store
        .transaction(move |tx| {
            let deployment = load_in(tx, &subject, &request.deployment_id, Op::SyncDeployment)?;
            deployments::release_lock(tx, &deployment.id, &request.session)
        })
        .await?;
    Ok(Json(Success::new()))
}

/// The `commandsPushTarget` output of every worker in a stack state deployd reported.
fn push_targets(stack_state: Option<&Value>) -> BTreeMap<String, String> {
    let Some(resources) = stack_state
        .and_then(|state| state.get("resources"))
        .and_then(Value::as_object)
    else {
        return BTreeMap::new();
    };
    resources
        .iter()
        .filter(|(_, resource)| resource.get("type").and_then(Value::as_str) == Some("worker"))
        .filter_map(|(id, resource)| {
            let url = resource.pointer("/outputs/commandsPushTarget")?.as_str()?;
            Some((id.clone(), url.to_owned()))
        })
        .collect()
}

/// What the push loop deploys a deployment with (deployd, over the manager's own socket
/// only): its state with the current release and the target (the desired release, else the
/// current one) filled in, and the configuration, which carries the deployment's own token
/// for the workloads and image pulls.
pub async fn plan(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Plan>, Error> {
    let base_url = state.base_url.to_string();
    let plan = state
        .store
        .read(move |conn| {
            let deployment =
                deployments::get(conn, &id)?.ok_or_else(|| Error::deployment_not_found(&id))?;
            let target_id = deployment
                .desired_release_id
                .as_deref()
                .or(deployment.current_release_id.as_deref());
            let target = match target_id {
                Some(release_id) => {
                    releases::platform_stack(conn, release_id, &deployment.platform)?
                        .flatten()
                        .map(|stack| TargetRelease {
                            release_id: release_id.to_owned(),
                            stack,
                        })
                }
                None => None,
            };
            let token = deployments::workload_token(conn, &deployment.id)?;
            let mut current = record_state(conn, &deployment, None)?;
            current.target_release = target
                .as_ref()
                .map(|target| release_info(&target.release_id, &target.stack))
                .transpose()?;
            Ok(Plan {
                state: current,
                config: config(&deployment, token, base_url)?,
            })
        })
        .await?;
    Ok(Json(plan))
}

/// The longest an agent sync is held: the commands' long polls' bound, well inside the
/// connections' timeouts.
const MAX_WAIT_SECONDS: u64 = 30;

/// The pull agent's sync: take its report (unless stale), answer with the release it should
/// deploy and, when the manager knows better than the agent, the state to adopt. With
/// `waitSeconds`, an answer with neither is held until there is news (see [`hold`]).
pub async fn sync(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
    JsonBody(request): JsonBody<AgentSyncRequest>,
) -> Result<Json<AgentSyncResponse>, Error> {
    let subject = caller.authenticate(&state.store).await?;
    let wait = match &request.wait_seconds {
        Some(value) => wait::in_body(value, MAX_WAIT_SECONDS)?,
        None => wait::in_query(&query, MAX_WAIT_SECONDS)?,
    };
    let bearer = caller.bearer();
    let base_url = state.base_url.to_string();
    let report = request.current_state.as_deref().and_then(|raw| {
        serde_json::from_str::<DeploymentState>(raw.get())
            .inspect_err(|error| {
                debug!(deployment_id = %request.deployment_id, %error, "ignoring an agent report that is not a deployment state");
            })
            .ok()
    });
    // What the agent already has: a target naming this release is no news to it.
    let reported_target = report
        .as_ref()
        .and_then(|report| report.target_release.as_ref())
        .and_then(|release| release.release_id.clone());
    let commands_url = format!("{base_url}/v1");
    let sync = Arc::new(AgentSync {
        subject,
        deployment_id: request.deployment_id,
        bearer,
        base_url,
    });
    // Watching begins before the first read, so that a change committed after it wakes the
    // wait however soon it comes.
    let waiting = wait.map(|seconds| {
        (
            Duration::from_secs(seconds),
            state.changes.watch(&sync.deployment_id),
        )
    });
    // Most syncs are polls without a report: they only read, beside the writer.
    let answer = match report {
        Some(report) => {
            let sync = Arc::clone(&sync);
            state
                .store
                .transaction(move |tx| sync.answer(tx, Some(report)))
                .await?
        }
        None => sync.read(&state.store).await?,
    };
    if answer.report_moved {
        state.changes.changed(&sync.deployment_id);
    }
    let answer = match waiting {
        Some((wait, watch)) if !answer.is_news(reported_target.as_deref()) => {
            hold(
                &state,
                &sync,
                answer,
                watch,
                wait,
                reported_target.as_deref(),
            )
            .await?
        }
        _ => answer,
    };
    Ok(Json(AgentSyncResponse {
        current_state: answer.current_state,
        target: answer.target,
        commands_url,
    }))
}

/// Holds `held`, an answer with no news for the agent, until the deployment changes so that
/// the answer has news or what is asked of the agent moved (its status, desired release or
/// retry request: a redeploy, say), or the deployment is gone, or `wait` passes; then
/// answers what a sync would answer then. A wake-up that changed none of it waits on. When
/// the manager stops, `held` is answered at once. Nothing of the database is held meanwhile.
async fn hold(
    state: &AppState,
    sync: &Arc<AgentSync>,
    held: Answer,
    mut watch: Watch,
    wait: Duration,
    reported_target: Option<&str>,
) -> Result<Answer, Error> {
    let deadline = Instant::now() + wait;
    loop {
        tokio::select! {
            () = watch.changed() => {}
            () = tokio::time::sleep_until(deadline) => break,
            () = state.shutdown.cancelled() => return Ok(held),
        }
        let now = sync.read(&state.store).await?;
        if now.is_news(reported_target) || now.requested != held.requested {
            return Ok(now);
        }
    }
    sync.read(&state.store).await
}

/// One agent sync, once its request is read.
struct AgentSync {
    subject: Subject,
    deployment_id: String,
    bearer: Option<String>,
    base_url: String,
}

/// What a sync answers, and what it knows beside.
struct Answer {
    current_state: Option<DeploymentState>,
    target: Option<SyncTarget>,
    requested: Requested,
    /// The report this answer took changed [`Requested`], which others waiting must hear.
    report_moved: bool,
}

impl Answer {
    /// Whether the answer gives the agent something to do or adopt: a state, or a target
    /// other than the one it reports as its own (a failed update's, say, which the manager
    /// keeps sending). Only an answer without news may be held.
    fn is_news(&self, reported_target: Option<&str>) -> bool {
        self.current_state.is_some()
            || self.target.as_ref().is_some_and(|target| {
                Some(target.release_info.release_id.as_str()) != reported_target
            })
    }
}

/// What the record asks of the agent beside the answer's target: a change of it ends a held
/// sync even when the answer stays empty.
#[derive(Debug, PartialEq)]
struct Requested {
    status: DeploymentStatus,
    desired_release_id: Option<String>,
    retry_requested: bool,
}

impl Requested {
    fn of(deployment: &Deployment) -> Requested {
        Requested {
            status: deployment.status(),
            desired_release_id: deployment.desired_release_id.clone(),
            retry_requested: deployment.retry_requested,
        }
    }
}

impl AgentSync {
    /// The answer without a report, read beside the writer.
    async fn read(self: &Arc<Self>, store: &Store) -> Result<Answer, Error> {
        let sync = Arc::clone(self);
        store.read(move |conn| sync.answer(conn, None)).await
    }

    /// Persists `report` unless it is to be ignored, and answers with the state the agent
    /// should adopt, if any, and the release it should deploy, if any. Without a report,
    /// `conn` is only read.
    fn answer(
        &self,
        conn: &rusqlite::Connection,
        report: Option<DeploymentState>,
    ) -> Result<Answer, Error> {
        let mut deployment = load_in(conn, &self.subject, &self.deployment_id, Op::SyncDeployment)?;
        let before = Requested::of(&deployment);
        let mut ignored = false;
        if let Some(mut report) = report {
            known_release(conn, &report)?;
            let recorded = recorded(&deployment);
            if reconcile::sync_ignores(&recorded, &report) {
                ignored = true;
            } else {
                reconcile::preserve_gate_answers(
                    parse(deployment.runtime_metadata.as_deref())?.as_ref(),
                    &mut report,
                );
                let write = reconcile::write(&recorded, &report, AGENT_SESSION, None);
                deployments::apply_report(conn, &deployment.id, &report, &write)?;
                deployment = deployments::get(conn, &deployment.id)?
                    .ok_or_else(|| Error::deployment_not_found(&deployment.id))?;
            }
        }
        let target = match reconcile::sync_target(&recorded(&deployment)) {
            Some(release_id) => {
                match releases::platform_stack(conn, release_id, &deployment.platform)? {
                    None => None,
                    // The public manager fails the sync (500). The agent could then not even
                    // report; without a target it keeps what it runs, and the operator reads
                    // why in the log.
                    Some(None) => {
                        warn!(
                            deployment_id = %deployment.id,
                            release_id,
                            platform = %deployment.platform,
                            "the desired release has no stack for the deployment's platform; no target sent"
                        );
                        None
                    }
                    Some(Some(stack)) => Some(SyncTarget {
                        release_info: TargetRelease {
                            release_id: release_id.to_owned(),
                            stack,
                        },
                        config: config(&deployment, self.bearer.clone(), self.base_url.clone())?,
                    }),
                }
            }
            None => None,
        };
        let current_state = if ignored
            || deployment.retry_requested
            || deployment.status().is_deleting()
            || reconcile::redeploy_pending(&recorded(&deployment))
        {
            Some(record_state(conn, &deployment, target.as_ref())?)
        } else {
            None
        };
        let requested = Requested::of(&deployment);
        Ok(Answer {
            current_state,
            target,
            report_moved: requested != before,
            requested,
        })
    }
}

fn recorded(deployment: &Deployment) -> Recorded<'_> {
    Recorded {
        status: deployment.status(),
        retry_requested: deployment.retry_requested,
        current_release_id: deployment.current_release_id.as_deref(),
        desired_release_id: deployment.desired_release_id.as_deref(),
        locked_by: deployment.locked_by.as_deref(),
        has_state: deployment.stack_state.is_some()
            || deployment.environment_info.is_some()
            || deployment.runtime_metadata.is_some(),
    }
}

/// A report may name as its current release only one the manager has: a made-up id would be
/// recorded as the deployment's release, which commands and telemetry then go by.
fn known_release(conn: &rusqlite::Connection, report: &DeploymentState) -> Result<(), Error> {
    match report
        .current_release
        .as_ref()
        .and_then(|release| release.release_id.as_deref())
    {
        Some(id) if !releases::exists(conn, id)? => Err(Error::UnknownRelease {
            release_id: id.to_owned(),
        }),
        _ => Ok(()),
    }
}

fn parse(raw: Option<&RawValue>) -> Result<Option<Value>, Error> {
    Ok(raw.map(|raw| serde_json::from_str(raw.get())).transpose()?)
}

/// The record as the agent should see it, with its releases' stacks filled in.
fn record_state(
    conn: &rusqlite::Connection,
    deployment: &Deployment,
    target: Option<&SyncTarget>,
) -> Result<DeploymentState, Error> {
    let platform = Platform::parse(&deployment.platform).ok_or_else(|| Error::UnknownPlatform {
        deployment_id: deployment.id.clone(),
        platform: deployment.platform.clone(),
    })?;
    let current_release = match &deployment.current_release_id {
        Some(id) => releases::platform_stack(conn, id, &deployment.platform)?
            .flatten()
            .map(|stack| release_info(id, &stack))
            .transpose()?,
        None => None,
    };
    let target_release = target
        .map(|target| release_info(&target.release_info.release_id, &target.release_info.stack))
        .transpose()?;
    Ok(DeploymentState {
        status: deployment.status(),
        platform,
        current_release,
        target_release,
        stack_state: parse(deployment.stack_state.as_deref())?,
        error: parse(deployment.error.as_deref())?,
        environment_info: parse(deployment.environment_info.as_deref())?,
        runtime_metadata: parse(deployment.runtime_metadata.as_deref())?,
        retry_requested: deployment.retry_requested,
        protocol_version: deployment.deployment_protocol_version,
    })
}

fn release_info(id: &str, stack: &RawValue) -> Result<ReleaseInfo, Error> {
    Ok(ReleaseInfo {
        release_id: Some(id.to_owned()),
        version: None,
        description: None,
        stack: serde_json::from_str(stack.get())?,
    })
}

/// What the agent deploys the target with.
fn config(
    deployment: &Deployment,
    bearer: Option<String>,
    manager_url: String,
) -> Result<DeploymentConfig, Error> {
    let stack_settings: Value = serde_json::from_str(deployment.stack_settings.get())?;
    let external_bindings = stack_settings
        .get("externalBindings")
        .filter(|bindings| !bindings.is_null())
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    Ok(DeploymentConfig {
        deployment_name: deployment.name.clone(),
        stack_settings,
        input_values: or_empty(deployment.input_values.clone(), "{}")?,
        environment_variables: EnvironmentSnapshot {
            variables: or_empty(deployment.environment_variables.clone(), "[]")?,
            hash: "",
            created_at: "",
        },
        external_bindings,
        base_platform: deployment.base_platform.clone(),
        manager_url,
        deployment_token: bearer,
        observe_all_namespaces: false,
    })
}

/// A stored JSON value, or `empty` in its place.
fn or_empty(raw: Option<Box<RawValue>>, empty: &str) -> Result<Box<RawValue>, Error> {
    match raw {
        Some(raw) => Ok(raw),
        None => Ok(RawValue::from_string(empty.to_owned())?),
    }
}

/// The record as the public manager serializes it into acquire answers.
fn record(deployment: Deployment) -> Result<DeploymentRecord, Error> {
    Ok(DeploymentRecord {
        id: deployment.id,
        workspace_id: deployment.workspace_id,
        project_id: deployment.project_id,
        name: deployment.name,
        deployment_group_id: deployment.deployment_group_id,
        platform: deployment.platform,
        deployment_protocol_version: deployment.deployment_protocol_version,
        base_platform: deployment.base_platform,
        status: deployment.status,
        stack_settings: deployment.stack_settings,
        stack_state: deployment.stack_state,
        environment_info: deployment.environment_info,
        runtime_metadata: deployment.runtime_metadata,
        current_release_id: deployment.current_release_id,
        desired_release_id: deployment.desired_release_id,
        import_source: deployment.import_source,
        setup_metadata: deployment.setup_metadata,
        setup_target: deployment.setup_target,
        setup_fingerprint: deployment.setup_fingerprint,
        setup_fingerprint_version: deployment.setup_fingerprint_version,
        user_environment_variables: deployment.environment_variables,
        input_values: or_empty(deployment.input_values, "{}")?,
        retry_requested: deployment.retry_requested,
        locked_by: deployment.locked_by,
        locked_at: deployment.locked_at.as_deref().map(zulu),
        created_at: zulu(&deployment.created_at),
        updated_at: deployment.updated_at.as_deref().map(zulu),
        error: deployment.error,
    })
}
