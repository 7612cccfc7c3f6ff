//! The step machine: one call moves a deployment one step towards its target (or towards
//! deletion) and says how long to wait before the next. It holds no state between calls:
//! everything it knows is in the `DeploymentState` it is given and returns, so the caller
//! can persist it after every step and a crash loses at most the step in flight, which the
//! driver's idempotent `apply` and `delete` simply redo.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::config::DeploymentConfig;
use crate::env;
use crate::platform::{Applied, Platform, ResourceContext, ResourceError};
use crate::prepared;
use crate::state::{DeploymentState, Lifecycle, ResourceState, ResourceStatus, StackState, Status};
use stack::{ResourceEntry, Stack};

/// Resources stepped at once.
const PARALLEL: usize = 4;
/// Retryable failures of one resource before it counts as failed.
const MAX_ATTEMPTS: u32 = 10;
/// Failed health checks in a row before a running resource counts as failed.
const MAX_HEAL_FAILURES: u32 = 3;

/// The result of one step.
#[derive(Debug, Clone)]
pub struct Step {
    pub state: DeploymentState,
    /// Wait this long before the next step (a retry's back-off); `None` to go on at once.
    pub suggested_delay_ms: Option<u64>,
    /// The step checked the running resources (a heartbeat).
    pub update_heartbeat: bool,
}

impl Step {
    fn now(state: DeploymentState) -> Step {
        Step {
            state,
            suggested_delay_ms: None,
            update_heartbeat: false,
        }
    }
}

/// Moves `state` one step. A settled state (running on its target, deleted, failed without
/// a retry request) comes back unchanged.
pub async fn step<P: Platform>(
    platform: &P,
    deployment_id: &str,
    mut state: DeploymentState,
    config: &DeploymentConfig,
) -> Step {
    if state.status.is_failed() {
        if state.retry_requested {
            retry(&mut state);
        }
        return Step::now(state);
    }
    let result = match state.status {
        Status::Pending => begin(platform, deployment_id, &mut state, config).map(|()| None),
        // The setup's resources first, then the rest.
        Status::InitialSetup | Status::Provisioning => {
            let lifecycle = if state.status == Status::InitialSetup {
                Lifecycle::Frozen
            } else {
                Lifecycle::Live
            };
            pass(platform, deployment_id, &mut state, config, Some(lifecycle)).await
        }
        Status::Running => {
            if target_differs(&state) {
                state.status = Status::UpdatePending;
            }
            Ok(None)
        }
        Status::UpdatePending => {
            plan_update(platform, deployment_id, &mut state, config).map(|()| None)
        }
        Status::Updating => pass(platform, deployment_id, &mut state, config, None).await,
        Status::DeletePending => {
            begin_delete(&mut state);
            Ok(None)
        }
        Status::Deleting => delete_pass(platform, deployment_id, &mut state, config).await,
        _ => Ok(None),
    };
    match result {
        Ok(delay) => Step {
            state,
            suggested_delay_ms: delay,
            update_heartbeat: false,
        },
        Err(error) => {
            state.status = state.status.failed();
            state.error = Some(error.to_json());
            state.retry_requested = false;
            Step::now(state)
        }
    }
}

/// Checks every running resource of a running deployment and restarts what died. After
/// repeated failures of one resource the deployment is `refresh-failed`.
pub async fn refresh<P: Platform>(
    platform: &P,
    deployment_id: &str,
    mut state: DeploymentState,
    config: &DeploymentConfig,
) -> Step {
    if state.status != Status::Running {
        return Step::now(state);
    }
    if target_differs(&state) {
        state.status = Status::UpdatePending;
        return Step::now(state);
    }
    let ids: Vec<String> = resources(&state)
        .filter(|(_, r)| r.status == ResourceStatus::Running)
        .map(|(id, _)| id.clone())
        .collect();
    let mut failed = false;
    for chunk in ids.chunks(PARALLEL) {
        let contexts: Vec<ResourceContext> = chunk
            .iter()
            .map(|id| context(platform, deployment_id, &state, config, id))
            .collect();
        let results = join_all(contexts.into_iter().map(|ctx| platform.heal(ctx))).await;
        for (id, result) in chunk.iter().zip(results) {
            let Some(resource) = resource_mut(&mut state, id) else {
                continue;
            };
            match result {
                Ok(applied) => {
                    record(resource, applied);
                    resource.retry_attempt = 0;
                    resource.error = None;
                }
                Err(error) => {
                    resource.retry_attempt += 1;
                    resource.error = Some(error.to_json());
                    if !error.retryable || resource.retry_attempt >= MAX_HEAL_FAILURES {
                        resource.last_failed_state = Some(json!(resource.status));
                        resource.status = ResourceStatus::RefreshFailed;
                        failed = true;
                    }
                }
            }
        }
    }
    if failed {
        state.status = Status::RefreshFailed;
    }
    Step {
        state,
        suggested_delay_ms: None,
        update_heartbeat: true,
    }
}

