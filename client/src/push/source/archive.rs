//! `docker-archive:FILE[:REF]`: the tar `docker save` writes. Its `manifest.json` lists each
//! image's config and layer tars (`<id>/layer.tar` before Docker 25, `blobs/sha256/<hex>`
//! since); the image pushed is an OCI image manifest of those, the layers as they are in the
//! archive (plain tars unless `docker save` compressed them). The archive is read in place:
//! each blob is a range of the tar file, so nothing is extracted or copied.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::{Blob, Content, Image, Manifest, OCI_CONFIG, OCI_MANIFEST, hex_of, sha256};
use crate::error::ClientError;

/// `manifest.json` and image configs are small JSON documents.
const JSON_LIMIT: u64 = 16 << 20;
/// Symbolic and hard links followed to find a member's bytes.
const LINK_HOPS: usize = 8;

/// One image of `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// A member of the tar: where its bytes are, or what it links to.
#[derive(Debug)]
enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

pub fn open(path: &Path, image: Option<&str>) -> Result<Image, ClientError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        ClientError::Usage(format!(
            "{} is not a readable tar ({e}); `docker save IMAGE -o FILE` writes one",
            path.display()
        ))
    };
    let file = File::open(path).map_err(|e| unreadable(&e))?;
    let members = members(&file).map_err(|e| unreadable(&e))?;
    let archive = Archive {
        path: path.to_path_buf(),
        file,
        members,
    };
    if !archive.members.contains_key("manifest.json") {
        return Err(ClientError::Usage(format!(
            "{} holds no manifest.json: is it what `docker save IMAGE -o FILE` writes?",
            path.display()
        )));
    }
    let (offset, size) = archive.find("manifest.json")?;
    let entries: Vec<Entry> =
        serde_json::from_slice(&archive.read(offset, size, "manifest.json")?)
            .map_err(|e| ClientError::Usage(format!("its manifest.json cannot be read: {e}")))?;
    let entry = select(&entries, image)?;

    let (config_offset, config_size) = archive.find(&entry.config)?;
    let config_digest = sha256(&archive.read(config_offset, config_size, &entry.config)?);
    let mut blobs = vec![Blob {
        digest: config_digest.clone(),
        size: config_size,
        content: archive.content(config_offset),
    }];
    let mut layers = Vec::new();
    for name in &entry.layers {
        let (offset, size) = archive.find(name)?;
        let digest = match digest_in_name(name) {
            Some(digest) => digest,
            None => archive.hash(offset, size, name)?,
        };
        let media_type = archive.layer_type(offset, size, name)?;
        layers.push(json!({"mediaType": media_type, "digest": digest, "size": size}));
        if !blobs.iter().any(|b| b.digest == digest) {
            blobs.push(Blob {
                digest,
                size,
                content: archive.content(offset),
            });
        }
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": layers,
    });
    let bytes = manifest.to_string().into_bytes();
    Ok(Image {
        manifests: vec![Manifest {
            digest: sha256(&bytes),
            media_type: OCI_MANIFEST.to_owned(),
            bytes,
        }],
        blobs,
    })
}

/// The image `wanted` names among the entries' `RepoTags`, or the only one.
fn select<'a>(entries: &'a [Entry], wanted: Option<&str>) -> Result<&'a Entry, ClientError> {
    let tags = || {
        let all: Vec<&str> = entries
            .iter()
            .flat_map(|e| e.repo_tags.iter().flatten().map(String::as_str))
            .collect();
        if all.is_empty() {
            "it names no tags".to_owned()
        } else {
            format!("its tags: {}", all.join(", "))
        }
    };
    match wanted {
        Some(wanted) => entries
            .iter()
            .find(|e| {
                e.repo_tags
                    .iter()
                    .flatten()
                    .any(|tag| short_name(tag) == short_name(wanted))
            })
            .ok_or_else(|| {
                ClientError::Usage(format!("no image is tagged {wanted:?} in it; {}", tags()))
            }),
        None => match entries {
            [only] => Ok(only),
            [] => Err(ClientError::Usage(
                "its manifest.json lists no image".into(),
            )),
            _ => Err(ClientError::Usage(format!(
                "it holds {} images: name one as docker-archive:FILE:NAME:TAG; {}",
                entries.len(),
                tags()
            ))),
        },
    }
}

/// A tag as Docker shortens it: without `docker.io/` and `library/`.
fn short_name(tag: &str) -> &str {
    let tag = tag.strip_prefix("docker.io/").unwrap_or(tag);
    tag.strip_prefix("library/").unwrap_or(tag)
}

