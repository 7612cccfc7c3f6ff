//! Image references: `[registry/]repository[:tag][@digest]`, as the stacks of a release name
//! them (`localhost:5000/artifacts/default/app:v1`, `host/app@sha256:...`).

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Docker Hub, where a reference without a registry points, and the host its API lives on.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`, as the reference names it (`docker.io` when it names none).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference> {
        let invalid = |reason: &str| Error::InvalidReference {
            reference: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(Digest::parse(digest, text).map_err(|_| invalid("the digest is not sha256"))?),
            ),
            None => (text, None),
        };
        // A tag follows the last `:` after the last `/`; a `:` before it is a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_owned()),
            ),
            None => (rest, None),
        };
        if let Some(tag) = &tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !tag.starts_with(['.', '-']);
            if !valid {
                return Err(invalid("the tag is not valid"));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ if name.contains('/') => (DOCKER_HUB.to_owned(), name.to_owned()),
            _ => (DOCKER_HUB.to_owned(), format!("library/{name}")),
        };
        let valid_repository = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !valid_repository {
            return Err(invalid("the repository name is not valid"));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_owned())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What `/v2/<repository>/manifests/<...>` is asked for: the digest if there is one.
    pub fn manifest_reference(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.as_str(),
            (None, Some(tag)) => tag,
            (None, None) => "latest",
        }
    }

    /// The host the registry's API is reached on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registries_ports_tags_and_digests() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases = [
            (
                "alpine",
                "docker.io",
                "library/alpine",
                Some("latest"),
                false,
            ),
            ("team/app:1.2", "docker.io", "team/app", Some("1.2"), false),
            (
                "localhost:5000/artifacts/default/app:v1",
                "localhost:5000",
                "artifacts/default/app",
                Some("v1"),
                false,
            ),
            (
                "127.0.0.1:8080/app",
                "127.0.0.1:8080",
                "app",
                Some("latest"),
                false,
            ),
            ("ghcr.io/o/app@DIGEST", "ghcr.io", "o/app", None, true),
            (
                "host.example/app:v2@DIGEST",
                "host.example",
                "app",
                Some("v2"),
                true,
            ),
        ];
        for (text, registry, repository, tag, has_digest) in cases {
            let text = text.replace("DIGEST", &digest);
            let parsed = Reference::parse(&text).expect(&text);
            assert_eq!(parsed.registry, registry, "{text}");
            assert_eq!(parsed.repository, repository, "{text}");
            assert_eq!(parsed.tag.as_deref(), tag, "{text}");
            assert_eq!(parsed.digest.is_some(), has_digest, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_reference() {
        for text in [
            "",
            "Upper/app",
            "host:5000/",
            "app:",
            "app@sha256:12",
            "a//b",
        ] {
            assert!(
                matches!(Reference::parse(text), Err(Error::InvalidReference { .. })),
                "{text:?}"
            );
        }
    }
}
