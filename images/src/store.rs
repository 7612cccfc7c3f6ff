//! The content-addressed cache of unpacked images on the data volume.
//!
//! ```text
//! <root>/store.lock            held by the one ImageStore open on <root>
//! <root>/tmp/<work>/           a pull in progress: downloaded layers, the root being built
//! <root>/sha256/<hex>/         one complete image, keyed by its manifest's digest
//!     image.json               digest, config digest and run config
//!     rootfs/                  the unpacked root filesystem
//! ```
//!
//! An image directory appears by one `rename` of a finished work directory, after a
//! `syncfs`, so a crash leaves either nothing or a complete image; `tmp/` is emptied when the
//! store opens. A cached image is never written again: a new version of an image has a new
//! manifest digest and so a directory of its own. Removal renames the directory into `tmp/`
//! first, so an image is never seen half removed either.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use plumbing::lock::{LockError, LockFile};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{
    self, Compression, ConfigBlob, DOCKER_LIST, DOCKER_MANIFEST, Descriptor, Document, ImageConfig,
    OCI_INDEX, OCI_MANIFEST,
};
use crate::reference::Reference;
use crate::registry::{self, Auth, Session};
use crate::unpack::{Unpacker, remove_any, remove_tree};

/// Manifests and configs are small JSON documents; anything larger is refused unread.
const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;
const CONFIG_LIMIT: u64 = 16 * 1024 * 1024;
const IMAGE_CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
const IMAGE_FILE: &str = "image.json";
const ROOTFS_DIR: &str = "rootfs";

/// A pulled image: where its root filesystem is and how to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// The digest of the image manifest (for a multi-platform reference, the manifest of
    /// this machine's platform), which keys the cache.
    pub digest: String,
    pub config_digest: String,
    #[serde(skip)]
    pub rootfs: PathBuf,
    pub config: ImageConfig,
}

/// The image cache under one directory; one per directory at a time.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    agent: ureq::Agent,
    work_counter: AtomicU64,
    _lock: LockFile,
}

