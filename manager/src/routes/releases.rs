//! Releases: created by admins, read by every token, never changed.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::value::RawValue;
use stack::Stack;

use crate::Error;
use crate::auth::{Caller, Subject};
use crate::authz::{Op, Target, authorize};
use crate::extract::{JsonBody, PathParams};
use crate::ids;
use crate::state::AppState;
use crate::store::{deployments, releases};
use crate::wire::releases::{
    CreateReleaseRequest, Empty, GitMetadata, ListReleasesResponse, ReleaseResponse,
    StackByPlatform,
};

/// `latest` as the id of the release that is not there.
const LATEST: &str = "latest";

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateReleaseRequest>,
) -> Result<(StatusCode, Json<ReleaseResponse>), Error> {
    let subject = caller.authenticate(&state.store).await?;
    authorize(&subject, Op::CreateRelease, Target::Nothing)?;
    let present = request.stack.present();
    if present.is_empty() {
        return Err(Error::BadRequest("No platform stack provided".to_owned()));
    }
    // Stored as parsed, defaults filled in: what the engine will deploy, and what the public
    // manager answers.
    let mut parsed = StackByPlatform::default();
    for (platform, raw) in present {
        let stack = Stack::parse(raw.get()).map_err(|reason| {
            Error::BadRequest(format!("Invalid stack format for {platform}: {reason}"))
        })?;
        *parsed.slot_mut(platform) = Some(RawValue::from_string(serde_json::to_string(&stack)?)?);
    }
    let stack = serde_json::to_string(&parsed)?;
    let git = request.git_metadata.unwrap_or_default();
    let id = ids::release()?;
    let (release, retargeted) = state
        .store
        .transaction(move |tx| {
            let release = releases::insert(
                tx,
                &releases::NewRelease {
                    id: &id,
                    project_id: &request.project_id,
                    stack: &stack,
                    git_commit_sha: git.commit_sha.as_deref(),
                    git_commit_ref: git.commit_ref.as_deref(),
                    git_commit_message: git.commit_message.as_deref(),
                },
            )?;
            // In the same transaction: no deployment can miss a release that exists.
            let retargeted = deployments::adopt_release(tx, &release.id)?;
            Ok((release, retargeted))
        })
        .await?;
    state
        .changes
        .all_changed(retargeted.iter().map(String::as_str));
    Ok((StatusCode::CREATED, Json(response(release))))
}

pub async fn list(
    State(state): State<AppState>,
    subject: Subject,
) -> Result<Json<ListReleasesResponse>, Error> {
    authorize(&subject, Op::ReadReleases, Target::Nothing)?;
    let items = state.store.read(releases::list).await?;
    Ok(Json(ListReleasesResponse {
        items: items.into_iter().map(response).collect(),
    }))
}

pub async fn latest(
    State(state): State<AppState>,
    subject: Subject,
) -> Result<Json<ReleaseResponse>, Error> {
    authorize(&subject, Op::ReadReleases, Target::Nothing)?;
    let release = state.store.read(releases::latest).await?;
    release
        .map(|release| Json(response(release)))
        .ok_or_else(|| Error::ReleaseNotFound {
            release_id: LATEST.to_owned(),
        })
}

pub async fn get(
    State(state): State<AppState>,
    subject: Subject,
    PathParams(id): PathParams<String>,
) -> Result<Json<ReleaseResponse>, Error> {
    authorize(&subject, Op::ReadReleases, Target::Nothing)?;
    let release = state
        .store
        .read({
            let id = id.clone();
            move |conn| releases::get(conn, &id)
        })
        .await?;
    release
        .map(|release| Json(response(release)))
        .ok_or(Error::ReleaseNotFound { release_id: id })
}

fn response(release: releases::Release) -> ReleaseResponse {
    let git = GitMetadata {
        commit_sha: release.git_commit_sha,
        commit_ref: release.git_commit_ref,
        commit_message: release.git_commit_message,
    };
    ReleaseResponse {
        id: release.id,
        workspace_id: release.workspace_id,
        project_id: release.project_id,
        stack: release.stack,
        git_metadata: (git != GitMetadata::default()).then_some(git),
        created_at: release.created_at,
        setup_fingerprints: Empty {},
    }
}
