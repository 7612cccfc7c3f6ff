//! Where a build left an image, named as skopeo names its sources: `oci:DIR[:TAG]` (an OCI
//! image layout), `docker-archive:FILE[:REF]` (a `docker save` archive) and `docker://REF`
//! (another registry). Opening a source reads its manifests and finds where each blob's bytes
//! are, without reading them: a blob the manager's registry already has is never read.

mod archive;
mod layout;
mod remote;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::api::Manager;
use crate::error::ClientError;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifests are small JSON documents; anything larger is refused unread (as registries do).
const MANIFEST_LIMIT: u64 = 4 << 20;

/// An image source, as a stack names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `oci:DIR[:TAG]`: the image tagged `TAG` in the layout's `index.json`, or its only one.
    Layout { dir: PathBuf, tag: Option<String> },
    /// `docker-archive:FILE[:REF]`: the image `REF` names among the archive's `RepoTags`, or
    /// its only one.
    Archive {
        file: PathBuf,
        image: Option<String>,
    },
    /// `docker://REF`: an image in another registry.
    Registry(images::Reference),
}

impl Source {
    /// The source `text` names, a relative path taken from `base`; `None` for a plain image
    /// reference, which a release keeps as it is.
    pub fn parse(text: &str, base: &Path) -> Result<Option<Source>, ClientError> {
        let path = |p: &str| {
            if p.is_empty() {
                return Err(ClientError::Usage(format!("{text:?} names no path")));
            }
            Ok(base.join(p))
        };
        // As skopeo splits them: the path ends at the first `:`.
        let split = |rest: &str| match rest.split_once(':') {
            Some((p, name)) if !name.is_empty() => (p.to_owned(), Some(name.to_owned())),
            Some((p, _)) => (p.to_owned(), None),
            None => (rest.to_owned(), None),
        };
        if let Some(rest) = text.strip_prefix("oci:") {
            let (dir, tag) = split(rest);
            return Ok(Some(Source::Layout {
                dir: path(&dir)?,
                tag,
            }));
        }
        if let Some(rest) = text.strip_prefix("docker-archive:") {
            let (file, image) = split(rest);
            return Ok(Some(Source::Archive {
                file: path(&file)?,
                image,
            }));
        }
        if let Some(rest) = text.strip_prefix("docker://") {
            let reference = images::Reference::parse(rest)
                .map_err(|e| ClientError::Usage(format!("{text:?}: {e}")))?;
            return Ok(Some(Source::Registry(reference)));
        }
        Ok(None)
    }

    /// Reads the source's manifests. A `docker://` source on the manager itself is read with
    /// the API key; blobs of a `docker://` source are downloaded into `scratch` when pushed.
    pub fn open(&self, manager: &Manager, scratch: &Path) -> Result<Image, ClientError> {
        match self {
            Source::Layout { dir, tag } => layout::open(dir, tag.as_deref()),
            Source::Archive { file, image } => archive::open(file, image.as_deref()),
            Source::Registry(reference) => remote::open(reference, manager, scratch),
        }
        .map_err(|e| e.context(format!("cannot read {self}")))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Layout { dir, tag } => {
                write!(f, "oci:{}", dir.display())?;
                tag.iter().try_for_each(|t| write!(f, ":{t}"))
            }
            Source::Archive { file, image } => {
                write!(f, "docker-archive:{}", file.display())?;
                image.iter().try_for_each(|i| write!(f, ":{i}"))
            }
            Source::Registry(reference) => write!(f, "docker://{reference}"),
        }
    }
}

/// An opened image: its manifests and where its blobs are.
#[derive(Debug)]
pub struct Image {
    /// Every manifest, an index's images before the index: the order they are pushed in.
    pub manifests: Vec<Manifest>,
    /// Every blob the manifests name, once each.
    pub blobs: Vec<Blob>,
}

