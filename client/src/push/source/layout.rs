//! `oci:DIR[:TAG]`: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`),
//! as `skopeo copy ... oci:DIR:TAG`, `buildah push` or `docker buildx --output type=oci`
//! leave one. The image is the entry of `index.json` whose
//! `org.opencontainers.image.ref.name` is `TAG`, or the only entry when no tag is given.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{
    Content, Descriptor, Document, Image, MANIFEST_LIMIT, Manifest, Store, collect, hex_of, verify,
};
use crate::error::ClientError;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

pub fn open(dir: &Path, tag: Option<&str>) -> Result<Image, ClientError> {
    let index_path = dir.join("index.json");
    let index = std::fs::read(&index_path).map_err(|e| {
        ClientError::Usage(format!(
            "{} cannot be read ({e}): is {} an OCI image layout?",
            index_path.display(),
            dir.display()
        ))
    })?;
    let index: Document = serde_json::from_slice(&index).map_err(|e| {
        ClientError::Usage(format!(
            "{} is not an image index: {e}",
            index_path.display()
        ))
    })?;
    let entries = index.manifests.unwrap_or_default();
    let tags = || {
        let names: Vec<&str> = entries
            .iter()
            .filter_map(|e| e.annotations.get(REF_NAME).map(String::as_str))
            .collect();
        if names.is_empty() {
            "it names no tags".to_owned()
        } else {
            format!("its tags: {}", names.join(", "))
        }
    };
    let chosen = match tag {
        Some(tag) => entries
            .iter()
            .find(|e| e.annotations.get(REF_NAME).is_some_and(|name| name == tag))
            .ok_or_else(|| {
                ClientError::Usage(format!(
                    "no image is tagged {tag:?} in the layout; {}",
                    tags()
                ))
            })?,
        None => match entries.as_slice() {
            [only] => only,
            [] => return Err(ClientError::Usage("the layout holds no image".into())),
            _ => {
                return Err(ClientError::Usage(format!(
                    "the layout holds {} images: name one as oci:DIR:TAG; {}",
                    entries.len(),
                    tags()
                )));
            }
        },
    };
    let store = Layout {
        blobs: dir.join("blobs/sha256"),
    };
    let what = format!("manifest {}", chosen.digest);
    let bytes = store.manifest(chosen)?;
    let (top, document) = Manifest::new(bytes, &chosen.media_type, &what)?;
    collect(&store, top, document)
}

struct Layout {
    blobs: PathBuf,
}

impl Layout {
    fn path(&self, descriptor: &Descriptor) -> Result<PathBuf, ClientError> {
        Ok(self.blobs.join(hex_of(&descriptor.digest)?))
    }
}

impl Store for Layout {
    fn manifest(&self, descriptor: &Descriptor) -> Result<Vec<u8>, ClientError> {
        let path = self.path(descriptor)?;
        let missing =
            |e: std::io::Error| ClientError::Usage(format!("cannot read {}: {e}", path.display()));
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .map_err(missing)?
            .take(MANIFEST_LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(missing)?;
        verify(&bytes, descriptor, &format!("{}", path.display()))?;
        Ok(bytes)
    }

    fn blob(&self, descriptor: &Descriptor) -> Result<Content, ClientError> {
        let path = self.path(descriptor)?;
        let size = std::fs::metadata(&path)
            .map_err(|e| ClientError::Usage(format!("cannot read {}: {e}", path.display())))?
            .len();
        if size != descriptor.size {
            return Err(ClientError::Usage(format!(
                "{} holds {size} bytes, its descriptor says {}",
                path.display(),
                descriptor.size
            )));
        }
        Ok(Content::File { path, offset: 0 })
    }
}