impl ImageStore {
    /// Opens (creating it if needed) the store under `root`, and clears what unfinished
    /// pulls left there.
    pub fn open(root: &Path) -> Result<ImageStore> {
        for dir in [root.to_path_buf(), root.join("sha256"), root.join("tmp")] {
            fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        }
        let lock = LockFile::acquire(&root.join("store.lock")).map_err(|e| match e {
            LockError::Held { .. } => Error::Locked {
                root: root.to_path_buf(),
            },
            LockError::Io { path, source } => Error::Io {
                context: format!("locking {}", path.display()),
                source,
            },
        })?;
        let tmp = root.join("tmp");
        for entry in fs::read_dir(&tmp).context(|| format!("listing {}", tmp.display()))? {
            let path = entry
                .context(|| format!("listing {}", tmp.display()))?
                .path();
            remove_any(&path).context(|| format!("removing the unfinished {}", path.display()))?;
        }
        Ok(ImageStore {
            root: root.to_path_buf(),
            agent: registry::agent(),
            work_counter: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// Pulls `reference` (`host[:port]/repository[:tag][@sha256:...]`) unless the image it
    /// names is cached, and returns it. Blocking: network and disk, possibly for minutes.
    pub fn pull(&self, reference: &str, auth: &Auth) -> Result<Image> {
        let reference = Reference::parse(reference)?;
        let insecure = registry::is_loopback(&reference.registry);
        let mut session = Session::new(&self.agent, &reference, insecure, auth);
        let (digest, document) = self.image_manifest(&mut session, &reference)?;
        if let Some(image) = self.cached(&digest)? {
            tracing::debug!(%reference, %digest, "image already unpacked");
            return Ok(image);
        }
        tracing::info!(%reference, %digest, "pulling image");
        let (config_descriptor, layers) = image_parts(&digest, document)?;
        let config_digest =
            Digest::parse(&config_descriptor.digest, &format!("config of {digest}"))?;
        if config_descriptor.size > CONFIG_LIMIT {
            return Err(Error::InvalidConfig {
                digest: config_digest.to_string(),
                reason: format!("{} bytes, more than {CONFIG_LIMIT}", config_descriptor.size),
            });
        }
        let mut config_bytes = Vec::new();
        session.blob(&config_digest, config_descriptor.size, &mut config_bytes)?;
        let config = run_config(&config_digest, &config_bytes)?;

        let work = self.work_dir(&digest)?;
        let built = self.build(&mut session, &work, &layers);
        let built = built.and_then(|()| {
            let image = Image {
                digest: digest.to_string(),
                config_digest: config_digest.to_string(),
                rootfs: PathBuf::new(),
                config,
            };
            write_image_file(&work, &image)?;
            self.publish(&work, &digest)
        });
        if built.is_err() {
            let _ = remove_any(&work);
        }
        built?;
        self.cached(&digest)?.ok_or_else(|| Error::CorruptCache {
            digest: digest.to_string(),
            reason: "it vanished after it was unpacked".to_owned(),
        })
    }

    /// The cached image of manifest digest `digest`, if any.
    pub fn get(&self, digest: &str) -> Result<Option<Image>> {
        let digest = Digest::parse(digest, "the digest asked for")?;
        self.cached(&digest)
    }

    /// Every cached image.
    pub fn list(&self) -> Result<Vec<Image>> {
        let mut images = Vec::new();
        for hex in self.cached_hexes()? {
            if let Ok(digest) = Digest::parse(&format!("sha256:{hex}"), "a cache entry")
                && let Some(image) = self.cached(&digest)?
            {
                images.push(image);
            }
        }
        Ok(images)
    }

    /// Removes every cached image whose manifest digest is not in `keep`; returns the
    /// digests removed. The caller makes sure no workload runs on a removed root.
    pub fn remove_unused(&self, keep: &[&str]) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for hex in self.cached_hexes()? {
            let digest = format!("sha256:{hex}");
            if keep.contains(&digest.as_str()) {
                continue;
            }
            let dir = self.root.join("sha256").join(&hex);
            let doomed = self.root.join("tmp").join(format!(
                "removed-{hex}-{}",
                self.work_counter.fetch_add(1, Ordering::Relaxed)
            ));
            fs::rename(&dir, &doomed).context(|| format!("moving {} out", dir.display()))?;
            remove_tree(&doomed).context(|| format!("removing {}", doomed.display()))?;
            tracing::info!(%digest, "unused image removed");
            removed.push(digest);
        }
        Ok(removed)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image manifest `reference` names, its digest checked; an index is resolved to
    /// this machine's platform.
    fn image_manifest(
        &self,
        session: &mut Session<'_>,
        reference: &Reference,
    ) -> Result<(Digest, Document)> {
        let what = reference.to_string();
        let (bytes, media_type) =
            session.manifest(reference.manifest_reference(), MANIFEST_LIMIT)?;
        let digest = match &reference.digest {
            Some(expected) => {
                expected.verify(&bytes, None)?;
                expected.clone()
            }
            None => Digest::of(&bytes),
        };
        let document = parse_document(&what, &bytes, &media_type)?;
        let Some(entries) = &document.manifests else {
            return Ok((digest, document));
        };
        let architecture = manifest::host_architecture();
        let chosen = entries
            .iter()
            .find(|entry| {
                entry
                    .platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == architecture)
                    && matches!(
                        entry.media_type.as_str(),
                        OCI_MANIFEST | DOCKER_MANIFEST | ""
                    )
            })
            .ok_or_else(|| Error::NoMatchingPlatform {
                reference: what.clone(),
                os: "linux".to_owned(),
                architecture: architecture.to_owned(),
            })?;
        let child = Digest::parse(&chosen.digest, &what)?;
        let (bytes, media_type) = session.manifest(child.as_str(), MANIFEST_LIMIT)?;
        child.verify(&bytes, Some(chosen.size))?;
        let document = parse_document(child.as_str(), &bytes, &media_type)?;
        if document.manifests.is_some() {
            return Err(Error::InvalidManifest {
                what: child.to_string(),
                reason: "an index inside an index".to_owned(),
            });
        }
        Ok((child, document))
    }

    /// Downloads and applies each layer in turn into `<work>/rootfs`.
    fn build(&self, session: &mut Session<'_>, work: &Path, layers: &[LayerBlob]) -> Result<()> {
        let rootfs = work.join(ROOTFS_DIR);
        fs::create_dir(&rootfs).context(|| format!("creating {}", rootfs.display()))?;
        fs::set_permissions(&rootfs, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .context(|| format!("setting the mode of {}", rootfs.display()))?;
        let mut unpacker = Unpacker::new(rootfs);
        let download = work.join("layer");
        for LayerBlob {
            digest,
            size,
            compression,
        } in layers
        {
            let mut file =
                File::create(&download).context(|| format!("creating {}", download.display()))?;
            session.blob(digest, *size, &mut file)?;
            drop(file);
            unpacker.apply(&download, *compression, digest.as_str())?;
            fs::remove_file(&download).context(|| format!("removing {}", download.display()))?;
        }
        unpacker.finish()
    }

    /// Makes the finished `work` the image directory of `digest`: durable first, then
    /// visible at once. A concurrent pull of the same image that got there first wins.
    fn publish(&self, work: &Path, digest: &Digest) -> Result<()> {
        let dir = File::open(work).context(|| format!("opening {}", work.display()))?;
        nix::unistd::syncfs(&dir).map_err(|e| Error::Io {
            context: format!("syncing the file system of {}", work.display()),
            source: e.into(),
        })?;
        let target = self.image_dir(digest);
        match fs::rename(work, &target) {
            Ok(()) => {}
            Err(_) if target.join(IMAGE_FILE).is_file() => {
                remove_tree(work).context(|| format!("removing {}", work.display()))?;
                return Ok(());
            }
            Err(e) => return Err(e).context(|| format!("renaming {} into place", work.display())),
        }
        let parent = self.root.join("sha256");
        File::open(&parent)
            .and_then(|d| d.sync_all())
            .context(|| format!("syncing {}", parent.display()))
    }

    fn cached(&self, digest: &Digest) -> Result<Option<Image>> {
        let dir = self.image_dir(digest);
        let bytes = match fs::read(dir.join(IMAGE_FILE)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context(|| format!("reading {}", dir.display())),
        };
        let mut image: Image = serde_json::from_slice(&bytes).map_err(|e| Error::CorruptCache {
            digest: digest.to_string(),
            reason: e.to_string(),
        })?;
        image.rootfs = dir.join(ROOTFS_DIR);
        Ok(Some(image))
    }

    fn cached_hexes(&self) -> Result<Vec<String>> {
        let dir = self.root.join("sha256");
        let mut hexes = Vec::new();
        for entry in fs::read_dir(&dir).context(|| format!("listing {}", dir.display()))? {
            let entry = entry.context(|| format!("listing {}", dir.display()))?;
            if let Some(name) = entry.file_name().to_str() {
                hexes.push(name.to_owned());
            }
        }
        hexes.sort();
        Ok(hexes)
    }

    fn image_dir(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha256").join(digest.hex())
    }

    fn work_dir(&self, digest: &Digest) -> Result<PathBuf> {
        let work = self.root.join("tmp").join(format!(
            "{}-{}-{}",
            &digest.hex()[..16],
            std::process::id(),
            self.work_counter.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&work).context(|| format!("creating {}", work.display()))?;
        Ok(work)
    }
}

fn parse_document(what: &str, bytes: &[u8], media_type: &str) -> Result<Document> {
    let document: Document = serde_json::from_slice(bytes).map_err(|e| Error::InvalidManifest {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    let declared = document
        .media_type
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or(media_type);
    let known = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
    if !declared.is_empty() && !known.contains(&declared) && declared != "application/json" {
        return Err(Error::UnsupportedMediaType {
            what: format!("manifest {what}"),
            media_type: declared.to_owned(),
        });
    }
    Ok(document)
}

/// A layer as its manifest describes it.
#[derive(Debug)]
struct LayerBlob {
    digest: Digest,
    size: u64,
    compression: Compression,
}

/// The config descriptor and the layers of an image manifest.
fn image_parts(digest: &Digest, document: Document) -> Result<(Descriptor, Vec<LayerBlob>)> {
    let invalid = |reason: &str| Error::InvalidManifest {
        what: digest.to_string(),
        reason: reason.to_owned(),
    };
    let config = document.config.ok_or_else(|| invalid("no config"))?;
    if !IMAGE_CONFIG_TYPES.contains(&config.media_type.as_str()) {
        return Err(Error::UnsupportedMediaType {
            what: format!("the config of {digest}"),
            media_type: config.media_type,
        });
    }
    let mut layers = Vec::new();
    for layer in document.layers.ok_or_else(|| invalid("no layers"))? {
        let layer_digest = Digest::parse(&layer.digest, &format!("a layer of {digest}"))?;
        let compression = Compression::of_layer(&layer.media_type).ok_or_else(|| {
            Error::UnsupportedMediaType {
                what: format!("layer {layer_digest}"),
                media_type: layer.media_type.clone(),
            }
        })?;
        layers.push(LayerBlob {
            digest: layer_digest,
            size: layer.size,
            compression,
        });
    }
    Ok((config, layers))
}

fn run_config(digest: &Digest, bytes: &[u8]) -> Result<ImageConfig> {
    let blob: ConfigBlob = serde_json::from_slice(bytes).map_err(|e| Error::InvalidConfig {
        digest: digest.to_string(),
        reason: e.to_string(),
    })?;
    if let Some(os) = blob.os.as_deref()
        && os != "linux"
    {
        return Err(Error::InvalidConfig {
            digest: digest.to_string(),
            reason: format!("an image for {os}, not linux"),
        });
    }
    Ok(blob.config.map(ImageConfig::from).unwrap_or_default())
}

fn write_image_file(work: &Path, image: &Image) -> Result<()> {
    let path = work.join(IMAGE_FILE);
    let bytes = serde_json::to_vec_pretty(image).map_err(|e| Error::Io {
        context: format!("encoding {}", path.display()),
        source: e.into(),
    })?;
    let mut file = File::create(&path).context(|| format!("creating {}", path.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .context(|| format!("writing {}", path.display()))
}
