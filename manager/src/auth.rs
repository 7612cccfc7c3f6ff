//! Who is calling (docs/compatibility.md, Conventions and Tokens): the `Authorization` header,
//! the token it carries, and the subject that token stands for.
//!
//! A handler without a body takes a [`Subject`] argument; the request is refused with 401
//! before the handler runs when there is none. A handler with a body takes a [`Caller`]
//! and authenticates it after reading the body, because the public manager reports a bad
//! body before a missing token. A handler whose whole answer is one read takes a [`Token`]
//! and looks it up inside that read.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderValue;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rusqlite::Connection;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::store::Store;
use crate::store::tokens::{self, TokenRecord};
use crate::token::{self, RawToken, TokenKind};
use crate::{DEFAULT_PROJECT, Error};

/// An authenticated caller: a token record and what it may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub token_id: String,
    pub role: Role,
    pub scope: Scope,
}

/// Serialized in the platform's dotted form, which the CLI parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Role {
    #[serde(rename = "workspace.admin")]
    WorkspaceAdmin,
    #[serde(rename = "workspace.member")]
    WorkspaceMember,
    #[serde(rename = "deployment-group.deployer")]
    DeploymentGroupDeployer,
    #[serde(rename = "deployment.manager")]
    DeploymentManager,
    #[serde(rename = "deployment.viewer")]
    DeploymentViewer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Scope {
    Workspace,
    DeploymentGroup {
        project_id: String,
        deployment_group_id: String,
    },
    Deployment {
        project_id: String,
        deployment_id: String,
    },
}

const MISSING: &str = "Authentication required";
const UNKNOWN_SCHEME: &str = "Authorization header must use Bearer or Basic scheme";
const BAD_BASIC: &str = "Invalid Basic auth encoding";
const INVALID_TOKEN: &str = "Invalid token";

impl<S> FromRequestParts<S> for Subject
where
    Store: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        if parts.extensions.get::<SystemIdentity>().is_some() {
            return Ok(Subject::system());
        }
        let token = token_from_header(parts.headers.get(AUTHORIZATION))?;
        authenticate(&Store::from_ref(state), token).await
    }
}

/// Marks a request that came over the manager's own Unix socket (`run/manager.sock`, 0600 in
/// a 0700 directory), which only the service user's daemons can reach: deployd acts there as
/// the system, with no token. Only that socket's server inserts it; no header can.
#[derive(Debug, Clone, Copy)]
pub struct SystemIdentity;

impl Subject {
    /// The system's daemons: the whole workspace, as an admin token.
    fn system() -> Subject {
        Subject {
            token_id: "system".to_owned(),
            role: Role::WorkspaceAdmin,
            scope: Scope::Workspace,
        }
    }
}

/// The token a request carries, refused with [`Subject`]'s 401s when the header is missing
/// or malformed, but not yet looked up: a handler whose answer is one read looks it up in
/// that read ([`Token::subject_in`]), because each read is a trip to the blocking pool and
/// a read transaction, which cost a hot route more than its query does.
#[derive(Debug)]
pub struct Token(RawToken);

impl Token {
    /// The subject of the token, or 401, as [`Subject`] finds it.
    pub fn subject_in(&self, conn: &Connection) -> Result<Subject, Error> {
        subject_of(conn, self.0.expose())
    }
}

impl<S: Sync> FromRequestParts<S> for Token {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        token_from_header(parts.headers.get(AUTHORIZATION)).map(|raw| Token(RawToken::new(raw)))
    }
}

/// The `Authorization` header of a request, not yet looked at.
#[derive(Debug, Clone)]
pub struct Caller {
    authorization: Option<HeaderValue>,
    system: bool,
}

impl Caller {
    pub async fn authenticate(&self, store: &Store) -> Result<Subject, Error> {
        if self.system {
            return Ok(Subject::system());
        }
        let token = token_from_header(self.authorization.as_ref())?;
        authenticate(store, token).await
    }

    /// Whether the request came over the manager's own socket ([`SystemIdentity`]).
    pub fn is_system(&self) -> bool {
        self.system
    }

