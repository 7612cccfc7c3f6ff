//! The registry routing table: one repository prefix per platform, built once from the
//! configuration. `GET /v1/build-config` answers from it where `alien release` pushes, and the
//! `/v2` proxy routes each repository by it.

use axum::http::StatusCode;
use plumbing::config::{ArtifactRegistryBinding, ArtifactRegistryConfig};

use crate::Error;
use crate::wire::Platform;

/// The embedded registry's repository, the route of last resort.
const LOCAL_REPOSITORY: &str = "artifacts/default";

/// Repository prefixes by platform, as the proxy routes them: each configured cloud registry,
/// then the embedded local one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRoutes {
    routes: Vec<(String, Platform)>,
}

impl RegistryRoutes {
    pub fn from_config(config: &ArtifactRegistryConfig) -> RegistryRoutes {
        let clouds = [
            (Platform::Aws, &config.aws),
            (Platform::Gcp, &config.gcp),
            (Platform::Azure, &config.azure),
        ];
        let mut routes: Vec<(String, Platform)> = clouds
            .into_iter()
            .filter_map(|(platform, binding)| {
                let prefix = match binding.as_ref()? {
                    ArtifactRegistryBinding::Ecr {
                        repository_prefix, ..
                    } => repository_prefix.clone(),
                    ArtifactRegistryBinding::Gar {
                        repository_name, ..
                    } => repository_name.clone(),
                    ArtifactRegistryBinding::Acr {
                        repository_prefix, ..
                    } => repository_prefix.clone().unwrap_or_default(),
                    // Not an upstream registry of that cloud: nothing to route to.
                    ArtifactRegistryBinding::Local { .. } => return None,
                };
                Some((prefix, platform))
            })
            .collect();
        routes.push((LOCAL_REPOSITORY.to_owned(), Platform::Local));
        RegistryRoutes { routes }
    }

    pub fn repository(&self, platform: Platform) -> Option<&str> {
        self.routes
            .iter()
            .find(|(_, p)| *p == platform)
            .map(|(prefix, _)| prefix.as_str())
    }

    /// The repository when the client names no platform: a catch-all route's, if any.
    pub fn default_repository(&self) -> Result<&str, Error> {
        if self.routes.is_empty() {
            return Err(Error::plain(
                StatusCode::NOT_FOUND,
                "No artifact registries configured",
            ));
        }
        self.routes
            .iter()
            .find(|(prefix, _)| prefix.is_empty())
            .map(|(prefix, _)| prefix.as_str())
            .ok_or_else(|| {
                Error::plain(
                    StatusCode::BAD_REQUEST,
                    "Multiple registries configured. Specify ?platform=aws|gcp|azure|local",
                )
            })
    }

    /// The platform whose registry holds `repository`: the route with the longest prefix
    /// that is the whole name or a run of its leading components (an empty prefix catches
    /// every name). `artifacts/default` routes `artifacts/default` and
    /// `artifacts/default/team/app`, but not `artifacts/defaults`.
    pub fn route(&self, repository: &str) -> Option<Platform> {
        self.routes
            .iter()
            .filter(|(prefix, _)| {
                prefix.is_empty()
                    || repository
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, platform)| *platform)
    }

    pub fn cloud_platforms(&self) -> Vec<&'static str> {
        self.routes
            .iter()
            .filter(|(_, platform)| *platform != Platform::Local)
            .map(|(_, platform)| platform.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ecr(prefix: &str) -> Option<ArtifactRegistryBinding> {
        Some(ArtifactRegistryBinding::Ecr {
            repository_prefix: prefix.into(),
            pull_role_arn: None,
            push_role_arn: None,
        })
    }

    #[test]
    fn routes_from_configuration() {
        let default = RegistryRoutes::from_config(&ArtifactRegistryConfig::default());
        assert_eq!(default.repository(Platform::Local), Some(LOCAL_REPOSITORY));
        assert_eq!(default.repository(Platform::Aws), None);
        assert!(default.cloud_platforms().is_empty());
        assert!(matches!(
            default.default_repository(),
            Err(Error::PlainText {
                status: StatusCode::BAD_REQUEST,
                ..
            })
        ));

        let config = ArtifactRegistryConfig {
            aws: ecr("acme/images"),
            gcp: Some(ArtifactRegistryBinding::Gar {
                repository_name: "proj/repo".into(),
                pull_service_account_email: None,
                push_service_account_email: None,
            }),
            azure: Some(ArtifactRegistryBinding::Acr {
                registry_name: "r".into(),
                resource_group_name: "g".into(),
                repository_prefix: None,
            }),
            ..Default::default()
        };
        let routes = RegistryRoutes::from_config(&config);
        assert_eq!(routes.repository(Platform::Aws), Some("acme/images"));
        assert_eq!(routes.repository(Platform::Gcp), Some("proj/repo"));
        assert_eq!(routes.repository(Platform::Azure), Some(""));
        assert_eq!(routes.cloud_platforms(), ["aws", "gcp", "azure"]);
        assert_eq!(routes.default_repository().ok(), Some(""), "the catch-all");
    }

    #[test]
    fn repositories_go_to_the_longest_prefix_that_covers_them() {
        let local = Some(Platform::Local);
        let default = RegistryRoutes::from_config(&ArtifactRegistryConfig::default());
        for (repository, want) in [
            ("artifacts/default", local),
            ("artifacts/default/app", local),
            ("artifacts/default/team/app/deeper", local),
            ("artifacts/defaults", None),
            ("artifacts/default-x", None),
            ("artifacts", None),
            ("library/alpine", None),
            ("", None),
        ] {
            assert_eq!(default.route(repository), want, "{repository}");
        }

        let config = ArtifactRegistryConfig {
            aws: ecr("artifacts"),
            azure: Some(ArtifactRegistryBinding::Acr {
                registry_name: "r".into(),
                resource_group_name: "g".into(),
                repository_prefix: None,
            }),
            ..Default::default()
        };
        let routes = RegistryRoutes::from_config(&config);
        for (repository, want) in [
            ("artifacts/default/app", local),
            ("artifacts/other", Some(Platform::Aws)),
            ("artifacts", Some(Platform::Aws)),
            ("library/alpine", Some(Platform::Azure)),
        ] {
            assert_eq!(routes.route(repository), want, "{repository}");
        }
    }
}
