//! Deployment groups and the tokens that onboard deployments into them.

use axum::Json;
use axum::extract::State;

use crate::Error;
use crate::auth::{Caller, Role, Subject};
use crate::authz::{Op, Target, authorize, own_group};
use crate::extract::{JsonBody, PathParams};
use crate::ids;
use crate::install::script;
use crate::state::AppState;
use crate::store::deployment_groups::{self, DeploymentGroup};
use crate::store::tokens::{self, NewToken};
use crate::token::{RawToken, TokenKind};
use crate::wire::deployment_groups::{
    CreateDeploymentGroupRequest, CreateTokenResponse, DeploymentGroupResponse,
    ListDeploymentGroupsResponse,
};
use crate::wire::{SYNTHETIC_PROJECT_ID, SYNTHETIC_WORKSPACE_ID};

const DEFAULT_MAX_DEPLOYMENTS: i64 = 100;

/// 200, not 201: the CLI's generated client accepts only the documented status.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateDeploymentGroupRequest>,
) -> Result<Json<DeploymentGroupResponse>, Error> {
    let subject = caller.authenticate(&state.store).await?;
    authorize(&subject, Op::CreateDeploymentGroup, Target::Nothing)?;
    let id = ids::deployment_group()?;
    let max = request.max_deployments.unwrap_or(DEFAULT_MAX_DEPLOYMENTS);
    let group = state
        .store
        .transaction(move |tx| deployment_groups::insert(tx, &id, &request.name, max))
        .await?;
    Ok(Json(response(group)))
}

/// Admins see every group, a group's token only its own, a deployment's token none.
pub async fn list(
    State(state): State<AppState>,
    subject: Subject,
) -> Result<Json<ListDeploymentGroupsResponse>, Error> {
    let only = match subject.role {
        Role::WorkspaceAdmin => None,
        Role::DeploymentGroupDeployer => own_group(&subject).map(str::to_owned),
        _ => {
            return Ok(Json(ListDeploymentGroupsResponse {
                items: Vec::new(),
                next_cursor: None,
            }));
        }
    };
    let groups = state
        .store
        .read(move |conn| deployment_groups::list(conn, only.as_deref()))
        .await?;
    Ok(Json(ListDeploymentGroupsResponse {
        items: groups.into_iter().map(response).collect(),
        next_cursor: None,
    }))
}

pub async fn get(
    State(state): State<AppState>,
    subject: Subject,
    PathParams(id): PathParams<String>,
) -> Result<Json<DeploymentGroupResponse>, Error> {
    let group = load(&state, id).await?;
    authorize(&subject, Op::ReadDeploymentGroup, Target::Group(&group.id))?;
    Ok(Json(response(group)))
}

/// A new token per call: each onboarded environment can get its own, revocable alone.
pub async fn create_token(
    State(state): State<AppState>,
    subject: Subject,
    PathParams(id): PathParams<String>,
) -> Result<Json<CreateTokenResponse>, Error> {
    let group = load(&state, id).await?;
    authorize(
        &subject,
        Op::MintDeploymentGroupToken,
        Target::Group(&group.id),
    )?;
    let raw = RawToken::generate(TokenKind::DeploymentGroup)?;
    let token_id = ids::token()?;
    state
        .store
        .transaction({
            let (raw, group_id) = (raw.clone(), group.id.clone());
            move |tx| {
                tokens::insert(
                    tx,
                    &NewToken {
                        id: &token_id,
                        kind: TokenKind::DeploymentGroup,
                        raw: &raw,
                        deployment_group_id: Some(&group_id),
                        deployment_id: None,
                    },
                )
            }
        })
        .await?;
    Ok(Json(CreateTokenResponse {
        install_command: script::install_command(&state.base_url, raw.expose()),
        token: raw.expose().to_owned(),
        deployment_group_id: group.id,
    }))
}

async fn load(state: &AppState, id: String) -> Result<DeploymentGroup, Error> {
    state
        .store
        .read({
            let id = id.clone();
            move |conn| deployment_groups::get(conn, &id)
        })
        .await?
        .ok_or(Error::DeploymentGroupNotFound {
            deployment_group_id: id,
        })
}

fn response(group: DeploymentGroup) -> DeploymentGroupResponse {
    DeploymentGroupResponse {
        id: group.id,
        name: group.name,
        max_deployments: group.max_deployments,
        deployment_count: group.deployment_count,
        created_at: group.created_at,
        project_id: SYNTHETIC_PROJECT_ID,
        workspace_id: SYNTHETIC_WORKSPACE_ID,
    }
}
