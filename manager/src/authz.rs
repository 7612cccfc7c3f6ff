//! Who may do what, as one table: the public manager's standalone policy
//! (docs/compatibility.md, Who may call what). Each operation and role has a [`Rule`], and
//! [`authorize`] applies it to a subject and the record it acts on. Handlers load the record
//! first (404 before 403) and then ask here.

use crate::auth::{Role, Scope, Subject};
use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    ManageTokens,
    CreateRelease,
    ReadReleases,
    BuildConfig,
    ListPlatforms,
    CreateDeploymentGroup,
    ReadDeploymentGroup,
    MintDeploymentGroupToken,
    CreateDeployment,
    ListDeployments,
    ReadDeployment,
    DeleteDeployment,
    RetryDeployment,
    Redeploy,
    WriteVault,
    ReadVault,
    /// Leases, reconcile and the agent sync of one deployment.
    SyncDeployment,
    /// Taking leases without naming the deployments.
    AcquireAny,
    ImportStack,
    UseDeploymentCredentials,
    /// Creating a command, and finishing its params upload.
    DispatchCommand,
    /// A command's status and payload.
    ReadCommand,
    /// Answering a command with a bearer rather than its signed URL.
    RespondToCommand,
    /// Leasing a deployment's commands, and giving a lease back.
    LeaseCommands,
    /// Writing a command's payload documents directly, outside the lifecycle.
    WriteCommandPayload,
    /// `POST /v1/logs`, `/v1/traces`, `/v1/metrics`: a deployment's own telemetry.
    IngestTelemetry,
    /// The telemetry queue's counters (ours).
    ReadTelemetryStatus,
    /// Running the registry's garbage collection (ours).
    CollectRegistryGarbage,
}

/// What a role may do with an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Allow,
    /// Only on the token's own deployment group, or a deployment in it.
    OwnGroup,
    /// Only on the token's own deployment.
    OwnDeployment,
    /// Never, with this reason rather than the operation's.
    Deny(&'static str),
    /// Never, with the operation's reason.
    DenyDefault,
}

/// What an operation acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Nothing,
    Group(&'a str),
    Deployment { id: &'a str, group_id: &'a str },
}

impl Op {
    /// The 403 reason when a rule refuses: the public manager's words, or ours where we could
    /// not learn them (docs/compatibility.md, Other choices of ours).
    pub fn reason(self) -> &'static str {
        match self {
            Op::ManageTokens
            | Op::CreateRelease
            | Op::CreateDeploymentGroup
            | Op::ReadTelemetryStatus
            | Op::CollectRegistryGarbage => "Admin access required",
            Op::BuildConfig => "Build config requires write access",
            Op::ListPlatforms => "Platforms list requires write access",
            Op::ReadDeploymentGroup => "Cannot read deployment group",
            Op::MintDeploymentGroupToken => "Cannot mint tokens for this deployment group",
            Op::CreateDeployment => "Cannot create deployment in this group",
            Op::ListDeployments => "Cannot list deployments",
            Op::DeleteDeployment => "Cannot delete deployment",
            Op::RetryDeployment => "Cannot retry deployment",
            Op::Redeploy => "Cannot redeploy",
            Op::AcquireAny => {
                "Access denied: only workspace-scoped tokens can acquire without an id filter"
            }
            Op::ImportStack => "Stack import requires a deployment-group-scoped token",
            Op::DispatchCommand | Op::ReadCommand => "Access denied",
            Op::RespondToCommand => {
                "Access denied: only the target deployment can submit responses"
            }
            Op::LeaseCommands => "Access denied: can only acquire leases for own deployment",
            Op::WriteCommandPayload => "Workspace-write access required",
            Op::IngestTelemetry => "Cannot ingest this telemetry signal",
            Op::ReadReleases
            | Op::ReadDeployment
            | Op::WriteVault
            | Op::ReadVault
            | Op::SyncDeployment
            | Op::UseDeploymentCredentials => "Access denied",
        }
    }
}