fn target_differs(state: &DeploymentState) -> bool {
    match (&state.target_release, &state.current_release) {
        (Some(target), Some(current)) => target.id() != current.id(),
        (Some(_), None) => true,
        _ => false,
    }
}

/// Failed resources go back to what they were doing, and the deployment to its active
/// status.
fn retry(state: &mut DeploymentState) {
    state.retry_requested = false;
    state.error = None;
    let resumed = state.status.resumed().unwrap_or(state.status);
    if let Some(stack) = &mut state.stack_state {
        for resource in stack.resources.values_mut() {
            if resource.status.is_failed() {
                resource.status = resource
                    .last_failed_state
                    .take()
                    .and_then(|s| serde_json::from_value(s).ok())
                    .filter(|s: &ResourceStatus| !s.is_failed())
                    .unwrap_or(ResourceStatus::Pending);
                resource.error = None;
                resource.retry_attempt = 0;
            }
        }
    }
    state.status = resumed;
}

fn stack_of(state: &DeploymentState) -> Result<Stack, ResourceError> {
    let target = state.target_release.as_ref().ok_or_else(|| {
        ResourceError::fatal("TARGET_MISSING", "The deployment has no release to deploy")
    })?;
    prepared::parse(&target.stack)
        .map_err(|message| ResourceError::fatal("RESOURCE_CONFIG_INVALID", message))
}

/// `pending`: the stack state of the prepared stack, every resource pending.
fn begin<P: Platform>(
    platform: &P,
    deployment_id: &str,
    state: &mut DeploymentState,
    config: &DeploymentConfig,
) -> Result<(), ResourceError> {
    let stack = platform.prepare(&stack_of(state)?);
    let mut resources = indexmap::IndexMap::new();
    for (id, entry) in &stack.resources {
        resources.insert(
            id.clone(),
            desired(platform, deployment_id, id, entry, config),
        );
    }
    state.stack_state = Some(StackState {
        platform: platform.name().to_owned(),
        resources,
        resource_prefix: state
            .stack_state
            .as_ref()
            .and_then(|s| s.resource_prefix.clone()),
    });
    state.environment_info = Some(platform.environment_info());
    let metadata = state.runtime_metadata.get_or_insert_with(Default::default);
    metadata.insert("initialSetupAuthority".into(), json!("directSetup"));
    metadata.insert(
        "preparedStack".into(),
        serde_json::to_value(&stack).unwrap_or(Value::Null),
    );
    state.status = Status::InitialSetup;
    Ok(())
}

/// A resource of the prepared stack as it should be, with its injected environment.
fn desired<P: Platform>(
    platform: &P,
    deployment_id: &str,
    id: &str,
    entry: &ResourceEntry,
    config: &DeploymentConfig,
) -> ResourceState {
    let kind = entry.config.kind().to_owned();
    let mut resource_config = serde_json::to_value(&entry.config).unwrap_or(Value::Null);
    if entry.config.is_compute() {
        let injected = env::for_resource(deployment_id, config, id, &kind, &resource_config);
        resource_config = env::with_environment(&resource_config, &injected.plain);
    }
    ResourceState {
        kind,
        status: ResourceStatus::Pending,
        config: resource_config,
        outputs: None,
        internal: None,
        lifecycle: entry.lifecycle,
        dependencies: entry.all_dependencies(),
        retry_attempt: 0,
        error: None,
        previous_config: None,
        last_failed_state: None,
        remote_binding_params: None,
        controller_platform: Some(platform.name().to_owned()),
    }
}

