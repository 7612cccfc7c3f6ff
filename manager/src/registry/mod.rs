//! The registry behind `/v2` (spec §3.14, protocols §4.4–4.5). The manager authenticates
//! each request ([`crate::auth`]), works out which repository it is about ([`path`]), routes
//! that repository ([`routing`]), decides whether the caller may ([`access`], [`pulls`] with
//! [`images`], or a signed upload session, [`session`]), and forwards it as it is to registryd
//! over its socket ([`upstream`]), whose answer goes back with its `Location` made public
//! ([`location`]).

pub mod access;
pub mod images;
pub mod location;
pub mod path;
pub mod pulls;
pub mod routing;
pub mod session;
pub mod upstream;

use std::path::PathBuf;

use path::{Endpoint, Resource};
use pulls::ReleaseRepositories;
use routing::RegistryRoutes;
use session::SessionSigner;
use upstream::Upstream;

/// What the proxy keeps between requests.
#[derive(Debug)]
pub struct Registry {
    pub routes: RegistryRoutes,
    pub upstream: Upstream,
    pub sessions: SessionSigner,
    pub pulls: ReleaseRepositories,
}

impl Registry {
    /// The proxy of the embedded registry at `socket`, signing upload sessions with a key
    /// derived from `signing_key`.
    pub fn new(routes: RegistryRoutes, socket: PathBuf, signing_key: &[u8]) -> Registry {
        Registry {
            routes,
            upstream: Upstream::new(socket),
            sessions: SessionSigner::new(signing_key),
            pulls: ReleaseRepositories::default(),
        }
    }

    /// A `Location` of registryd's as the client follows it: under the public `base`, and
    /// for an upload session signed (at `now`, Unix seconds) so that its `PUT` and `PATCH`
    /// need nothing else.
    pub fn public_location(&self, location: &str, base: &str, now: u64) -> String {
        let public = location::absolute(location, base);
        let Some(rest) = public.strip_prefix(base) else {
            return public;
        };
        let (path, query) = rest
            .split_once('?')
            .map_or((rest, None), |(p, q)| (p, Some(q)));
        match Endpoint::parse(path) {
            Endpoint::In(repository, Resource::Upload(_)) => {
                let separator = if query.is_some() { '&' } else { '?' };
                let signature = self.sessions.sign(path, repository, now);
                format!("{public}{separator}{signature}")
            }
            _ => public,
        }
    }
}

#[cfg(test)]
mod tests {
    use plumbing::config::ArtifactRegistryConfig;

    use super::path::Query;
    use super::*;

    #[test]
    fn locations_are_public_and_upload_sessions_signed() {
        const NOW: u64 = 1_800_000_000;
        let registry = Registry::new(
            RegistryRoutes::from_config(&ArtifactRegistryConfig::default()),
            PathBuf::from("/nonexistent.sock"),
            &[1u8; 32],
        );
        let base = "https://mgr.test";
        let session = "/v2/artifacts/default/app/blobs/uploads/0f3a";
        let signed = |path: &str, repo: &str| registry.sessions.sign(path, repo, NOW);
        let cases = [
            (
                session.to_owned(),
                format!(
                    "{base}{session}?{}",
                    signed(session, "artifacts/default/app")
                ),
            ),
            (
                format!("http://registryd{session}"),
                format!(
                    "{base}{session}?{}",
                    signed(session, "artifacts/default/app")
                ),
            ),
            (
                format!("{session}?state=x"),
                format!(
                    "{base}{session}?state=x&{}",
                    signed(session, "artifacts/default/app")
                ),
            ),
            (
                "/v2/artifacts/default/blobs/sha256:ab".to_owned(),
                format!("{base}/v2/artifacts/default/blobs/sha256:ab"),
            ),
            (
                "/v2/artifacts/default/manifests/sha256:ab".to_owned(),
                format!("{base}/v2/artifacts/default/manifests/sha256:ab"),
            ),
            (
                "https://elsewhere.test/v2/a/blobs/uploads/x".to_owned(),
                "https://elsewhere.test/v2/a/blobs/uploads/x".to_owned(),
            ),
        ];
        for (location, want) in cases {
            assert_eq!(
                registry.public_location(&location, base, NOW),
                want,
                "{location}"
            );
        }

        // What is handed out verifies for its session, and only for it.
        let handed = registry.public_location(session, base, NOW);
        let query = Query::parse(handed.split_once('?').map(|(_, q)| q));
        assert_eq!(
            registry
                .sessions
                .verify(session, "artifacts/default/app", &query, NOW + 60),
            Ok(())
        );
        assert!(
            registry
                .sessions
                .verify(
                    "/v2/artifacts/default/app/blobs/uploads/other",
                    "artifacts/default/app",
                    &query,
                    NOW
                )
                .is_err()
        );
    }
}