impl Image {
    /// The digest of the manifest the source names (the last pushed).
    pub fn digest(&self) -> &str {
        self.manifests.last().map_or("", |m| m.digest.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Manifest {
    /// A manifest of `bytes`, its media type the one its body declares, else `fallback`,
    /// else the one its fields imply.
    fn new(
        bytes: Vec<u8>,
        fallback: &str,
        what: &str,
    ) -> Result<(Manifest, Document), ClientError> {
        let document: Document = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Usage(format!("{what} is not a manifest: {e}")))?;
        let media_type = match (document.media_type.as_deref(), fallback) {
            (Some(declared), _) if !declared.is_empty() => declared.to_owned(),
            (_, fallback) if !fallback.is_empty() && fallback != "application/json" => {
                fallback.to_owned()
            }
            _ if document.manifests.is_some() => OCI_INDEX.to_owned(),
            _ => OCI_MANIFEST.to_owned(),
        };
        if ![OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&media_type.as_str()) {
            return Err(ClientError::Usage(format!(
                "{what} has media type {media_type}, which is not an image manifest or index"
            )));
        }
        let manifest = Manifest {
            digest: sha256(&bytes),
            media_type,
            bytes,
        };
        Ok((manifest, document))
    }
}

#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub content: Content,
}

/// Where a blob's bytes are.
#[derive(Debug, Clone)]
pub enum Content {
    /// In a file, from `offset` (a layout's blob, or a member of an archive).
    File { path: PathBuf, offset: u64 },
    /// In another registry: downloaded into `scratch` (verified) the first time it is opened.
    Remote {
        remote: Arc<images::Remote>,
        scratch: PathBuf,
    },
}

impl Content {
    /// A file that holds the blob's bytes from the offset returned.
    pub fn open(&self, digest: &str, size: u64) -> Result<(File, u64), ClientError> {
        match self {
            Content::File { path, offset } => File::open(path)
                .map(|file| (file, *offset))
                .map_err(|e| ClientError::Usage(format!("cannot open {}: {e}", path.display()))),
            Content::Remote { remote, scratch } => {
                remote::download(remote, scratch, digest, size).map(|file| (file, 0))
            }
        }
    }
}

/// What a manifest or an index says, as far as copying it needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// How a layout or a registry gives the manifests an index names and finds blobs.
trait Store {
    /// The bytes of the manifest `descriptor` names, checked against its digest and size.
    fn manifest(&self, descriptor: &Descriptor) -> Result<Vec<u8>, ClientError>;
    fn blob(&self, descriptor: &Descriptor) -> Result<Content, ClientError>;
}

/// The image whose top manifest is `top` (an image manifest, or an index of them).
fn collect(store: &impl Store, top: Manifest, document: Document) -> Result<Image, ClientError> {
    let mut image = Image {
        manifests: Vec::new(),
        blobs: Vec::new(),
    };
    if let Some(children) = &document.manifests {
        for child in children {
            hex_of(&child.digest)?;
            let bytes = store.manifest(child)?;
            let what = format!("manifest {}", child.digest);
            let (manifest, child_document) = Manifest::new(bytes, &child.media_type, &what)?;
            if child_document.manifests.is_some() {
                return Err(ClientError::Usage(format!(
                    "{what} is an index inside an index, which is not pushed"
                )));
            }
            add_blobs(store, &mut image, &child_document, &manifest.digest)?;
            image.manifests.push(manifest);
        }
    } else {
        add_blobs(store, &mut image, &document, &top.digest)?;
    }
    image.manifests.push(top);
    Ok(image)
}

fn add_blobs(
    store: &impl Store,
    image: &mut Image,
    document: &Document,
    digest: &str,
) -> Result<(), ClientError> {
    let config = document
        .config
        .as_ref()
        .ok_or_else(|| ClientError::Usage(format!("manifest {digest} names no config")))?;
    for descriptor in std::iter::once(config).chain(document.layers.iter().flatten()) {
        hex_of(&descriptor.digest)?;
        if image.blobs.iter().any(|b| b.digest == descriptor.digest) {
            continue;
        }
        image.blobs.push(Blob {
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            content: store.blob(descriptor)?,
        });
    }
    Ok(())
}

/// The hex of a `sha256:` digest; any other digest is refused (and never becomes a path).
fn hex_of(digest: &str) -> Result<&str, ClientError> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| ClientError::Usage(format!("{digest:?} is not a sha256 digest")))
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks that `bytes` are what `descriptor` says.
fn verify(bytes: &[u8], descriptor: &Descriptor, what: &str) -> Result<(), ClientError> {
    let actual = sha256(bytes);
    if bytes.len() as u64 != descriptor.size || actual != descriptor.digest {
        return Err(ClientError::Usage(format!(
            "{what} does not match its descriptor: {} bytes of digest {actual}, {} bytes of {} expected",
            bytes.len(),
            descriptor.size,
            descriptor.digest
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_named_as_skopeo_names_them() {
        let base = Path::new("/stacks");
        let parse = |text: &str| Source::parse(text, base).expect(text);
        assert_eq!(
            parse("oci:build/web:v1"),
            Some(Source::Layout {
                dir: "/stacks/build/web".into(),
                tag: Some("v1".into())
            })
        );
        assert_eq!(
            parse("oci:/abs/web"),
            Some(Source::Layout {
                dir: "/abs/web".into(),
                tag: None
            })
        );
        assert_eq!(
            parse("docker-archive:web.tar:web:latest"),
            Some(Source::Archive {
                file: "/stacks/web.tar".into(),
                image: Some("web:latest".into())
            })
        );
        let Some(Source::Registry(reference)) = parse("docker://ghcr.io/o/app:1") else {
            panic!("not a registry source");
        };
        assert_eq!(
            (reference.registry.as_str(), reference.repository.as_str()),
            ("ghcr.io", "o/app")
        );
        assert_eq!(
            parse("localhost:8080/artifacts/default/web@sha256:00"),
            None
        );
        assert_eq!(parse("nginx:1.27"), None);
        for bad in ["oci:", "docker-archive::x", "docker://Bad/Name"] {
            assert!(Source::parse(bad, base).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_sha256_digests_become_paths() {
        assert!(hex_of(&format!("sha256:{}", "a".repeat(64))).is_ok());
        for bad in [
            "sha256:../../etc/passwd".to_owned(),
            format!("sha512:{}", "a".repeat(128)),
            format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(hex_of(&bad).is_err(), "{bad}");
        }
    }
}