    /// The token of a `Bearer` header, which the agent sync hands back to the agent as its
    /// deployment token; `None` for Basic or no header.
    pub fn bearer(&self) -> Option<String> {
        self.authorization
            .as_ref()?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(str::to_owned)
    }
}

impl<S: Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            authorization: parts.headers.get(AUTHORIZATION).cloned(),
            system: parts.extensions.get::<SystemIdentity>().is_some(),
        })
    }
}

/// The raw token an `Authorization` header carries: `Bearer <token>`, or `Basic` with the
/// token as the password (or as the whole credential when there is no colon).
fn token_from_header(header: Option<&HeaderValue>) -> Result<String, Error> {
    let header = header.ok_or(Error::Unauthorized(MISSING))?;
    let value = header
        .to_str()
        .map_err(|_| Error::Unauthorized(UNKNOWN_SCHEME))?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Ok(token.to_owned());
    }
    let encoded = value
        .strip_prefix("Basic ")
        .ok_or(Error::Unauthorized(UNKNOWN_SCHEME))?;
    let decoded = STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(Error::Unauthorized(BAD_BASIC))?;
    Ok(match decoded.split_once(':') {
        Some((_user, token)) => token.to_owned(),
        None => decoded,
    })
}

/// The subject of a raw token, or 401 when no stored token has its hash.
pub async fn authenticate(store: &Store, token: String) -> Result<Subject, Error> {
    store.read(move |conn| subject_of(conn, &token)).await
}

/// [`authenticate`] inside a read that already holds a connection.
fn subject_of(conn: &Connection, token: &str) -> Result<Subject, Error> {
    let hash = token::hash(token);
    let record = tokens::find_by_hash(conn, &hash)?
        .filter(|record| bool::from(record.key_hash.as_bytes().ct_eq(hash.as_bytes())))
        .ok_or(Error::Unauthorized(INVALID_TOKEN))?;
    Ok(subject(record))
}