/// The standalone policy: rows are operations, columns the admin, deployment-group and
/// deployment roles. The fallback roles of a token that lost its binding may only read
/// releases.
pub fn rule(op: Op, role: Role) -> Rule {
    use Rule::*;
    let (admin, group, deployment) = match op {
        Op::ManageTokens => (Allow, DenyDefault, DenyDefault),
        Op::CreateRelease => (Allow, DenyDefault, DenyDefault),
        Op::ReadReleases => (Allow, Allow, Allow),
        Op::BuildConfig => (Allow, DenyDefault, DenyDefault),
        Op::ListPlatforms => (Allow, DenyDefault, DenyDefault),
        Op::CreateDeploymentGroup => (Allow, DenyDefault, DenyDefault),
        Op::ReadDeploymentGroup => (Allow, OwnGroup, DenyDefault),
        Op::MintDeploymentGroupToken => (Allow, DenyDefault, DenyDefault),
        Op::CreateDeployment => (
            Allow,
            OwnGroup,
            Deny("Deployment tokens cannot create deployments"),
        ),
        Op::ListDeployments => (
            Allow,
            OwnGroup,
            Deny("Deployment tokens cannot list deployments"),
        ),
        Op::ReadDeployment => (Allow, OwnGroup, OwnDeployment),
        Op::DeleteDeployment => (Allow, DenyDefault, DenyDefault),
        Op::RetryDeployment => (Allow, OwnGroup, OwnDeployment),
        Op::Redeploy => (Allow, OwnGroup, OwnDeployment),
        Op::WriteVault => (Allow, OwnGroup, OwnDeployment),
        Op::ReadVault => (Allow, OwnGroup, OwnDeployment),
        Op::SyncDeployment => (Allow, OwnGroup, OwnDeployment),
        Op::AcquireAny => (Allow, DenyDefault, DenyDefault),
        Op::ImportStack => (DenyDefault, Allow, DenyDefault),
        Op::UseDeploymentCredentials => (Allow, OwnGroup, OwnDeployment),
        Op::DispatchCommand => (Allow, OwnGroup, DenyDefault),
        Op::ReadCommand => (Allow, OwnGroup, OwnDeployment),
        Op::RespondToCommand => (Allow, OwnGroup, OwnDeployment),
        Op::LeaseCommands => (Allow, OwnGroup, OwnDeployment),
        Op::WriteCommandPayload => (Allow, DenyDefault, DenyDefault),
        // The deployment is the token's own: a token speaks only for its deployment.
        Op::IngestTelemetry => (DenyDefault, DenyDefault, Allow),
        Op::ReadTelemetryStatus => (Allow, DenyDefault, DenyDefault),
        Op::CollectRegistryGarbage => (Allow, DenyDefault, DenyDefault),
    };
    match role {
        Role::WorkspaceAdmin => admin,
        Role::DeploymentGroupDeployer => group,
        Role::DeploymentManager => deployment,
        Role::WorkspaceMember | Role::DeploymentViewer => match op {
            Op::ReadReleases => Allow,
            _ => DenyDefault,
        },
    }
}

/// Whether `subject` may do `op` on `target`; 403 with the rule's reason if not.
pub fn authorize(subject: &Subject, op: Op, target: Target<'_>) -> Result<(), Error> {
    let allowed = match rule(op, subject.role) {
        Rule::Allow => true,
        Rule::OwnGroup => match (&subject.scope, target) {
            (
                Scope::DeploymentGroup {
                    deployment_group_id,
                    ..
                },
                Target::Group(group_id) | Target::Deployment { group_id, .. },
            ) => deployment_group_id == group_id,
            _ => false,
        },
        Rule::OwnDeployment => match (&subject.scope, target) {
            (Scope::Deployment { deployment_id, .. }, Target::Deployment { id, .. }) => {
                deployment_id == id
            }
            _ => false,
        },
        Rule::Deny(reason) => return Err(Error::forbidden(reason)),
        Rule::DenyDefault => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::forbidden(op.reason()))
    }
}