/// `update-pending`: every resource whose configuration or dependencies differ from the new
/// prepared stack is to update, new ones to create, removed live ones to delete.
fn plan_update<P: Platform>(
    platform: &P,
    deployment_id: &str,
    state: &mut DeploymentState,
    config: &DeploymentConfig,
) -> Result<(), ResourceError> {
    let stack = platform.prepare(&stack_of(state)?);
    let current = state.stack_state.get_or_insert_with(|| StackState {
        platform: platform.name().to_owned(),
        resources: Default::default(),
        resource_prefix: None,
    });
    let mut next = indexmap::IndexMap::new();
    for (id, entry) in &stack.resources {
        let mut wanted = desired(platform, deployment_id, id, entry, config);
        match current.resources.get(id) {
            Some(old) if old.config == wanted.config && old.dependencies == wanted.dependencies => {
                let mut kept = old.clone();
                if kept.status.is_failed() {
                    kept.status = ResourceStatus::Updating;
                }
                next.insert(id.clone(), kept);
            }
            Some(old) => {
                wanted.status = ResourceStatus::Updating;
                wanted.previous_config = Some(old.config.clone());
                wanted.outputs = old.outputs.clone();
                wanted.internal = old.internal.clone();
                next.insert(id.clone(), wanted);
            }
            None => {
                next.insert(id.clone(), wanted);
            }
        }
    }
    for (id, old) in &current.resources {
        if !next.contains_key(id) {
            let mut gone = old.clone();
            gone.status = ResourceStatus::Deleting;
            next.insert(id.clone(), gone);
        }
    }
    current.resources = next;
    let metadata = state.runtime_metadata.get_or_insert_with(Default::default);
    metadata.insert(
        "pendingPreparedStack".into(),
        serde_json::to_value(&stack).unwrap_or(Value::Null),
    );
    state.status = Status::Updating;
    Ok(())
}

/// One pass over the resources with work left (of `lifecycle`, if given): each whose
/// dependencies are running is applied (or, when removed from the stack, deleted), up to
/// [`PARALLEL`] at once. When none is left the deployment moves on.
async fn pass<P: Platform>(
    platform: &P,
    deployment_id: &str,
    state: &mut DeploymentState,
    config: &DeploymentConfig,
    lifecycle: Option<Lifecycle>,
) -> Result<Option<u64>, ResourceError> {
    let todo: Vec<String> = resources(state)
        .filter(|(_, r)| r.status.is_in_flight())
        .filter(|(_, r)| lifecycle.is_none_or(|l| r.lifecycle == l))
        .map(|(id, _)| id.clone())
        .collect();
    let (creates, deletes): (Vec<String>, Vec<String>) = todo
        .into_iter()
        .partition(|id| resource(state, id).is_some_and(|r| r.status != ResourceStatus::Deleting));
    if creates.is_empty() && deletes.is_empty() {
        finish(state);
        return Ok(None);
    }
    let mut ready = Vec::new();
    for id in &creates {
        let Some(r) = resource(state, id) else {
            continue;
        };
        let mut blocked = false;
        for dependency in &r.dependencies {
            match resource(state, &dependency.id) {
                Some(d) if d.status == ResourceStatus::Running => {}
                Some(_) => blocked = true,
                None => {
                    return Err(ResourceError::fatal(
                        "RESOURCE_CONFIG_INVALID",
                        format!(
                            "Resource '{id}' depends on {} '{}', which the stack does not have",
                            dependency.kind, dependency.id
                        ),
                    ));
                }
            }
        }
        if !blocked {
            ready.push(id.clone());
        }
    }
    let removing = creates.is_empty();
    if removing {
        // Removed resources go once everything that stays is in place, dependents first.
        ready = deletes
            .iter()
            .filter(|id| !depended_on(state, id))
            .cloned()
            .collect();
    }
    if ready.is_empty() {
        return Err(ResourceError::fatal(
            "RESOURCE_CONFIG_INVALID",
            "The stack's dependencies form a cycle",
        ));
    }
    ready.truncate(PARALLEL);
    let contexts: Vec<ResourceContext> = ready
        .iter()
        .map(|id| context(platform, deployment_id, state, config, id))
        .collect();
    let outcomes: Vec<Result<Applied, ResourceError>> = if removing {
        join_all(
            contexts
                .into_iter()
                .map(|ctx| async { platform.delete(ctx).await.map(|()| Applied::default()) }),
        )
        .await
    } else {
        join_all(contexts.into_iter().map(|ctx| platform.apply(ctx))).await
    };
    let mut delay = None;
    let mut failed: Option<String> = None;
    for (id, outcome) in ready.iter().zip(outcomes) {
        let Some(resource) = resource_mut(state, id) else {
            continue;
        };
        match outcome {
            Ok(applied) if removing => {
                resource.status = ResourceStatus::Deleted;
                let _ = applied;
            }
            Ok(applied) => {
                record(resource, applied);
                resource.status = ResourceStatus::Running;
                resource.retry_attempt = 0;
                resource.error = None;
                resource.previous_config = None;
            }
            Err(error) if error.retryable && resource.retry_attempt + 1 < MAX_ATTEMPTS => {
                resource.retry_attempt += 1;
                resource.error = Some(error.to_json());
                let wait = 1000u64 << (resource.retry_attempt - 1).min(6);
                delay = Some(delay.map_or(wait, |d: u64| d.min(wait)));
            }
            Err(error) => {
                resource.last_failed_state = Some(json!(resource.status));
                resource.status = resource.status.failed_from();
                resource.error = Some(error.to_json());
                failed.get_or_insert_with(|| id.clone());
            }
        }
    }
    if removing && let Some(stack) = &mut state.stack_state {
        stack
            .resources
            .retain(|_, r| r.status != ResourceStatus::Deleted);
    }
    if let Some(failed) = failed {
        interrupt(state, &failed);
        state.status = state.status.failed();
        state.retry_requested = false;
        return Ok(None);
    }
    Ok(delay)
}

