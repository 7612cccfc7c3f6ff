//! Calls that need cloud providers this manager does not have: stack import, credential
//! minting, binding resolution and the vault. Each checks what it can without a cloud (body,
//! token, deployment, permissions, preconditions) in the public manager's order, and then
//! answers a 400 naming the platform, never a 500 (docs/compatibility.md, Calls that need a
//! cloud).

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use crate::Error;
use crate::auth::{Caller, Subject};
use crate::authz::{Op, Target, authorize};
use crate::extract::{JsonBody, PathParams};
use crate::lifecycle::creation::check_resource_prefix;
use crate::services::deployments::load;
use crate::state::AppState;
use crate::store::releases;
use crate::wire::unsupported::{
    MintCredentialsRequest, ResolveBindingRequest, StackImportRequest, VaultSecretRequest,
};

/// The setup import formats this manager reads.
const IMPORT_FORMATS: std::ops::RangeInclusive<u64> = 1..=1;

/// Checked before the token, as in the public manager: a setup package from an incompatible
/// CLI is told so whoever runs it.
pub async fn stack_import(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, Error> {
    let version = body
        .get("setupImportFormatVersion")
        .cloned()
        .unwrap_or(Value::Null);
    if !version
        .as_u64()
        .is_some_and(|v| IMPORT_FORMATS.contains(&v))
    {
        return Err(Error::IncompatibleSetupImport {
            found: version,
            minimum: *IMPORT_FORMATS.start(),
            current: *IMPORT_FORMATS.end(),
        });
    }
    let request: StackImportRequest = serde_path_to_error::deserialize(body).map_err(|e| {
        Error::BadRequest(format!(
            "Invalid stack import payload: {}: {}",
            e.path(),
            e.inner()
        ))
    })?;
    let subject = caller.authenticate(&state.store).await?;
    authorize(&subject, Op::ImportStack, Target::Nothing)?;
    if request.resources.is_empty() {
        return Err(Error::BadRequest(
            "Stack import requires at least one resource".into(),
        ));
    }
    if request.deployment_name.trim().is_empty() {
        return Err(Error::BadRequest("deploymentName must not be empty".into()));
    }
    check_resource_prefix(&request.resource_prefix)?;
    Err(unsupported("Stack import", request.platform.as_str()))
}

pub async fn mint_credentials(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<MintCredentialsRequest>,
) -> Result<Json<Value>, Error> {
    let subject = caller.authenticate(&state.store).await?;
    let deployment = load(
        &state.store,
        &subject,
        request.deployment_id,
        Op::UseDeploymentCredentials,
    )
    .await?;
    for (field, value) in [
        ("resourceId", &request.resource_id),
        ("bindingName", &request.binding_name),
    ] {
        if !is_principal_name(value) {
            return Err(Error::BadRequest(format!(
                "{field} may only contain letters, digits and _+=,.@-"
            )));
        }
    }
    let release_id = deployment.current_release_id.ok_or_else(|| {
        Error::BadRequest(format!(
            "Deployment '{}' has no current release",
            deployment.id
        ))
    })?;
    let resource_type = release_stack(&state, release_id, &deployment.platform)
        .await?
        .and_then(|stack| {
            stack
                .pointer(&format!(
                    "/resources/{}/config/type",
                    pointer_token(&request.resource_id)
                ))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "Resource '{}' is not part of the deployment's current release",
                request.resource_id
            ))
        })?;
    if !matches!(resource_type.as_str(), "worker" | "container" | "daemon") {
        return Err(Error::BadRequest(format!(
            "Resource '{}' is a {resource_type}; credentials are minted only for workers, containers and daemons",
            request.resource_id
        )));
    }
    Err(unsupported("Credential minting", &deployment.platform))
}

pub async fn resolve_binding(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<ResolveBindingRequest>,
) -> Result<Json<Value>, Error> {
    let subject = caller.authenticate(&state.store).await?;
    let deployment = load(
        &state.store,
        &subject,
        request.deployment_id,
        Op::UseDeploymentCredentials,
    )
    .await?;
    if request.resource_id.is_some() == request.kind.is_some() {
        return Err(Error::BadRequest(
            "Exactly one of resourceId and kind must be given".into(),
        ));
    }
    Err(unsupported("Binding resolution", &deployment.platform))
}

pub async fn vault_put(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, vault, _key)): PathParams<(String, String, String)>,
    JsonBody(_): JsonBody<VaultSecretRequest>,
) -> Result<Json<Value>, Error> {
    let subject = caller.authenticate(&state.store).await?;
    vault_secret(&state, &subject, id, &vault, Op::WriteVault).await
}