/// The deployment group a deployment-group token is bound to, which its lists are limited
/// to and its creations forced into.
pub fn own_group(subject: &Subject) -> Option<&str> {
    match &subject.scope {
        Scope::DeploymentGroup {
            deployment_group_id,
            ..
        } => Some(deployment_group_id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Subject {
        Subject {
            token_id: "tok_a".into(),
            role: Role::WorkspaceAdmin,
            scope: Scope::Workspace,
        }
    }

    fn group(id: &str) -> Subject {
        Subject {
            token_id: "tok_g".into(),
            role: Role::DeploymentGroupDeployer,
            scope: Scope::DeploymentGroup {
                project_id: "default".into(),
                deployment_group_id: id.into(),
            },
        }
    }

    fn deployment(id: &str) -> Subject {
        Subject {
            token_id: "tok_d".into(),
            role: Role::DeploymentManager,
            scope: Scope::Deployment {
                project_id: "default".into(),
                deployment_id: id.into(),
            },
        }
    }

    fn member() -> Subject {
        Subject {
            token_id: "tok_m".into(),
            role: Role::WorkspaceMember,
            scope: Scope::Workspace,
        }
    }

    const DEP_IN_G1: Target<'static> = Target::Deployment {
        id: "dep_1",
        group_id: "dg_1",
    };

    #[test]
    fn the_matrix_of_the_standalone_policy() {
        use Op::*;
        // (operation, target, admin, own group's token, other group's token, own deployment's
        // token, other deployment's token); Ok(()) or the 403 reason.
        type Row = (
            Op,
            Target<'static>,
            Result<(), &'static str>,
            Result<(), &'static str>,
            Result<(), &'static str>,
            Result<(), &'static str>,
            Result<(), &'static str>,
        );
        const ADMIN: Result<(), &str> = Err("Admin access required");
        const DENIED: Result<(), &str> = Err("Access denied");
        let g1 = Target::Group("dg_1");
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            (ManageTokens, Target::Nothing, Ok(()), ADMIN, ADMIN, ADMIN, ADMIN),
            (CreateRelease, Target::Nothing, Ok(()), ADMIN, ADMIN, ADMIN, ADMIN),
            (ReadReleases, Target::Nothing, Ok(()), Ok(()), Ok(()), Ok(()), Ok(())),
            (BuildConfig, Target::Nothing, Ok(()),
                Err("Build config requires write access"), Err("Build config requires write access"),
                Err("Build config requires write access"), Err("Build config requires write access")),
            (ListPlatforms, Target::Nothing, Ok(()),
                Err("Platforms list requires write access"), Err("Platforms list requires write access"),
                Err("Platforms list requires write access"), Err("Platforms list requires write access")),
            (CreateDeploymentGroup, Target::Nothing, Ok(()), ADMIN, ADMIN, ADMIN, ADMIN),
            (ReadDeploymentGroup, g1, Ok(()), Ok(()), Err("Cannot read deployment group"),
                Err("Cannot read deployment group"), Err("Cannot read deployment group")),
            (MintDeploymentGroupToken, g1, Ok(()),
                Err("Cannot mint tokens for this deployment group"), Err("Cannot mint tokens for this deployment group"),
                Err("Cannot mint tokens for this deployment group"), Err("Cannot mint tokens for this deployment group")),
            (CreateDeployment, g1, Ok(()), Ok(()), Err("Cannot create deployment in this group"),
                Err("Deployment tokens cannot create deployments"), Err("Deployment tokens cannot create deployments")),
            (ListDeployments, g1, Ok(()), Ok(()), Err("Cannot list deployments"),
                Err("Deployment tokens cannot list deployments"), Err("Deployment tokens cannot list deployments")),
            (ReadDeployment, DEP_IN_G1, Ok(()), Ok(()), DENIED, Ok(()), DENIED),
            (DeleteDeployment, DEP_IN_G1, Ok(()), Err("Cannot delete deployment"), Err("Cannot delete deployment"),
                Err("Cannot delete deployment"), Err("Cannot delete deployment")),
            (RetryDeployment, DEP_IN_G1, Ok(()), Ok(()), Err("Cannot retry deployment"),
                Ok(()), Err("Cannot retry deployment")),
            (Redeploy, DEP_IN_G1, Ok(()), Ok(()), Err("Cannot redeploy"), Ok(()), Err("Cannot redeploy")),
            (WriteVault, DEP_IN_G1, Ok(()), Ok(()), DENIED, Ok(()), DENIED),
            (ReadVault, DEP_IN_G1, Ok(()), Ok(()), DENIED, Ok(()), DENIED),
            (SyncDeployment, DEP_IN_G1, Ok(()), Ok(()), DENIED, Ok(()), DENIED),
            (DispatchCommand, DEP_IN_G1, Ok(()), Ok(()), DENIED, DENIED, DENIED),
            (ReadCommand, DEP_IN_G1, Ok(()), Ok(()), DENIED, Ok(()), DENIED),
            (RespondToCommand, DEP_IN_G1, Ok(()), Ok(()),
                Err("Access denied: only the target deployment can submit responses"), Ok(()),
                Err("Access denied: only the target deployment can submit responses")),
            (LeaseCommands, DEP_IN_G1, Ok(()), Ok(()),
                Err("Access denied: can only acquire leases for own deployment"), Ok(()),
                Err("Access denied: can only acquire leases for own deployment")),
            (WriteCommandPayload, Target::Nothing, Ok(()),
                Err("Workspace-write access required"), Err("Workspace-write access required"),
                Err("Workspace-write access required"), Err("Workspace-write access required")),
            (AcquireAny, Target::Nothing, Ok(()),
                Err("Access denied: only workspace-scoped tokens can acquire without an id filter"),
                Err("Access denied: only workspace-scoped tokens can acquire without an id filter"),
                Err("Access denied: only workspace-scoped tokens can acquire without an id filter"),
                Err("Access denied: only workspace-scoped tokens can acquire without an id filter")),
            (ImportStack, Target::Nothing, Err("Stack import requires a deployment-group-scoped token"),
                Ok(()), Ok(()),
                Err("Stack import requires a deployment-group-scoped token"),
                Err("Stack import requires a deployment-group-scoped token")),
            (UseDeploymentCredentials, DEP_IN_G1, Ok(()), Ok(()), DENIED, Ok(()), DENIED),
            (CollectRegistryGarbage, Target::Nothing, Ok(()), ADMIN, ADMIN, ADMIN, ADMIN),
            (IngestTelemetry, Target::Nothing, Err("Cannot ingest this telemetry signal"),
                Err("Cannot ingest this telemetry signal"), Err("Cannot ingest this telemetry signal"),
                Ok(()), Ok(())),
            (ReadTelemetryStatus, Target::Nothing, Ok(()), ADMIN, ADMIN, ADMIN, ADMIN),
        ];
        for (op, target, expected_admin, own_group, other_group, own_dep, other_dep) in rows {
            let subjects = [
                (admin(), expected_admin),
                (group("dg_1"), own_group),
                (group("dg_2"), other_group),
                (deployment("dep_1"), own_dep),
                (deployment("dep_2"), other_dep),
            ];
            for (subject, expected) in subjects {
                let got = authorize(&subject, op, target).map_err(|e| match e {
                    Error::Forbidden(reason) => reason.into_owned(),
                    other => panic!("{op:?}: unexpected {other:?}"),
                });
                assert_eq!(
                    got,
                    expected.map_err(str::to_owned),
                    "{op:?} on {target:?} by {subject:?}"
                );
            }
        }
    }

    #[test]
    fn tokens_without_a_binding_may_only_read_releases() {
        assert_eq!(
            authorize(&member(), Op::ReadReleases, Target::Nothing).ok(),
            Some(())
        );
        for op in [
            Op::ReadDeployment,
            Op::ListDeployments,
            Op::SyncDeployment,
            Op::ManageTokens,
        ] {
            assert!(authorize(&member(), op, DEP_IN_G1).is_err(), "{op:?}");
        }
    }

    #[test]
    fn only_group_tokens_have_an_own_group() {
        assert_eq!(own_group(&group("dg_1")), Some("dg_1"));
        assert_eq!(own_group(&admin()), None);
        assert_eq!(own_group(&deployment("dep_1")), None);
    }
}