/// Every other resource with work in flight stops too, marked as interrupted by `failed`.
fn interrupt(state: &mut DeploymentState, failed: &str) {
    let Some(stack) = &mut state.stack_state else {
        return;
    };
    let failed_type = stack
        .resources
        .get(failed)
        .map(|r| r.kind.clone())
        .unwrap_or_default();
    for (id, resource) in stack.resources.iter_mut() {
        if id != failed
            && resource.status.is_in_flight()
            && resource.status != ResourceStatus::Pending
        {
            resource.last_failed_state = Some(json!(resource.status));
            resource.status = resource.status.failed_from();
            resource.error = Some(json!({
                "code": "DEPLOYMENT_INTERRUPTED",
                "message": format!("Resource was not deployed because resource '{failed}' failed"),
                "retryable": true,
                "internal": false,
                "context": {"failed_resource_id": failed, "failed_resource_type": failed_type},
            }));
        }
    }
}

/// Every resource is in place: on to the next status.
fn finish(state: &mut DeploymentState) {
    match state.status {
        Status::InitialSetup => state.status = Status::Provisioning,
        Status::Provisioning | Status::Updating => {
            state.status = Status::Running;
            if let Some(target) = state.target_release.take() {
                state.current_release = Some(target);
            }
            if let Some(metadata) = &mut state.runtime_metadata
                && let Some(pending) = metadata.remove("pendingPreparedStack")
            {
                metadata.insert("preparedStack".into(), pending);
            }
        }
        _ => {}
    }
}

/// `delete-pending`: every resource is to go.
fn begin_delete(state: &mut DeploymentState) {
    if let Some(stack) = &mut state.stack_state {
        for resource in stack.resources.values_mut() {
            if resource.status != ResourceStatus::Deleted {
                resource.status = ResourceStatus::Deleting;
                resource.error = None;
                resource.retry_attempt = 0;
            }
        }
    }
    state.status = Status::Deleting;
}

