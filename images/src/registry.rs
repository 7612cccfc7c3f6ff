//! The client side of the OCI distribution API that a pull needs: manifests and blobs of one
//! repository, with the registry's authentication (Basic, or the Bearer token exchange that a
//! `401` with `WWW-Authenticate: Bearer` asks for). [`Remote`] offers the same reads to a
//! caller outside the store: `alien release` copies the images of its `docker://` sources.

use std::io::Read;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;

use crate::digest::{Digest, copy_verified};
use crate::error::{Error, Result};
use crate::reference::Reference;

/// A registry that answers nothing for this long on an open connection is hung.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an error body goes into an error.
const DETAIL_LIMIT: u64 = 1024;
/// A token endpoint's answer is a small JSON object.
const TOKEN_LIMIT: u64 = 1024 * 1024;

/// The credentials a pull presents when the registry asks for them.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    #[default]
    None,
    /// Sent as Basic to a registry that asks for Basic, and to the token endpoint of one
    /// that asks for a Bearer token.
    Basic { username: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("Auth::None"),
            Auth::Basic { username, .. } => write!(f, "Auth::Basic({username}:<redacted>)"),
        }
    }
}

impl Auth {
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Auth {
        Auth::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    fn basic_header(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
        }
    }
}

/// Builds the HTTP agent every pull of a store shares.
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .timeout_recv_response(Some(READ_TIMEOUT))
        .user_agent(concat!("alien-manager-images/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Whether `registry` (`host[:port]`) is this machine, which is reached over plain HTTP.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(registry, |(host, _)| host);
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// One repository of a registry, read as a pull reads it: manifests (a digest reference
/// verified) and blobs (size and digest verified while they stream). Blocking; shared by
/// threads, which reuse the `Authorization` that answered the registry's challenge last.
pub struct Remote {
    agent: ureq::Agent,
    reference: Reference,
    insecure: bool,
    auth: Auth,
    authorization: Mutex<Option<String>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("reference", &self.reference)
            .field("insecure", &self.insecure)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// The repository `reference` names, reached over HTTPS (plain HTTP for this machine)
    /// with `auth` when the registry asks for credentials.
    pub fn new(reference: Reference, auth: Auth) -> Remote {
        Remote {
            agent: agent(),
            insecure: is_loopback(&reference.registry),
            reference,
            auth,
            authorization: Mutex::new(None),
        }
    }

    /// The manifest `reference` (a tag, or a digest, which its bytes are checked against)
    /// names: its bytes and its media type, at most `limit` bytes.
    pub fn manifest(&self, reference: &str, limit: u64) -> Result<(Vec<u8>, String)> {
        let expected = reference
            .starts_with("sha256:")
            .then(|| Digest::parse(reference, reference))
            .transpose()?;
        let (bytes, media_type) = self.with_session(|s| s.manifest(reference, limit))?;
        if let Some(expected) = expected {
            expected.verify(&bytes, None)?;
        }
        Ok((bytes, media_type))
    }

    /// Streams blob `digest` of `size` bytes into `to`, checking both on the way.
    pub fn blob(&self, digest: &str, size: u64, to: &mut impl std::io::Write) -> Result<()> {
        let digest = Digest::parse(digest, &self.reference.to_string())?;
        self.with_session(|s| s.blob(&digest, size, to))
    }

    fn with_session<T>(&self, call: impl FnOnce(&mut Session<'_>) -> Result<T>) -> Result<T> {
        let mut session = Session::new(&self.agent, &self.reference, self.insecure, &self.auth);
        session.authorization = self
            .authorization
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let result = call(&mut session);
        *self
            .authorization
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = session.authorization;
        result
    }
}

/// One repository of one registry, with the `Authorization` header that worked last.
pub(crate) struct Session<'a> {
    agent: &'a ureq::Agent,
    base: String,
    registry: String,
    repository: String,
    auth: &'a Auth,
    authorization: Option<String>,
}

impl<'a> Session<'a> {
    pub(crate) fn new(
        agent: &'a ureq::Agent,
        reference: &Reference,
        insecure: bool,
        auth: &'a Auth,
    ) -> Session<'a> {
        let scheme = if insecure { "http" } else { "https" };
        Session {
            agent,
            base: format!("{scheme}://{}", reference.api_host()),
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            auth,
            authorization: None,
        }
    }

    /// The manifest that `reference` (a tag or a digest) names: its bytes and media type.
    pub(crate) fn manifest(&mut self, reference: &str, limit: u64) -> Result<(Vec<u8>, String)> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let response = self.get(&url, Some(crate::manifest::ACCEPTED))?;
        let media_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
            .unwrap_or_default();
        let mut bytes = Vec::new();
        response
            .into_body()
            .into_reader()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| Error::Transport {
                url: url.clone(),
                source: Box::new(ureq::Error::Io(source)),
            })?;
        if bytes.len() as u64 > limit {
            return Err(Error::InvalidManifest {
                what: reference.to_owned(),
                reason: format!("larger than {limit} bytes"),
            });
        }
        Ok((bytes, media_type))
    }

    /// Streams blob `digest` into `to`, checking its size and digest on the way.
    pub(crate) fn blob(
        &mut self,
        digest: &Digest,
        size: u64,
        to: &mut impl std::io::Write,
    ) -> Result<()> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let response = self.get(&url, None)?;
        copy_verified(response.into_body().into_reader(), to, digest, size, &url)
    }

    /// A `GET` that answers a `401` challenge once, then gives up.
    fn get(&mut self, url: &str, accept: Option<&str>) -> Result<ureq::http::Response<ureq::Body>> {
        let mut challenged = false;
        loop {
            let mut request = self.agent.get(url);
            if let Some(accept) = accept {
                request = request.header("accept", accept);
            }
            if let Some(authorization) = &self.authorization {
                request = request.header("authorization", authorization);
            }
            let response = request.call().map_err(|source| Error::Transport {
                url: url.to_owned(),
                source: Box::new(source),
            })?;
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(response);
            }
            if status == 401 && !challenged {
                challenged = true;
                let challenges: Vec<String> = response
                    .headers()
                    .get_all("www-authenticate")
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_owned))
                    .collect();
                self.authorization = Some(self.answer(&challenges)?);
                continue;
            }
            let detail = error_detail(response);
            if status == 401 || status == 403 {
                return Err(Error::Unauthorized {
                    registry: self.registry.clone(),
                    detail: format!("{status} for {url}: {detail}"),
                });
            }
            return Err(Error::Status {
                url: url.to_owned(),
                status,
                detail,
            });
        }
    }

    /// The `Authorization` header that answers the registry's challenges.
    fn answer(&self, challenges: &[String]) -> Result<String> {
        let parsed: Vec<Challenge> = challenges
            .iter()
            .filter_map(|c| Challenge::parse(c))
            .collect();
        if let Some(bearer) = parsed
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        {
            return self.bearer_token(bearer);
        }
        if parsed
            .iter()
            .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
        {
            return self.auth.basic_header().ok_or_else(|| Error::Unauthorized {
                registry: self.registry.clone(),
                detail: "the registry wants credentials and none were given".to_owned(),
            });
        }
        Err(Error::Unauthorized {
            registry: self.registry.clone(),
            detail: format!("no challenge it can answer in {challenges:?}"),
        })
    }

    /// The token exchange: `GET realm?service=..&scope=..` with the Basic credentials, if
    /// any; the answer's `token` (or `access_token`) is the Bearer token.
    fn bearer_token(&self, challenge: &Challenge) -> Result<String> {
        let unauthorized = |detail: String| Error::Unauthorized {
            registry: self.registry.clone(),
            detail,
        };
        let realm = challenge
            .param("realm")
            .ok_or_else(|| unauthorized("a Bearer challenge without a realm".to_owned()))?;
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(unauthorized(format!(
                "the token realm {realm:?} is not a URL"
            )));
        }
        let scope = challenge.param("scope").map_or_else(
            || format!("repository:{}:pull", self.repository),
            str::to_owned,
        );
        let mut request = self.agent.get(realm).query("scope", &scope);
        if let Some(service) = challenge.param("service") {
            request = request.query("service", service);
        }
        if let Some(header) = self.auth.basic_header() {
            request = request.header("authorization", header);
        }
        let response = request.call().map_err(|source| Error::Transport {
            url: realm.to_owned(),
            source: Box::new(source),
        })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(unauthorized(format!(
                "the token endpoint {realm} answered {status}: {}",
                error_detail(response)
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = response
            .into_body()
            .with_config()
            .limit(TOKEN_LIMIT)
            .read_json()
            .map_err(|e| unauthorized(format!("the token endpoint {realm} answered: {e}")))?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .map(|t| format!("Bearer {t}"))
            .ok_or_else(|| unauthorized(format!("the token endpoint {realm} gave no token")))
    }
}

/// The start of an error answer's body, for the error message.
fn error_detail(response: ureq::http::Response<ureq::Body>) -> String {
    let mut bytes = Vec::new();
    let _ = response
        .into_body()
        .into_reader()
        .take(DETAIL_LIMIT)
        .read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

/// One `WWW-Authenticate` challenge: `Scheme k="v", k2=v2`.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            let Some((key, after)) = rest.split_once('=') else {
                break;
            };
            let after = after.trim_start();
            let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end?..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.push((key.trim().to_ascii_lowercase(), value));
            rest = remaining;
        }
        Some(Challenge {
            scheme: scheme.to_owned(),
            params,
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let bearer = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example", scope="repository:a/b:pull""#,
        )
        .expect("a challenge");
        assert_eq!(bearer.scheme, "Bearer");
        assert_eq!(bearer.param("realm"), Some("https://auth.example/token"));
        assert_eq!(bearer.param("service"), Some("registry.example"));
        assert_eq!(bearer.param("scope"), Some("repository:a/b:pull"));
        let basic = Challenge::parse(r#"Basic realm="alien-manager""#).expect("a challenge");
        assert_eq!(basic.scheme, "Basic");
        assert_eq!(basic.param("realm"), Some("alien-manager"));
        let escaped = Challenge::parse(r#"Bearer realm="a\"b",x=y"#).expect("a challenge");
        assert_eq!(escaped.param("realm"), Some("a\"b"));
        assert_eq!(escaped.param("x"), Some("y"));
        assert_eq!(Challenge::parse(r#"Bearer realm="unterminated"#), None);
    }

    #[test]
    fn auth_debug_hides_the_password() {
        let text = format!("{:?}", Auth::basic("deployment", "s3cret"));
        assert!(!text.contains("s3cret"), "{text}");
    }
}
