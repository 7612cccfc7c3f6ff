//! Deployments: create, read, and the lifecycle requests (retry, redeploy, delete) that the
//! deployment engines and agents then act on.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use crate::Error;
use crate::auth::{Caller, Role, Subject, Token};
use crate::authz::{Op, Target, authorize, own_group};
use crate::extract::{JsonBody, PathParams, QueryPairs};
use crate::ids;
use crate::lifecycle::DeploymentStatus;
use crate::lifecycle::creation::{check_resource_prefix, deployment_model};
use crate::services::deployments::{insert_deployment_token, load, load_in, stored_settings};
use crate::state::AppState;
use crate::store::deployments::{self, Deployment, GroupFilter, NewDeployment};
use crate::store::{deployment_groups, releases};
use crate::token::{RawToken, TokenKind};
use crate::wire::deployments::{
    CommandsInfo, CreateDeploymentRequest, CreateDeploymentResponse, DeleteAction,
    DeleteDeploymentRequest, DeleteDeploymentResponse, DeploymentGroupMinimal,
    DeploymentInfoResponse, DeploymentResponse, ListDeploymentsResponse, ResourceEntry,
};
use crate::wire::{SYNTHETIC_PROJECT_ID, SYNTHETIC_WORKSPACE_ID, Success};

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateDeploymentRequest>,
) -> Result<(StatusCode, Json<CreateDeploymentResponse>), Error> {
    let subject = caller.authenticate(&state.store).await?;
    if !matches!(
        subject.role,
        Role::WorkspaceAdmin | Role::DeploymentGroupDeployer
    ) {
        // Refused before any group is looked at, with the role's own reason.
        authorize(&subject, Op::CreateDeployment, Target::Nothing)?;
    }
    // A group's token always creates in its group, whatever the body says.
    let requested_group = match own_group(&subject) {
        Some(own) => Some(own.to_owned()),
        None => request.deployment_group_id.clone(),
    };
    let id = ids::deployment()?;
    let raw = RawToken::generate(TokenKind::Deployment)?;
    let token_id = ids::token()?;
    let (deployment, model) = state
        .store
        .transaction({
            let raw = raw.clone();
            move |tx| {
                let group_id = match requested_group {
                    Some(group_id) => group_id,
                    None => deployment_groups::newest_id(tx)?.ok_or_else(|| {
                        Error::BadRequest("No deployment groups exist. Create one first.".into())
                    })?,
                };
                let group = deployment_groups::get(tx, &group_id)?.ok_or(
                    Error::DeploymentGroupNotFound {
                        deployment_group_id: group_id,
                    },
                )?;
                authorize(&subject, Op::CreateDeployment, Target::Group(&group.id))?;
                if group.deployment_count >= group.max_deployments {
                    return Err(Error::MaxDeploymentsReached {
                        deployment_group_id: group.id,
                        max_deployments: group.max_deployments,
                    });
                }
                let desired_release_id = releases::latest_id(tx)?;
                let stack_state = match &request.resource_prefix {
                    Some(prefix) => {
                        check_resource_prefix(prefix)?;
                        Some(json!({
                            "platform": request.platform,
                            "resources": {},
                            "resourcePrefix": prefix,
                        }))
                    }
                    None => None,
                };
                let settings = request.stack_settings.unwrap_or_default();
                let model = deployment_model(request.platform, settings.deployment_model)?;
                if deployments::id_by_name(tx, &group.id, &request.name)?.is_some() {
                    return Err(Error::DeploymentNameConflict {
                        name: request.name,
                        deployment_group_id: group.id,
                    });
                }
                let deployment = deployments::insert(
                    tx,
                    &NewDeployment {
                        id: &id,
                        name: &request.name,
                        deployment_group_id: &group.id,
                        platform: request.platform,
                        base_platform: None,
                        stack_settings: &stored_settings(settings, model)?,
                        stack_state: stack_state.map(|s| s.to_string()).as_deref(),
                        environment_variables: request
                            .environment_variables
                            .map(|vars| serde_json::to_string(&vars))
                            .transpose()?
                            .as_deref(),
                        input_values: None,
                        desired_release_id: desired_release_id.as_deref(),
                        deployment_token: raw.expose(),
                    },
                )?;
                insert_deployment_token(tx, &token_id, &raw, &group.id, &id)?;
                Ok((deployment, model))
            }
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateDeploymentResponse {
            deployment: response(deployment, false),
            deployment_model: model,
            token: raw.expose().to_owned(),
        }),
    ))
}

