//! `GET /v1/whoami`: the caller as the platform SDK's `Subject`.

use axum::Json;
use serde::Serialize;

use crate::DEFAULT_WORKSPACE;
use crate::auth::{Role, Scope, Subject};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    kind: &'static str,
    id: String,
    workspace_id: &'static str,
    workspace_name: &'static str,
    role: Role,
    scope: Scope,
}

impl From<Subject> for WhoAmI {
    fn from(subject: Subject) -> Self {
        WhoAmI {
            kind: "serviceAccount",
            id: subject.token_id,
            workspace_id: DEFAULT_WORKSPACE,
            workspace_name: DEFAULT_WORKSPACE,
            role: subject.role,
            scope: subject.scope,
        }
    }
}

pub async fn whoami(subject: Subject) -> Json<WhoAmI> {
    Json(subject.into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::authenticate;
    use crate::ids;
    use crate::store::Store;
    use crate::store::tokens::{self, NewToken};
    use crate::token::{RawToken, TokenKind};

    #[tokio::test]
    async fn each_token_kind_has_its_wire_shape() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("manager.db"))
            .await
            .expect("open");
        let cases = [
            (
                TokenKind::Admin,
                None,
                None,
                json!({"role": "workspace.admin", "scope": {"type": "workspace"}}),
            ),
            (
                TokenKind::DeploymentGroup,
                Some("dg_1"),
                None,
                json!({
                    "role": "deployment-group.deployer",
                    "scope": {"type": "deployment-group", "projectId": "default", "deploymentGroupId": "dg_1"}
                }),
            ),
            (
                TokenKind::Deployment,
                Some("dg_1"),
                Some("dep_1"),
                json!({
                    "role": "deployment.manager",
                    "scope": {"type": "deployment", "projectId": "default", "deploymentId": "dep_1"}
                }),
            ),
        ];
        for (kind, group, deployment, expected) in cases {
            let raw = RawToken::generate(kind).expect("random");
            let id = ids::token().expect("random");
            store
                .write({
                    let (raw, id) = (raw.clone(), id.clone());
                    move |conn| {
                        tokens::insert(
                            conn,
                            &NewToken {
                                id: &id,
                                kind,
                                raw: &raw,
                                deployment_group_id: group,
                                deployment_id: deployment,
                            },
                        )
                    }
                })
                .await
                .expect("insert");
            let subject = authenticate(&store, raw.expose().to_owned())
                .await
                .expect("authenticated");
            let got = serde_json::to_value(WhoAmI::from(subject)).expect("serializes");
            let mut want = json!({
                "kind": "serviceAccount",
                "id": id,
                "workspaceId": "default",
                "workspaceName": "default",
            });
            want.as_object_mut()
                .expect("object")
                .extend(expected.as_object().expect("object").clone());
            assert_eq!(got, want, "{kind:?}");
        }
    }
}
