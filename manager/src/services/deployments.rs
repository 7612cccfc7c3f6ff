//! What more than one route does with a deployment: load it for a caller (404, then 403),
//! and read or write its settings and token as they are stored.

use rusqlite::Connection;

use crate::Error;
use crate::auth::Subject;
use crate::authz::{Op, Target, authorize};
use crate::store::Store;
use crate::store::deployments::{self, Deployment};
use crate::store::tokens::{self, NewToken};
use crate::token::{RawToken, TokenKind};
use crate::wire::DeploymentModel;
use crate::wire::deployments::StackSettings;

/// The deployment `id`, if it exists (404) and `subject` may do `op` with it (403).
pub async fn load(
    store: &Store,
    subject: &Subject,
    id: String,
    op: Op,
) -> Result<Deployment, Error> {
    let subject = subject.clone();
    store
        .read(move |conn| load_in(conn, &subject, &id, op))
        .await
}

/// [`load`] inside a call that already holds a connection.
pub fn load_in(
    conn: &Connection,
    subject: &Subject,
    id: &str,
    op: Op,
) -> Result<Deployment, Error> {
    let deployment = deployments::get(conn, id)?.ok_or_else(|| Error::deployment_not_found(id))?;
    let target = Target::Deployment {
        id: &deployment.id,
        group_id: &deployment.deployment_group_id,
    };
    authorize(subject, op, target)?;
    Ok(deployment)
}

/// Settings as stored: push, the default, is left out.
pub fn stored_settings(
    mut settings: StackSettings,
    model: DeploymentModel,
) -> Result<String, Error> {
    settings.deployment_model = (model == DeploymentModel::Pull).then_some(model);
    Ok(serde_json::to_string(&settings)?)
}

/// The model stored settings say: push unless they say pull.
pub fn stored_model(settings: &serde_json::value::RawValue) -> DeploymentModel {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Model {
        deployment_model: Option<DeploymentModel>,
    }
    serde_json::from_str::<Model>(settings.get())
        .ok()
        .and_then(|settings| settings.deployment_model)
        .unwrap_or_default()
}

/// Stores the hash of a deployment's token, bound to the deployment and its group.
pub fn insert_deployment_token(
    conn: &Connection,
    token_id: &str,
    raw: &RawToken,
    group_id: &str,
    deployment_id: &str,
) -> Result<(), Error> {
    tokens::insert(
        conn,
        &NewToken {
            id: token_id,
            kind: TokenKind::Deployment,
            raw,
            deployment_group_id: Some(group_id),
            deployment_id: Some(deployment_id),
        },
    )
}
