//! The registry behind `/v2`. The manager authenticates each request ([`crate::auth`]),
//! works out which repository it is about ([`path`]), routes that repository ([`routing`]),
//! decides whether the caller may ([`access`], [`pulls`] with [`images`], or a signed upload
//! session, [`session`]), and forwards it as it is to registryd ([`upstream`], over the
//! daemon client), whose answer goes back with its `Location` made public ([`location`]).
//! [`Proxy`] is that whole path behind one call, [`Proxy::forward`].

pub mod access;
pub mod images;
pub mod location;
pub mod path;
mod proxy;
pub mod pulls;
pub mod routing;
pub mod session;
pub mod upstream;

use path::{Endpoint, Resource};
use pulls::ReleaseRepositories;
use routing::RegistryRoutes;
use session::SessionSigner;

use crate::daemons::DaemonClient;

/// The registry proxy: what it keeps between requests.
#[derive(Debug)]
pub struct Proxy {
    routes: RegistryRoutes,
    registryd: DaemonClient,
    sessions: SessionSigner,
    pulls: ReleaseRepositories,
}

impl Proxy {
    /// The proxy of the embedded registry behind `registryd`, signing upload sessions with
    /// a key derived from `signing_key`.
    pub fn new(routes: RegistryRoutes, registryd: DaemonClient, signing_key: &[u8]) -> Proxy {
        Proxy {
            routes,
            registryd,
            sessions: SessionSigner::new(signing_key),
            pulls: ReleaseRepositories::default(),
        }
    }

    /// Where each platform's images go, for `GET /v1/build-config` and `/v1/platforms`.
    pub fn routes(&self) -> &RegistryRoutes {
        &self.routes
    }

    /// A `Location` of registryd's as the client follows it: under the public `base`, and
    /// for an upload session signed (at `now`, Unix seconds) so that its `PUT` and `PATCH`
    /// need nothing else.
    fn public_location(&self, location: &str, base: &str, now: u64) -> String {
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

    use super::path::RawQuery;
    use super::*;

    #[test]
    fn locations_are_public_and_upload_sessions_signed() {
        const NOW: u64 = 1_800_000_000;
        let data = plumbing::DataDir::new(std::path::Path::new("/nonexistent"));
        let registry = Proxy::new(
            RegistryRoutes::from_config(&ArtifactRegistryConfig::default()),
            DaemonClient::new(plumbing::Daemon::Registryd, &data),
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
        let query = RawQuery::parse(handed.split_once('?').map(|(_, q)| q));
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
