//! Signed upload-session URLs, in the public manager's scheme (docs/compatibility.md,
//! Registry proxy).
//!
//! The `Location` of an upload session (`/v2/<name>/blobs/uploads/<id>`) is handed out with
//! `_alien_v=1&_alien_repo=<name>&_alien_exp=<unix seconds>&_alien_sig=<sig>`, where `sig`
//! is the unpadded base64url HMAC-SHA256, keyed by HMAC-SHA256(signing key,
//! `registry-upload-session-signing`), of `1\n<path>\n<name>\n<exp>`. A later `PUT` or
//! `PATCH` of that session carrying the parameters is authorized by the signature alone.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::path::RawQuery;

/// How long a signed session URL works (the public manager's TTL).
pub const TTL_SECS: u64 = 3600;

const VERSION: &str = "1";
const DERIVATION: &[u8] = b"registry-upload-session-signing";

const V: &str = "_alien_v";
const REPO: &str = "_alien_repo";
const EXP: &str = "_alien_exp";
const SIG: &str = "_alien_sig";

/// Whether a query parameter is one of ours: they are removed before a request is
/// forwarded, whatever they hold.
pub fn is_session_param(name: &str) -> bool {
    name.starts_with("_alien_")
}

/// Whether a request carries a session signature to be judged by.
pub fn is_signed(query: &RawQuery<'_>) -> bool {
    query.has(V)
}

/// Why a signed request is refused (a 403 `DENIED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Incomplete,
    Version,
    Repository,
    Expired,
    Signature,
}

impl Invalid {
    pub fn reason(self) -> &'static str {
        match self {
            Invalid::Incomplete => "Upload session URL is missing its signature parameters",
            Invalid::Version => "Upload session URL has an unknown signature version",
            Invalid::Repository => "Upload session URL was signed for another repository",
            Invalid::Expired => "Upload session URL has expired",
            Invalid::Signature => "Upload session URL signature is invalid",
        }
    }
}

/// The key that signs and checks session URLs. Its `Debug` form is redacted.
#[derive(Clone)]
pub struct SessionSigner {
    key: [u8; 32],
}

impl fmt::Debug for SessionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSigner(…)")
    }
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