/// `deploymentGroupId` is a group's id or, as the CLI sends for `group/name`, its name.
pub async fn list(
    State(state): State<AppState>,
    subject: Subject,
    query: QueryPairs,
) -> Result<Json<ListDeploymentsResponse>, Error> {
    enum Groups {
        All,
        Own(String),
        IdOrName(String),
    }
    let groups = match (own_group(&subject), subject.role) {
        (Some(own), _) => Groups::Own(own.to_owned()),
        (None, Role::WorkspaceAdmin) => match query.first("deploymentGroupId") {
            Some(filter) => Groups::IdOrName(filter.to_owned()),
            None => Groups::All,
        },
        (None, _) => {
            authorize(&subject, Op::ListDeployments, Target::Nothing)?;
            Groups::All
        }
    };
    let name = query.first("name").map(str::to_owned);
    if name.is_some() && matches!(groups, Groups::All) {
        return Err(Error::BadRequest(
            "name filter requires deploymentGroupId unless the token is scoped to a deployment group"
                .into(),
        ));
    }
    let with_group = query
        .all("include")
        .flat_map(|value| value.split(','))
        .any(|value| value == "deploymentGroup");
    let items = state
        .store
        .read(move |conn| {
            let ids = match groups {
                Groups::All => None,
                Groups::Own(id) => Some(vec![id]),
                Groups::IdOrName(filter) => {
                    Some(deployment_groups::ids_by_id_or_name(conn, &filter)?)
                }
            };
            let filter = match &ids {
                Some(ids) => GroupFilter::Groups(ids),
                None => GroupFilter::All,
            };
            deployments::list(conn, filter, name.as_deref())
        })
        .await?;
    Ok(Json(ListDeploymentsResponse {
        items: items.into_iter().map(|d| response(d, with_group)).collect(),
        next_cursor: None,
    }))
}

/// The token is looked up in the same read as the deployment: one trip to the blocking pool
/// instead of two. A bad path still answers after the token, as with a [`Subject`].
pub async fn get(
    State(state): State<AppState>,
    token: Token,
    id: Result<PathParams<String>, Error>,
) -> Result<Json<DeploymentResponse>, Error> {
    let deployment = state
        .store
        .read(move |conn| {
            let subject = token.subject_in(conn)?;
            let PathParams(id) = id?;
            load_in(conn, &subject, &id, Op::ReadDeployment)
        })
        .await?;
    Ok(Json(response(deployment, false)))
}

pub async fn info(
    State(state): State<AppState>,
    subject: Subject,
    PathParams(id): PathParams<String>,
) -> Result<Json<DeploymentInfoResponse>, Error> {
    let deployment = load(&state.store, &subject, id, Op::ReadDeployment).await?;
    let resources = match &deployment.stack_state {
        Some(stack_state) => resource_entries(&serde_json::from_str(stack_state.get())?),
        None => BTreeMap::new(),
    };
    Ok(Json(DeploymentInfoResponse {
        commands: CommandsInfo {
            url: state.base_url.to_string(),
            deployment_id: deployment.id,
        },
        resources,
        status: deployment.status,
        platform: deployment.platform,
        error: deployment.error,
    }))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(request): JsonBody<DeleteDeploymentRequest>,
) -> Result<(StatusCode, Json<DeleteDeploymentResponse>), Error> {
    let subject = caller.authenticate(&state.store).await?;
    let deployment = load(&state.store, &subject, id, Op::DeleteDeployment).await?;
    let changed = deployment.id.clone();
    let action = request.action;
    let message = state
        .store
        .transaction(move |tx| {
            let id = deployment.id;
            match action {
                DeleteAction::Cleanup => {
                    if deployments::request_cleanup(tx, &id)? {
                        return Ok(ACCEPTED);
                    }
                    let status = deployments::status_of(tx, &id)?
                        .ok_or_else(|| Error::deployment_not_found(&id))?;
                    match DeploymentStatus::from_db(&status) {
                        DeploymentStatus::TeardownRequired => {
                            Ok("Runtime cleanup complete; setup teardown required")
                        }
                        DeploymentStatus::TeardownFailed => {
                            Ok("Setup teardown failed; retry setup teardown with setup credentials")
                        }
                        _ => Err(Error::DeploymentAlreadyDeleting {
                            deployment_id: id,
                            status,
                        }),
                    }
                }
                // The row goes; the infrastructure and the tokens stay, as in the public
                // manager, where a detached deployment's token then finds nothing.
                DeleteAction::Detach | DeleteAction::Forget => {
                    if deployments::remove(tx, &id)? {
                        Ok(ACCEPTED)
                    } else {
                        Err(Error::deployment_not_found(&id))
                    }
                }
            }
        })
        .await?;
    state.changes.changed(&changed);
    Ok((
        StatusCode::ACCEPTED,
        Json(DeleteDeploymentResponse { action, message }),
    ))
}

const ACCEPTED: &str = "Deployment deletion accepted";