/// `deleting`: dependents go first; the deployment is `deleted` when nothing is left. Frozen
/// resources go too: on `local` nothing but this manager created them.
async fn delete_pass<P: Platform>(
    platform: &P,
    deployment_id: &str,
    state: &mut DeploymentState,
    config: &DeploymentConfig,
) -> Result<Option<u64>, ResourceError> {
    let left: Vec<String> = resources(state)
        .filter(|(_, r)| r.status == ResourceStatus::Deleting)
        .map(|(id, _)| id.clone())
        .collect();
    if left.is_empty() {
        platform.forget(deployment_id).await?;
        state.status = Status::Deleted;
        return Ok(None);
    }
    let mut ready: Vec<String> = left
        .iter()
        .filter(|id| !depended_on(state, id))
        .cloned()
        .collect();
    if ready.is_empty() {
        ready = left;
    }
    ready.truncate(PARALLEL);
    let contexts: Vec<ResourceContext> = ready
        .iter()
        .map(|id| context(platform, deployment_id, state, config, id))
        .collect();
    let outcomes = join_all(contexts.into_iter().map(|ctx| platform.delete(ctx))).await;
    let mut delay = None;
    for (id, outcome) in ready.iter().zip(outcomes) {
        let Some(resource) = resource_mut(state, id) else {
            continue;
        };
        match outcome {
            Ok(()) => {
                resource.status = ResourceStatus::Deleted;
                resource.outputs = None;
                resource.internal = None;
            }
            Err(error) if error.retryable && resource.retry_attempt + 1 < MAX_ATTEMPTS => {
                resource.retry_attempt += 1;
                resource.error = Some(error.to_json());
                delay = Some(1000u64 << (resource.retry_attempt - 1).min(6));
            }
            Err(error) => {
                resource.last_failed_state = Some(json!(ResourceStatus::Deleting));
                resource.status = ResourceStatus::DeleteFailed;
                resource.error = Some(error.to_json());
                state.status = Status::DeleteFailed;
                return Ok(None);
            }
        }
    }
    Ok(delay)
}

/// Whether a resource that is not deleted yet depends on `id`.
fn depended_on(state: &DeploymentState, id: &str) -> bool {
    resources(state).any(|(other, r)| {
        other != id
            && r.status != ResourceStatus::Deleted
            && r.dependencies.iter().any(|d| d.id == id)
    })
}

fn resources(state: &DeploymentState) -> impl Iterator<Item = (&String, &ResourceState)> {
    state.stack_state.iter().flat_map(|s| s.resources.iter())
}

fn resource<'a>(state: &'a DeploymentState, id: &str) -> Option<&'a ResourceState> {
    state.stack_state.as_ref()?.resources.get(id)
}

fn resource_mut<'a>(state: &'a mut DeploymentState, id: &str) -> Option<&'a mut ResourceState> {
    state.stack_state.as_mut()?.resources.get_mut(id)
}

fn record(resource: &mut ResourceState, applied: Applied) {
    if applied.outputs.is_some() {
        resource.outputs = applied.outputs;
    }
    if applied.internal.is_some() {
        resource.internal = applied.internal;
    }
}

/// Resource `id` as its driver sees it: its links' bindings and its launch-time secrets.
fn context<P: Platform>(
    platform: &P,
    deployment_id: &str,
    state: &DeploymentState,
    config: &DeploymentConfig,
    id: &str,
) -> ResourceContext {
    let recorded = resource(state, id).cloned();
    let (kind, resource_config) = recorded
        .as_ref()
        .map(|r| (r.kind.clone(), r.config.clone()))
        .unwrap_or_default();
    let mut bindings = BTreeMap::new();
    let links: Vec<crate::state::ResourceRef> = resource_config
        .get("links")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    for link in links {
        if let Some(linked) = resource(state, &link.id)
            && let Some(binding) = platform.binding(deployment_id, &link.id, linked)
        {
            bindings.insert(binding_name(&link.id), binding.to_string());
        }
    }
    let secrets = if matches!(kind.as_str(), "worker" | "container" | "daemon") {
        env::for_resource(deployment_id, config, id, &kind, &resource_config).secrets
    } else {
        BTreeMap::new()
    };
    ResourceContext {
        deployment_id: deployment_id.to_owned(),
        resource_id: id.to_owned(),
        kind,
        config: resource_config,
        recorded,
        bindings,
        secrets,
        deployment: config.clone(),
    }
}

/// `ALIEN_<ID>_BINDING`, the id upper-cased with `-` as `_`.
pub fn binding_name(id: &str) -> String {
    format!("ALIEN_{}_BINDING", id.to_uppercase().replace('-', "_"))
}
