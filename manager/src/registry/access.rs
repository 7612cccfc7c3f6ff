//! Who may do what through `/v2` (docs/compatibility.md, Registry proxy), as two tables: what
//! a request needs ([`need`]), and what each role may do ([`verdict`]). The proxy asks here
//! after it has routed the repository to registryd, so "a repository" below is always one of
//! the embedded registry's (under `artifacts/default`).
//!
//! - The admin may do anything.
//! - A deployment-group token pushes, and reads in the repositories it pushes to: all of the
//!   embedded registry's, the one project's, which is all of its groups'. The public manager
//!   refuses it any read, which breaks clients that check with `HEAD` for layers a registry
//!   already has before they push.
//! - A deployment token reads the repositories the release the manager assigned it
//!   references (`super::pulls`), and nothing else.
//! - Deleting manifests and blobs, and listing every repository, are the admin's.
//! - A token that lost its binding does nothing here, as it does nothing but read releases
//!   elsewhere.

use http::Method;

use super::path::{Endpoint, Resource};
use crate::auth::{Role, Scope, Subject};

/// What a request asks of a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// The version check: any valid token.
    Nothing,
    /// Reading: manifests, blobs, tags, referrers.
    Pull(&'a str),
    /// Writing: uploads (their status and cancelling them too) and manifests.
    Push(&'a str),
    /// Deleting manifests or blobs.
    Delete(&'a str),
    /// Listing every repository.
    Catalog,
}

/// What `method` on `endpoint` needs. An endpoint registryd does not serve needs what its
/// method would anywhere (registryd then answers it).
pub fn need<'a>(method: &Method, endpoint: Endpoint<'a>) -> Need<'a> {
    let name = match endpoint {
        Endpoint::Base => return Need::Nothing,
        Endpoint::Catalog => return Need::Catalog,
        Endpoint::Unknown => "",
        Endpoint::In(name, Resource::Upload(_) | Resource::UploadStart) => {
            return Need::Push(name);
        }
        Endpoint::In(name, _) => name,
    };
    match *method {
        Method::GET | Method::HEAD => Need::Pull(name),
        Method::DELETE => Need::Delete(name),
        _ => Need::Push(name),
    }
}

pub const PUSH_DENIED: &str = "Caller cannot push images to this project.";
pub const DELETE_DENIED: &str = "Only an admin token may delete from the registry";
pub const CATALOG_DENIED: &str = "Only an admin token may list the registry's repositories";
pub const NO_BINDING: &str = "Access denied";

/// Whether a subject may do what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    Allow,
    /// Only if the deployment's release references the repository.
    IfReleaseReferences {
        deployment_id: &'a str,
        repository: &'a str,
    },
    /// Never; 403 `DENIED` with this reason.
    Deny(&'static str),
}

