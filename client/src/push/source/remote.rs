//! `docker://REF`: an image in another registry, read as the image cache pulls it (Basic, or
//! the Bearer token exchange a `401` asks for; anonymous, except on the manager itself, which
//! is read with the API key). A blob is downloaded, its digest verified, into the scratch
//! directory only when the manager's registry lacks it.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use images::{Auth, Reference, Remote};

use super::{Content, Descriptor, Image, MANIFEST_LIMIT, Manifest, Store, collect, hex_of};
use crate::api::Manager;
use crate::error::ClientError;

pub fn open(
    reference: &Reference,
    manager: &Manager,
    scratch: &Path,
) -> Result<Image, ClientError> {
    // The API key goes to the manager only, never to a registry a stack names.
    let auth = if reference.registry == manager.host() {
        Auth::basic("token", manager.key())
    } else {
        Auth::None
    };
    let remote = Arc::new(Remote::new(reference.clone(), auth));
    let (bytes, media_type) = remote
        .manifest(reference.manifest_reference(), MANIFEST_LIMIT)
        .map_err(failed)?;
    let (top, document) = Manifest::new(bytes, &media_type, &reference.to_string())?;
    let store = Registry {
        remote,
        scratch: scratch.to_path_buf(),
    };
    collect(&store, top, document)
}

/// The blob's file in `scratch`, downloaded first unless an earlier attempt did.
pub fn download(
    remote: &Remote,
    scratch: &Path,
    digest: &str,
    size: u64,
) -> Result<File, ClientError> {
    let hex = hex_of(digest)?;
    let path = scratch.join(hex);
    let io = |e: std::io::Error, p: &Path| {
        ClientError::Failed(format!("cannot write {}: {e}", p.display()))
    };
    if !path.exists() {
        let partial = scratch.join(format!("{hex}.partial"));
        let file = File::create(&partial).map_err(|e| io(e, &partial))?;
        let mut out = BufWriter::new(file);
        remote.blob(digest, size, &mut out).map_err(failed)?;
        out.into_inner().map_err(|e| io(e.into_error(), &partial))?;
        std::fs::rename(&partial, &path).map_err(|e| io(e, &path))?;
    }
    File::open(&path).map_err(|e| io(e, &path))
}

fn failed(error: images::Error) -> ClientError {
    match error {
        images::Error::InvalidReference { .. } => ClientError::Usage(error.to_string()),
        other => ClientError::Failed(other.to_string()),
    }
}

struct Registry {
    remote: Arc<Remote>,
    scratch: PathBuf,
}

impl Store for Registry {
    fn manifest(&self, descriptor: &Descriptor) -> Result<Vec<u8>, ClientError> {
        let (bytes, _) = self
            .remote
            .manifest(&descriptor.digest, MANIFEST_LIMIT)
            .map_err(failed)?;
        if bytes.len() as u64 != descriptor.size {
            return Err(ClientError::Failed(format!(
                "manifest {} has {} bytes, its index says {}",
                descriptor.digest,
                bytes.len(),
                descriptor.size
            )));
        }
        Ok(bytes)
    }

    fn blob(&self, _descriptor: &Descriptor) -> Result<Content, ClientError> {
        Ok(Content::Remote {
            remote: self.remote.clone(),
            scratch: self.scratch.clone(),
        })
    }
}