pub async fn retry(
    State(state): State<AppState>,
    subject: Subject,
    PathParams(id): PathParams<String>,
) -> Result<Json<Success>, Error> {
    let deployment = load(&state.store, &subject, id, Op::RetryDeployment).await?;
    let changed = deployment.id.clone();
    state
        .store
        .transaction(move |tx| {
            let id = deployment.id;
            if deployments::request_retry(tx, &id)? {
                return Ok(());
            }
            let status =
                deployments::status_of(tx, &id)?.ok_or_else(|| Error::deployment_not_found(&id))?;
            Err(Error::BadRequest(format!(
                "Deployment '{id}' is in status '{status}' and cannot be retried"
            )))
        })
        .await?;
    state.changes.changed(&changed);
    Ok(Json(Success::new()))
}

/// Any status may be redeployed but a deletion under way, which the public manager would
/// turn back into an update.
pub async fn redeploy(
    State(state): State<AppState>,
    subject: Subject,
    PathParams(id): PathParams<String>,
) -> Result<Json<Success>, Error> {
    let deployment = load(&state.store, &subject, id, Op::Redeploy).await?;
    let changed = deployment.id.clone();
    state
        .store
        .transaction(move |tx| {
            let id = deployment.id;
            if deployments::request_redeploy(tx, &id)? {
                return Ok(());
            }
            let status =
                deployments::status_of(tx, &id)?.ok_or_else(|| Error::deployment_not_found(&id))?;
            Err(Error::DeploymentAlreadyDeleting {
                deployment_id: id,
                status,
            })
        })
        .await?;
    state.changes.changed(&changed);
    Ok(Json(Success::new()))
}

fn response(deployment: Deployment, with_group: bool) -> DeploymentResponse {
    let deployment_group = match (with_group, deployment.group_name) {
        (true, Some(name)) => Some(DeploymentGroupMinimal {
            id: deployment.deployment_group_id.clone(),
            name,
        }),
        _ => None,
    };
    DeploymentResponse {
        updated_at: deployment
            .updated_at
            .unwrap_or_else(|| deployment.created_at.clone()),
        id: deployment.id,
        name: deployment.name,
        platform: deployment.platform,
        status: deployment.status,
        deployment_group_id: deployment.deployment_group_id,
        deployment_protocol_version: deployment.deployment_protocol_version,
        project_id: SYNTHETIC_PROJECT_ID,
        workspace_id: SYNTHETIC_WORKSPACE_ID,
        stack_settings: deployment.stack_settings,
        stack_state: deployment.stack_state,
        environment_info: deployment.environment_info,
        runtime_metadata: deployment.runtime_metadata,
        current_release_id: deployment.current_release_id,
        desired_release_id: deployment.desired_release_id,
        import_source: deployment.import_source,
        retry_requested: deployment.retry_requested,
        created_at: deployment.created_at,
        error: deployment.error,
        deployment_group,
    }
}

/// The resources of a stack state as `/info` lists them: each with its type, and for the
/// compute resources their public endpoints and the URL a person would open (`api`, else
/// the first endpoint by name).
fn resource_entries(stack_state: &Value) -> BTreeMap<String, ResourceEntry> {
    let Some(resources) = stack_state.get("resources").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    resources
        .iter()
        .map(|(id, resource)| {
            let resource_type = resource
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let public_endpoints: Map<String, Value> =
                if matches!(resource_type.as_str(), "worker" | "container" | "daemon") {
                    resource
                        .pointer("/outputs/publicEndpoints")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default()
                } else {
                    Map::new()
                };
            let public_url = public_endpoints
                .get("api")
                .or_else(|| public_endpoints.values().next())
                .and_then(|endpoint| endpoint.get("url"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            (
                id.clone(),
                ResourceEntry {
                    resource_type,
                    public_url,
                    public_endpoints,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_of_a_stack_state() {
        let endpoint =
            |url: &str| json!({"url": url, "host": "h", "protocol": "https", "port": 443});
        let state = json!({"platform": "aws", "resourcePrefix": "p", "resources": {
            "api": {"type": "worker", "outputs": {"publicEndpoints": {
                "web": endpoint("https://web"), "api": endpoint("https://api")}}},
            "jobs": {"type": "container", "outputs": {"publicEndpoints": {
                "zeta": endpoint("https://zeta"), "alpha": endpoint("https://alpha")}}},
            "files": {"type": "storage", "outputs": {"publicEndpoints": {"x": endpoint("https://x")}}},
            "quiet": {"type": "daemon"},
        }});
        let entries = resource_entries(&state);
        let summary: Vec<(&str, &str, Option<&str>, usize)> = entries
            .iter()
            .map(|(id, e)| {
                (
                    id.as_str(),
                    e.resource_type.as_str(),
                    e.public_url.as_deref(),
                    e.public_endpoints.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("api", "worker", Some("https://api"), 2),
                ("files", "storage", None, 0),
                ("jobs", "container", Some("https://alpha"), 2),
                ("quiet", "daemon", None, 0),
            ]
        );
        let json = serde_json::to_value(&entries["quiet"]).expect("serializes");
        assert_eq!(json, json!({"resourceType": "daemon"}));
        assert!(resource_entries(&json!({})).is_empty());
    }
}