pub async fn vault_get(
    State(state): State<AppState>,
    subject: Subject,
    PathParams((id, vault, _key)): PathParams<(String, String, String)>,
) -> Result<Json<Value>, Error> {
    vault_secret(&state, &subject, id, &vault, Op::ReadVault).await
}

async fn vault_secret(
    state: &AppState,
    subject: &Subject,
    id: String,
    vault: &str,
    op: Op,
) -> Result<Json<Value>, Error> {
    let deployment = load(&state.store, subject, id, op).await?;
    // The built-in `secrets` vault needs no grant; any other one the release must grant to
    // the management identity.
    if vault != "secrets" {
        let permission = match op {
            Op::WriteVault => "vault/data-write",
            _ => "vault/data-read",
        };
        let release_id = deployment
            .desired_release_id
            .clone()
            .or_else(|| deployment.current_release_id.clone())
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "Deployment {} has no release attached",
                    deployment.id
                ))
            })?;
        let stack = release_stack(state, release_id, &deployment.platform).await?;
        if !stack.is_some_and(|stack| management_grants(&stack, permission, vault)) {
            return Err(Error::Forbidden(
                format!(
                    "Management identity is not allowed to use {permission} on vault '{vault}'"
                )
                .into(),
            ));
        }
    }
    if deployment.stack_state.is_none() {
        return Err(Error::BadRequest(
            "Deployment has no stack state (not yet provisioned)".into(),
        ));
    }
    Err(unsupported("Vault API", &deployment.platform))
}

/// A release's stack for `platform`, if the release has one.
async fn release_stack(
    state: &AppState,
    release_id: String,
    platform: &str,
) -> Result<Option<Value>, Error> {
    let platform = platform.to_owned();
    let stack = state
        .store
        .read(move |conn| releases::platform_stack(conn, &release_id, &platform))
        .await?
        .flatten();
    Ok(stack
        .map(|stack| serde_json::from_str(stack.get()))
        .transpose()?)
}

fn unsupported(what: &str, platform: &str) -> Error {
    Error::BadRequest(format!("{what} not supported for platform: {platform}"))
}

/// `[A-Za-z0-9_+=,.@-]*`, the characters cloud IAM accepts in principal names.
fn is_principal_name(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// `value` escaped as one JSON pointer token.
fn pointer_token(value: &str) -> String {
    value.replace('~', "~0").replace('/', "~1")
}

/// Whether the stack's management permissions (`extend` or `override`; `auto` grants
/// nothing here) give `permission` on every resource (`*`) or on `vault`.
fn management_grants(stack: &Value, permission: &str, vault: &str) -> bool {
    let Some(management) = stack.pointer("/permissions/management") else {
        return false;
    };
    let Some(profile) = management
        .get("extend")
        .or_else(|| management.get("override"))
    else {
        return false;
    };
    ["*", vault]
        .into_iter()
        .filter_map(|scope| profile.get(scope).and_then(Value::as_array))
        .flatten()
        .any(|set| match set {
            Value::String(id) => id == permission,
            other => other.get("id").and_then(Value::as_str) == Some(permission),
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn management_grants_from_stacks() {
        let stack =
            |management: Value| json!({"resources": {}, "permissions": {"management": management}});
        // (management permissions, permission, vault, granted)
        let cases = [
            (json!("auto"), "vault/data-read", "keys", false),
            (
                json!({"extend": {"*": ["vault/data-read"]}}),
                "vault/data-read",
                "keys",
                true,
            ),
            (
                json!({"extend": {"*": ["vault/data-read"]}}),
                "vault/data-write",
                "keys",
                false,
            ),
            (
                json!({"override": {"keys": ["vault/data-write"]}}),
                "vault/data-write",
                "keys",
                true,
            ),
            (
                json!({"override": {"keys": ["vault/data-write"]}}),
                "vault/data-write",
                "other",
                false,
            ),
            (
                json!({"extend": {"keys": [{"id": "vault/data-read"}]}}),
                "vault/data-read",
                "keys",
                true,
            ),
            (
                json!({"extend": {"keys": "vault/data-read"}}),
                "vault/data-read",
                "keys",
                false,
            ),
        ];
        for (management, permission, vault, granted) in cases {
            assert_eq!(
                management_grants(&stack(management.clone()), permission, vault),
                granted,
                "{management} {permission} {vault}"
            );
        }
        assert!(!management_grants(
            &json!({"resources": {}}),
            "vault/data-read",
            "keys"
        ));
    }

    #[test]
    fn principal_names() {
        for (name, valid) in [
            ("api-sa", true),
            ("a_b+c=d,e.f@g", true),
            ("", true),
            ("a b", false),
            ("a/b", false),
            ("é", false),
        ] {
            assert_eq!(is_principal_name(name), valid, "{name}");
        }
        assert_eq!(pointer_token("a/b~c"), "a~1b~0c");
    }
}