/// `blobs/sha256/<hex>` (Docker 25 and later) names its digest.
fn digest_in_name(name: &str) -> Option<String> {
    let digest = format!("sha256:{}", name.strip_prefix("blobs/sha256/")?);
    hex_of(&digest).is_ok().then_some(digest)
}

/// Every member of the tar by its normalized name, read with seeks over the file data.
fn members(file: &File) -> std::io::Result<HashMap<String, Member>> {
    let mut members = HashMap::new();
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        let name = normalize(&entry.path()?);
        let kind = entry.header().entry_type();
        let member = if kind.is_symlink() {
            let Some(target) = entry.link_name()? else {
                continue;
            };
            let parent = Path::new(&name).parent().unwrap_or(Path::new(""));
            Member::Link(normalize(&parent.join(target)))
        } else if kind.is_hard_link() {
            let Some(target) = entry.link_name()? else {
                continue;
            };
            Member::Link(normalize(&target))
        } else if kind.is_file() {
            Member::File {
                offset: entry.raw_file_position(),
                size: entry.size(),
            }
        } else {
            continue;
        };
        members.insert(name, member);
    }
    Ok(members)
}

/// `path` as a member name: relative, `.` and `..` resolved.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    parts.join("/")
}

struct Archive {
    path: PathBuf,
    file: File,
    members: HashMap<String, Member>,
}

impl Archive {
    /// Where the bytes of member `name` are, links followed.
    fn find(&self, name: &str) -> Result<(u64, u64), ClientError> {
        let mut current = normalize(Path::new(name));
        for _ in 0..LINK_HOPS {
            match self.members.get(&current) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link(target)) => current = target.clone(),
                None => {
                    return Err(ClientError::Usage(format!(
                        "its manifest.json names {name}, which it does not hold"
                    )));
                }
            }
        }
        Err(ClientError::Usage(format!(
            "{name} links on through more than {LINK_HOPS} members"
        )))
    }

    fn content(&self, offset: u64) -> Content {
        Content::File {
            path: self.path.clone(),
            offset,
        }
    }

    fn read(&self, offset: u64, size: u64, name: &str) -> Result<Vec<u8>, ClientError> {
        if size > JSON_LIMIT {
            return Err(ClientError::Usage(format!(
                "{name} has {size} bytes, more than a JSON document of an image has"
            )));
        }
        let mut bytes = vec![0; usize::try_from(size).unwrap_or(0)];
        self.file
            .read_exact_at(&mut bytes, offset)
            .map_err(|e| self.failed(name, &e))?;
        Ok(bytes)
    }

    /// The digest of a member's bytes (a layer tar of an archive before Docker 25).
    fn hash(&self, offset: u64, size: u64, name: &str) -> Result<String, ClientError> {
        let mut hasher = Sha256::new();
        let mut position = offset;
        let end = offset + size;
        let mut buffer = vec![0; 1 << 20];
        while position < end {
            let want = usize::try_from((end - position).min(buffer.len() as u64)).unwrap_or(0);
            let n = self
                .file
                .read_at(&mut buffer[..want], position)
                .map_err(|e| self.failed(name, &e))?;
            if n == 0 {
                return Err(self.failed(name, &"the archive ends before it does"));
            }
            hasher.update(&buffer[..n]);
            position += n as u64;
        }
        Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// The OCI media type of a layer, from the first bytes: gzip, zstd or a plain tar.
    fn layer_type(&self, offset: u64, size: u64, name: &str) -> Result<&'static str, ClientError> {
        let mut magic = [0u8; 4];
        let n = usize::try_from(size.min(4)).unwrap_or(0);
        self.file
            .read_exact_at(&mut magic[..n], offset)
            .map_err(|e| self.failed(name, &e))?;
        Ok(match magic {
            [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
            [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar",
        })
    }

    fn failed(&self, name: &str, error: &dyn std::fmt::Display) -> ClientError {
        ClientError::Usage(format!(
            "cannot read {name} in {}: {error}",
            self.path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_normalized_and_tags_shortened() {
        assert_eq!(normalize(Path::new("./abc/layer.tar")), "abc/layer.tar");
        assert_eq!(
            normalize(&Path::new("abc").join("../blobs/sha256/00")),
            "blobs/sha256/00"
        );
        assert_eq!(short_name("docker.io/library/web:v1"), "web:v1");
        assert_eq!(short_name("ghcr.io/o/web:v1"), "ghcr.io/o/web:v1");
        let hex = "a".repeat(64);
        assert_eq!(
            digest_in_name(&format!("blobs/sha256/{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(digest_in_name("abc/layer.tar"), None);
    }
}
