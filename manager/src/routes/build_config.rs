//! Where `alien release` pushes images: the registry routing table's repository prefix for a
//! platform. Some answers are plain text, as in the public manager.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::Error;
use crate::auth::Subject;
use crate::authz::{Op, Target, authorize};
use crate::extract::QueryPairs;
use crate::state::AppState;
use crate::wire::Platform;
use crate::wire::build_config::{BuildConfigResponse, PlatformsResponse};

pub async fn build_config(
    State(state): State<AppState>,
    subject: Subject,
    query: QueryPairs,
) -> Result<Json<BuildConfigResponse>, Error> {
    authorize(&subject, Op::BuildConfig, Target::Nothing)?;
    let repository = match query.first("platform") {
        Some(name) => {
            let platform = Platform::parse(&name.to_ascii_lowercase()).ok_or_else(|| {
                Error::plain(StatusCode::BAD_REQUEST, format!("Unknown platform: {name}"))
            })?;
            state
                .registry
                .routes()
                .repository(platform)
                .ok_or_else(|| {
                    Error::plain(
                        StatusCode::NOT_FOUND,
                        format!("No artifact registry configured for platform '{platform}'"),
                    )
                })?
        }
        None => state.registry.routes().default_repository()?,
    };
    Ok(Json(BuildConfigResponse {
        repository_name: repository.to_owned(),
    }))
}

pub async fn platforms(
    State(state): State<AppState>,
    subject: Subject,
) -> Result<Json<PlatformsResponse>, Error> {
    authorize(&subject, Op::ListPlatforms, Target::Nothing)?;
    Ok(Json(PlatformsResponse {
        platforms: state.registry.routes().cloud_platforms(),
    }))
}
