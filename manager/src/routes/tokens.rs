//! Tokens: list and revoke, admin only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::Error;
use crate::auth::Subject;
use crate::authz::{Op, Target, authorize};
use crate::extract::PathParams;
use crate::state::AppState;
use crate::store::tokens;
use crate::wire::tokens::{ListTokensResponse, TokenItem};

pub async fn list(
    State(state): State<AppState>,
    subject: Subject,
) -> Result<Json<ListTokensResponse>, Error> {
    authorize(&subject, Op::ManageTokens, Target::Nothing)?;
    let items = state.store.read(tokens::list).await?;
    Ok(Json(ListTokensResponse {
        items: items
            .into_iter()
            .map(|token| TokenItem {
                id: token.id,
                token_type: token.kind,
                key_prefix: token.key_prefix,
                deployment_group_id: token.deployment_group_id,
                deployment_id: token.deployment_id,
                created_at: token.created_at,
            })
            .collect(),
    }))
}

/// Revokes a token at once: the next request that carries it is refused. Revoking one's own
/// token is allowed, as in the public manager.
pub async fn revoke(
    State(state): State<AppState>,
    subject: Subject,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, Error> {
    authorize(&subject, Op::ManageTokens, Target::Nothing)?;
    let deleted = state
        .store
        .transaction({
            let id = id.clone();
            move |tx| tokens::delete(tx, &id)
        })
        .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::TokenNotFound { token_id: id })
    }
}
