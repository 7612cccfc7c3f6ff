//! `POST /v1/initialize`: how an agent finds, or registers, the deployment it runs for
//! (docs/compatibility.md, Releases, groups and deployments).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::Error;
use crate::auth::{Caller, Scope};
use crate::authz::own_group;
use crate::extract::JsonBody;
use crate::ids;
use crate::lifecycle::creation::deployment_model;
use crate::services::deployments::{insert_deployment_token, stored_model, stored_settings};
use crate::state::AppState;
use crate::store::deployments::{self, Deployment, NewDeployment};
use crate::store::{deployment_groups, releases};
use crate::token::{RawToken, TokenKind};
use crate::wire::Platform;
use crate::wire::initialize::{InitialDesiredRelease, InitializeRequest, InitializeResponse};

pub async fn initialize(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<InitializeRequest>,
) -> Result<(StatusCode, Json<InitializeResponse>), Error> {
    let subject = caller.authenticate(&state.store).await?;
    if let Some(group_id) = own_group(&subject) {
        return register(&state, group_id.to_owned(), request).await;
    }
    let found = match (&subject.scope, subject.role) {
        (Scope::Deployment { deployment_id, .. }, _) => {
            let id = deployment_id.clone();
            state
                .store
                .read({
                    let id = id.clone();
                    move |conn| deployments::get(conn, &id)
                })
                .await?
                .ok_or(Error::DeploymentNotFound { deployment_id: id })?
        }
        (Scope::Workspace, crate::auth::Role::WorkspaceAdmin) => state
            .store
            .read(deployments::newest)
            .await?
            .ok_or_else(|| {
                Error::BadRequest(
                    "No deployments found. Create a deployment before initializing an agent."
                        .into(),
                )
            })?,
        _ => return Err(Error::forbidden("Access denied")),
    };
    Ok((StatusCode::OK, Json(existing(found, None))))
}

/// A deployment-group token registers the agent: its deployment by name, made if new. Every
/// call mints a fresh deployment token, so a reinstalled agent gets credentials again.
async fn register(
    state: &AppState,
    group_id: String,
    request: InitializeRequest,
) -> Result<(StatusCode, Json<InitializeResponse>), Error> {
    let new_id = ids::deployment()?;
    let name = match request.name.filter(|name| !name.is_empty()) {
        Some(name) => name,
        // The public manager's default, characters 3..9 of a deployment id: `agent-_x1y2z`.
        None => format!("agent-{}", new_id.get(3..9).unwrap_or_default()),
    };
    let platform = request.platform.unwrap_or(Platform::Kubernetes);
    if let Some(base) = request.base_platform {
        if platform != Platform::Kubernetes {
            return Err(Error::BadRequest(
                "basePlatform is only supported when platform is kubernetes".into(),
            ));
        }
        if !matches!(base, Platform::Aws | Platform::Gcp | Platform::Azure) {
            return Err(Error::BadRequest(
                "basePlatform for kubernetes must be one of aws, gcp, or azure".into(),
            ));
        }
    }
    let raw = RawToken::generate(TokenKind::Deployment)?;
    let token_id = ids::token()?;
    let (status, found) = state
        .store
        .transaction({
            let raw = raw.clone();
            move |tx| {
                let group = deployment_groups::get(tx, &group_id)?.ok_or(
                    Error::DeploymentGroupNotFound {
                        deployment_group_id: group_id,
                    },
                )?;
                if let Some(id) = deployments::id_by_name(tx, &group.id, &name)? {
                    let found = deployments::get(tx, &id)?
                        .ok_or_else(|| Error::deployment_not_found(&id))?;
                    insert_deployment_token(tx, &token_id, &raw, &group.id, &id)?;
                    return Ok((StatusCode::OK, found));
                }
                let settings = request.stack_settings.unwrap_or_default();
                let model = deployment_model(platform, settings.deployment_model)?;
                let desired_release_id = match request.initial_desired_release {
                    InitialDesiredRelease::Active => releases::latest_id(tx)?,
                    InitialDesiredRelease::None => None,
                };
                let input_values = request
                    .input_values
                    .map(|values| serde_json::to_string(&values))
                    .transpose()?;
                let created = deployments::insert(
                    tx,
                    &NewDeployment {
                        id: &new_id,
                        name: &name,
                        deployment_group_id: &group.id,
                        platform,
                        base_platform: request.base_platform,
                        stack_settings: &stored_settings(settings, model)?,
                        stack_state: None,
                        environment_variables: None,
                        input_values: input_values.as_deref(),
                        desired_release_id: desired_release_id.as_deref(),
                        deployment_token: raw.expose(),
                    },
                )?;
                insert_deployment_token(tx, &token_id, &raw, &group.id, &new_id)?;
                Ok((StatusCode::CREATED, created))
            }
        })
        .await?;
    Ok((status, Json(existing(found, Some(raw)))))
}

fn existing(deployment: Deployment, token: Option<RawToken>) -> InitializeResponse {
    InitializeResponse {
        deployment_model: stored_model(&deployment.stack_settings),
        deployment_id: deployment.id,
        token: token.map(|token| token.expose().to_owned()),
    }
}
