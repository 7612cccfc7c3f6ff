//! What a manifest says, as far as the registry cares: its media type, what it references,
//! its subject and artifact type. The bytes themselves are stored as received.
//!
//! Four media types are accepted: the OCI image manifest and image index, and Docker's
//! schema 2 manifest and manifest list.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::Error;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The distribution spec asks registries to take manifests of at least 4 MiB; larger ones get 413.
pub const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Layers that live elsewhere: the registry never holds them, so it does not ask for them.
const FOREIGN_LAYERS: &[&str] = &[
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Index,
}

fn kind_of(media_type: &str) -> Option<Kind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Image),
        OCI_INDEX | DOCKER_LIST => Some(Kind::Index),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    /// The type the referrers API reports: `artifactType`, else an image's config type.
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// The manifest's own annotations, as JSON, for its referrers descriptor.
    pub annotations: Option<String>,
    /// Config and layers, less foreign ones: blobs that must exist in the repository.
    pub blobs: Vec<Descriptor>,
    /// An index's manifests, which must exist in the repository.
    pub children: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
}

impl RawDescriptor {
    fn check(&self, what: &str) -> Result<Descriptor, Error> {
        let digest = self
            .digest
            .parse()
            .map_err(|_| Error::ManifestInvalid(format!("{what}: bad digest {:?}", self.digest)))?;
        let size = u64::try_from(self.size)
            .map_err(|_| Error::ManifestInvalid(format!("{what}: negative size")))?;
        Ok(Descriptor { digest, size })
    }

    fn is_foreign(&self) -> bool {
        !self.urls.is_empty() || FOREIGN_LAYERS.contains(&self.media_type.as_str())
    }
}

/// Media types that say nothing about which manifest this is.
fn is_generic(content_type: &str) -> bool {
    matches!(
        content_type,
        "" | "application/json" | "application/octet-stream"
    )
}

/// Parses and checks `bytes` sent with `content_type`.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, Error> {
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| Error::ManifestInvalid(format!("not a manifest: {e}")))?;
    if raw.schema_version != Some(2) {
        return Err(Error::ManifestInvalid("schemaVersion must be 2".into()));
    }
    let content_type = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    let media_type = match (is_generic(content_type), raw.media_type.as_deref()) {
        (false, Some(declared)) if declared != content_type => {
            return Err(Error::ManifestInvalid(format!(
                "Content-Type {content_type} but mediaType {declared}"
            )));
        }
        (false, _) => content_type.to_owned(),
        (true, Some(declared)) => declared.to_owned(),
        (true, None) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
        (true, None) => OCI_MANIFEST.to_owned(),
    };
    let kind = kind_of(&media_type)
        .ok_or_else(|| Error::ManifestInvalid(format!("unsupported media type {media_type}")))?;

    let subject = raw
        .subject
        .as_ref()
        .map(|s| s.check("subject"))
        .transpose()?
        .map(|d| d.digest);
    let annotations = raw
        .annotations
        .as_ref()
        .filter(|a| !a.is_empty())
        .map(|a| serde_json::to_string(a).unwrap_or_default());
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    let mut artifact_type = raw.artifact_type.clone();
    match kind {
        Kind::Image => {
            let config = raw
                .config
                .as_ref()
                .ok_or_else(|| Error::ManifestInvalid("an image manifest needs config".into()))?;
            let layers = raw
                .layers
                .as_ref()
                .ok_or_else(|| Error::ManifestInvalid("an image manifest needs layers".into()))?;
            if raw.manifests.is_some() {
                return Err(Error::ManifestInvalid(
                    "an image manifest has no manifests".into(),
                ));
            }
            blobs.push(config.check("config")?);
            for layer in layers {
                let checked = layer.check("layer")?;
                if !layer.is_foreign() {
                    blobs.push(checked);
                }
            }
            if artifact_type.is_none() {
                artifact_type = Some(config.media_type.clone());
            }
        }
        Kind::Index => {
            let manifests = raw
                .manifests
                .as_ref()
                .ok_or_else(|| Error::ManifestInvalid("an index needs manifests".into()))?;
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(Error::ManifestInvalid(
                    "an index has no config or layers".into(),
                ));
            }
            for m in manifests {
                children.push(m.check("manifest")?);
            }
        }
    }
    Ok(Manifest {
        media_type,
        artifact_type,
        subject,
        annotations,
        blobs,
        children,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,{extra}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":0}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D}","size":0}},{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{D}","size":0}}]}}"#
        )
    }

    #[test]
    fn the_media_type_comes_from_the_header_or_the_body() {
        let m = parse(image("").as_bytes(), Some(OCI_MANIFEST)).expect("valid");
        assert_eq!(m.media_type, OCI_MANIFEST);
        assert_eq!(m.blobs.len(), 2, "config and one distributable layer");
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        let body = image(&format!(r#""mediaType":"{DOCKER_MANIFEST}","#));
        let m = parse(body.as_bytes(), None).expect("valid");
        assert_eq!(m.media_type, DOCKER_MANIFEST);
        assert!(matches!(
            parse(body.as_bytes(), Some(OCI_MANIFEST)),
            Err(Error::ManifestInvalid(_))
        ));
    }

    #[test]
    fn bad_manifests_are_refused() {
        for (body, ct) in [
            ("{", Some(OCI_MANIFEST)),
            (r#"{"schemaVersion":1}"#, Some(OCI_MANIFEST)),
            (r#"{"schemaVersion":2}"#, Some(OCI_MANIFEST)),
            (r#"{"schemaVersion":2,"manifests":[]}"#, Some(OCI_MANIFEST)),
            (
                r#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:zz","size":1}]}"#,
                Some(OCI_INDEX),
            ),
            (r#"{"schemaVersion":2,"manifests":[]}"#, Some("text/plain")),
        ] {
            assert!(
                matches!(parse(body.as_bytes(), ct), Err(Error::ManifestInvalid(_))),
                "{body}"
            );
        }
    }
}