impl SessionSigner {
    /// The session key derived from the manager's signing key.
    pub fn new(signing_key: &[u8]) -> SessionSigner {
        let mut mac = hmac(signing_key);
        mac.update(DERIVATION);
        SessionSigner {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, path: &str, repository: &str, exp: &str) -> Hmac<Sha256> {
        let mut mac = hmac(&self.key);
        mac.update(format!("{VERSION}\n{path}\n{repository}\n{exp}").as_bytes());
        mac
    }

    /// The query parameters that sign session `path` of `repository`, valid for
    /// [`TTL_SECS`] from `now` (Unix seconds).
    pub fn sign(&self, path: &str, repository: &str, now: u64) -> String {
        let exp = now.saturating_add(TTL_SECS).to_string();
        let sig = URL_SAFE_NO_PAD.encode(self.mac(path, repository, &exp).finalize().into_bytes());
        format!(
            "{V}={VERSION}&{REPO}={}&{EXP}={exp}&{SIG}={sig}",
            plumbing::percent::encode(repository)
        )
    }

    /// Whether the signature in `query` lets a request write to session `path`, which is in
    /// `repository`, at `now` (Unix seconds).
    pub fn verify(
        &self,
        path: &str,
        repository: &str,
        query: &RawQuery<'_>,
        now: u64,
    ) -> Result<(), Invalid> {
        let (Some(version), Some(signed_repository), Some(exp), Some(sig)) = (
            query.get(V),
            query.get(REPO),
            query.get(EXP),
            query.get(SIG),
        ) else {
            return Err(Invalid::Incomplete);
        };
        if version != VERSION {
            return Err(Invalid::Version);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig.as_bytes())
            .map_err(|_| Invalid::Signature)?;
        // Checked before anything else it says is believed.
        self.mac(path, &signed_repository, &exp)
            .verify_slice(&sig)
            .map_err(|_| Invalid::Signature)?;
        if signed_repository != repository {
            return Err(Invalid::Repository);
        }
        match exp.parse::<u64>() {
            Ok(exp) if exp >= now => Ok(()),
            _ => Err(Invalid::Expired),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const PATH: &str = "/v2/artifacts/default/app/blobs/uploads/0f3a";
    const REPO_NAME: &str = "artifacts/default/app";

    fn signer() -> SessionSigner {
        SessionSigner::new(&[7u8; 32])
    }

    fn check(
        signer: &SessionSigner,
        path: &str,
        repo: &str,
        query: &str,
        now: u64,
    ) -> Result<(), Invalid> {
        signer.verify(path, repo, &RawQuery::parse(Some(query)), now)
    }

    #[test]
    fn the_signature_is_the_public_managers() {
        // K = HMAC(key, "registry-upload-session-signing"); sig = HMAC(K, "1\n{path}\n{repo}\n{exp}").
        let key = hmac(&[7u8; 32])
            .chain_update(DERIVATION)
            .finalize()
            .into_bytes();
        let exp = NOW + TTL_SECS;
        let sig = hmac(&key)
            .chain_update(format!("1\n{PATH}\n{REPO_NAME}\n{exp}").as_bytes())
            .finalize()
            .into_bytes();
        assert_eq!(
            signer().sign(PATH, REPO_NAME, NOW),
            format!(
                "_alien_v=1&_alien_repo=artifacts%2Fdefault%2Fapp&_alien_exp={exp}&_alien_sig={}",
                URL_SAFE_NO_PAD.encode(sig)
            )
        );
        assert_eq!(format!("{:?}", signer()), "SessionSigner(…)");
    }

    #[test]
    fn signatures_hold_until_they_expire_and_only_as_signed() {
        let s = signer();
        let signed = s.sign(PATH, REPO_NAME, NOW);
        let with = |extra: &str| format!("{signed}&{extra}");
        let replace = |key: &str, value: &str| {
            signed
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k == key => format!("{k}={value}"),
                    _ => pair.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("&")
        };
        let drop = |key: &str| {
            signed
                .split('&')
                .filter(|pair| !pair.starts_with(&format!("{key}=")))
                .collect::<Vec<_>>()
                .join("&")
        };
        let exp = NOW + TTL_SECS;
        let other_path = "/v2/artifacts/default/app/blobs/uploads/0f3b";
        let other_repo_path = "/v2/artifacts/default/web/blobs/uploads/0f3a";
        let other_key = SessionSigner::new(&[8u8; 32]).sign(PATH, REPO_NAME, NOW);
        /// What is tried, the session's path and repository, the query, the time, the verdict.
        type Case<'a> = (&'a str, &'a str, &'a str, String, u64, Result<(), Invalid>);
        #[rustfmt::skip]
        let cases: Vec<Case<'_>> = vec![
            ("as signed", PATH, REPO_NAME, signed.clone(), NOW, Ok(())),
            ("with the digest added", PATH, REPO_NAME, with("digest=sha256%3Aab"), NOW, Ok(())),
            ("on its last second", PATH, REPO_NAME, signed.clone(), exp, Ok(())),
            ("a second late", PATH, REPO_NAME, signed.clone(), exp + 1, Err(Invalid::Expired)),
            ("another session", other_path, REPO_NAME, signed.clone(), NOW, Err(Invalid::Signature)),
            ("another repository's path", other_repo_path, "artifacts/default/web", signed.clone(), NOW, Err(Invalid::Signature)),
            ("signed for another repository", PATH, "artifacts/default/web", signed.clone(), NOW, Err(Invalid::Repository)),
            ("expiry moved", PATH, REPO_NAME, replace(EXP, &(exp + 3600).to_string()), NOW, Err(Invalid::Signature)),
            ("expiry not a number", PATH, REPO_NAME, replace(EXP, "soon"), NOW, Err(Invalid::Signature)),
            ("repository changed", PATH, REPO_NAME, replace(REPO, "artifacts%2Fdefault%2Fweb"), NOW, Err(Invalid::Signature)),
            ("signature changed", PATH, REPO_NAME, replace(SIG, "AAAA"), NOW, Err(Invalid::Signature)),
            ("signature not base64url", PATH, REPO_NAME, replace(SIG, "!!!"), NOW, Err(Invalid::Signature)),
            ("signature not decodable", PATH, REPO_NAME, replace(SIG, "%%%"), NOW, Err(Invalid::Incomplete)),
            ("signature left out", PATH, REPO_NAME, drop(SIG), NOW, Err(Invalid::Incomplete)),
            ("expiry left out", PATH, REPO_NAME, drop(EXP), NOW, Err(Invalid::Incomplete)),
            ("another version", PATH, REPO_NAME, replace(V, "2"), NOW, Err(Invalid::Version)),
            ("another key", PATH, REPO_NAME, other_key, NOW, Err(Invalid::Signature)),
        ];
        for (what, path, repo, query, now, want) in cases {
            assert_eq!(check(&s, path, repo, &query, now), want, "{what}: {query}");
        }
    }

    #[test]
    fn our_parameters_are_recognised() {
        assert!(is_session_param("_alien_v") && is_session_param("_alien_anything"));
        assert!(!is_session_param("digest") && !is_session_param("alien_v"));
        assert!(is_signed(&RawQuery::parse(Some("digest=x&_alien_v=1"))));
        assert!(!is_signed(&RawQuery::parse(Some("digest=x"))));
    }
}