pub fn verdict<'a>(subject: &'a Subject, need: Need<'a>) -> Verdict<'a> {
    use Verdict::*;
    match (subject.role, &subject.scope, need) {
        (_, _, Need::Nothing) => Allow,
        (Role::WorkspaceAdmin, _, _) => Allow,
        (Role::DeploymentGroupDeployer, _, Need::Pull(_) | Need::Push(_)) => Allow,
        (
            Role::DeploymentManager,
            Scope::Deployment { deployment_id, .. },
            Need::Pull(repository),
        ) => IfReleaseReferences {
            deployment_id,
            repository,
        },
        (Role::WorkspaceMember | Role::DeploymentViewer, _, _) => Deny(NO_BINDING),
        (_, _, Need::Push(_)) => Deny(PUSH_DENIED),
        (_, _, Need::Delete(_)) => Deny(DELETE_DENIED),
        (_, _, Need::Catalog) => Deny(CATALOG_DENIED),
        (_, _, Need::Pull(_)) => Deny(NO_BINDING),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(role: Role, scope: Scope) -> Subject {
        Subject {
            token_id: "tok_x".into(),
            role,
            scope,
        }
    }

    #[test]
    fn requests_need_what_their_method_and_endpoint_say() {
        let d = "sha256:ab";
        let blob = format!("/v2/r/blobs/{d}");
        let cases: Vec<(Method, &str, Need<'_>)> = vec![
            (Method::GET, "/v2/", Need::Nothing),
            (Method::GET, "/v2/_catalog", Need::Catalog),
            (Method::GET, "/v2/r/manifests/v1", Need::Pull("r")),
            (Method::HEAD, "/v2/r/manifests/v1", Need::Pull("r")),
            (Method::GET, &blob, Need::Pull("r")),
            (Method::HEAD, &blob, Need::Pull("r")),
            (Method::GET, "/v2/r/tags/list", Need::Pull("r")),
            (Method::GET, "/v2/r/referrers/sha256:ab", Need::Pull("r")),
            (Method::POST, "/v2/r/blobs/uploads/", Need::Push("r")),
            (Method::PATCH, "/v2/r/blobs/uploads/id", Need::Push("r")),
            (Method::PUT, "/v2/r/blobs/uploads/id", Need::Push("r")),
            (Method::GET, "/v2/r/blobs/uploads/id", Need::Push("r")),
            (Method::DELETE, "/v2/r/blobs/uploads/id", Need::Push("r")),
            (Method::PUT, "/v2/r/manifests/v1", Need::Push("r")),
            (Method::DELETE, "/v2/r/manifests/v1", Need::Delete("r")),
            (Method::DELETE, &blob, Need::Delete("r")),
            (Method::POST, "/v2/r/manifests/v1", Need::Push("r")),
            (Method::GET, "/v2/r/nothing", Need::Pull("")),
        ];
        for (method, path, want) in cases {
            assert_eq!(
                need(&method, Endpoint::parse(path)),
                want,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn each_role_may_do_its_share() {
        let admin = subject(Role::WorkspaceAdmin, Scope::Workspace);
        let group = subject(
            Role::DeploymentGroupDeployer,
            Scope::DeploymentGroup {
                project_id: "default".into(),
                deployment_group_id: "dg_1".into(),
            },
        );
        let deployment = subject(
            Role::DeploymentManager,
            Scope::Deployment {
                project_id: "default".into(),
                deployment_id: "dep_1".into(),
            },
        );
        let member = subject(Role::WorkspaceMember, Scope::Workspace);
        let viewer = subject(Role::DeploymentViewer, Scope::Workspace);
        let repo = "artifacts/default/app";
        let if_referenced = Verdict::IfReleaseReferences {
            deployment_id: "dep_1",
            repository: repo,
        };
        let denied = Verdict::Deny;
        // (need, admin, group, deployment, member, viewer)
        let rows: Vec<(Need<'_>, [Verdict<'_>; 5])> = vec![
            (
                Need::Nothing,
                [
                    Verdict::Allow,
                    Verdict::Allow,
                    Verdict::Allow,
                    Verdict::Allow,
                    Verdict::Allow,
                ],
            ),
            (
                Need::Pull(repo),
                [
                    Verdict::Allow,
                    Verdict::Allow,
                    if_referenced,
                    denied(NO_BINDING),
                    denied(NO_BINDING),
                ],
            ),
            (
                Need::Push(repo),
                [
                    Verdict::Allow,
                    Verdict::Allow,
                    denied(PUSH_DENIED),
                    denied(NO_BINDING),
                    denied(NO_BINDING),
                ],
            ),
            (
                Need::Delete(repo),
                [
                    Verdict::Allow,
                    denied(DELETE_DENIED),
                    denied(DELETE_DENIED),
                    denied(NO_BINDING),
                    denied(NO_BINDING),
                ],
            ),
            (
                Need::Catalog,
                [
                    Verdict::Allow,
                    denied(CATALOG_DENIED),
                    denied(CATALOG_DENIED),
                    denied(NO_BINDING),
                    denied(NO_BINDING),
                ],
            ),
        ];
        for (need, wants) in rows {
            for (who, want) in [&admin, &group, &deployment, &member, &viewer]
                .into_iter()
                .zip(wants)
            {
                assert_eq!(verdict(who, need), want, "{need:?} by {:?}", who.role);
            }
        }
    }
}