/// What a token stands for, by its kind and binding, with the public manager's fallbacks for
/// a token that lost its binding.
fn subject(record: TokenRecord) -> Subject {
    let project_id = || DEFAULT_PROJECT.to_owned();
    let (role, scope) = match (
        record.kind,
        record.deployment_group_id,
        record.deployment_id,
    ) {
        (TokenKind::Admin, _, _) => (Role::WorkspaceAdmin, Scope::Workspace),
        (TokenKind::DeploymentGroup, Some(deployment_group_id), _) => (
            Role::DeploymentGroupDeployer,
            Scope::DeploymentGroup {
                project_id: project_id(),
                deployment_group_id,
            },
        ),
        (TokenKind::DeploymentGroup, None, _) => (Role::WorkspaceMember, Scope::Workspace),
        (TokenKind::Deployment, _, Some(deployment_id)) => (
            Role::DeploymentManager,
            Scope::Deployment {
                project_id: project_id(),
                deployment_id,
            },
        ),
        (TokenKind::Deployment, _, None) => (Role::DeploymentViewer, Scope::Workspace),
    };
    Subject {
        token_id: record.id,
        role,
        scope,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(credentials: &str) -> String {
        format!("Basic {}", STANDARD.encode(credentials))
    }

    #[test]
    fn authorization_headers() {
        /// A header's bytes (or none) and the token or 401 reason it yields.
        type Case = (Option<Vec<u8>>, Result<&'static str, &'static str>);
        let cases: Vec<Case> = vec![
            (None, Err(MISSING)),
            (Some(b"Bearer ax_admin_abc".to_vec()), Ok("ax_admin_abc")),
            (Some(b"Bearer ".to_vec()), Ok("")),
            (Some(b"Bearer  two-spaces".to_vec()), Ok(" two-spaces")),
            (Some(b"bearer ax_admin_abc".to_vec()), Err(UNKNOWN_SCHEME)),
            (Some(b"Bearer".to_vec()), Err(UNKNOWN_SCHEME)),
            (Some(b"Token ax_admin_abc".to_vec()), Err(UNKNOWN_SCHEME)),
            (Some(b"".to_vec()), Err(UNKNOWN_SCHEME)),
            (Some(b"Bearer \xff".to_vec()), Err(UNKNOWN_SCHEME)),
            (Some(basic("user:ax_dg_abc").into_bytes()), Ok("ax_dg_abc")),
            (Some(basic(":ax_dg_abc").into_bytes()), Ok("ax_dg_abc")),
            (Some(basic("user:pa:ss").into_bytes()), Ok("pa:ss")),
            (
                Some(basic("ax_deploy_abc").into_bytes()),
                Ok("ax_deploy_abc"),
            ),
            (Some(basic("").into_bytes()), Ok("")),
            (Some(b"Basic not base64!".to_vec()), Err(BAD_BASIC)),
            (
                Some(format!("Basic {}", STANDARD.encode([0xff, 0xfe])).into_bytes()),
                Err(BAD_BASIC),
            ),
            (
                Some(b"basic dXNlcjp0b2tlbg==".to_vec()),
                Err(UNKNOWN_SCHEME),
            ),
        ];
        for (header, expected) in cases {
            let value = header
                .as_deref()
                .map(|bytes| HeaderValue::from_bytes(bytes).expect("valid header bytes"));
            let got = match token_from_header(value.as_ref()) {
                Ok(token) => Ok(token),
                Err(Error::Unauthorized(reason)) => Err(reason),
                Err(other) => panic!("{header:?}: unexpected {other:?}"),
            };
            assert_eq!(
                got,
                expected.map(str::to_owned),
                "header {:?}",
                header.as_deref().map(String::from_utf8_lossy)
            );
        }
    }

    #[test]
    fn token_records_map_to_subjects() {
        let record = |kind, group: Option<&str>, deployment: Option<&str>| TokenRecord {
            id: "tok_x".into(),
            kind,
            key_hash: String::new(),
            deployment_group_id: group.map(str::to_owned),
            deployment_id: deployment.map(str::to_owned),
        };
        let cases = [
            (
                record(TokenKind::Admin, None, None),
                Role::WorkspaceAdmin,
                Scope::Workspace,
            ),
            (
                record(TokenKind::DeploymentGroup, Some("dg_1"), None),
                Role::DeploymentGroupDeployer,
                Scope::DeploymentGroup {
                    project_id: "default".into(),
                    deployment_group_id: "dg_1".into(),
                },
            ),
            (
                record(TokenKind::DeploymentGroup, None, None),
                Role::WorkspaceMember,
                Scope::Workspace,
            ),
            (
                record(TokenKind::Deployment, Some("dg_1"), Some("dep_1")),
                Role::DeploymentManager,
                Scope::Deployment {
                    project_id: "default".into(),
                    deployment_id: "dep_1".into(),
                },
            ),
            (
                record(TokenKind::Deployment, Some("dg_1"), None),
                Role::DeploymentViewer,
                Scope::Workspace,
            ),
        ];
        for (record, role, scope) in cases {
            let got = subject(record.clone());
            assert_eq!(
                got,
                Subject {
                    token_id: "tok_x".into(),
                    role,
                    scope
                },
                "{record:?}"
            );
        }
    }

    #[test]
    fn only_bearer_headers_yield_a_bearer() {
        let caller = |value: Option<&str>| Caller {
            authorization: value.map(|v| HeaderValue::from_str(v).expect("header")),
            system: false,
        };
        assert_eq!(
            caller(Some("Bearer ax_deploy_1")).bearer().as_deref(),
            Some("ax_deploy_1")
        );
        assert_eq!(caller(Some(&basic("u:ax_deploy_1"))).bearer(), None);
        assert_eq!(caller(None).bearer(), None);
    }

    #[tokio::test]
    async fn unknown_tokens_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("manager.db"))
            .await
            .expect("open");
        let error = authenticate(&store, "ax_admin_nope".into())
            .await
            .expect_err("refused");
        assert!(
            matches!(error, Error::Unauthorized(INVALID_TOKEN)),
            "{error:?}"
        );
    }
}
