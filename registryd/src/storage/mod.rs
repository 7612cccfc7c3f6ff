//! The files under `<data>/registry/`: content-addressed blobs and upload sessions' bytes.
//!
//! ```text
//! registry/
//!   registry.db*                 metadata (see crate::meta)
//!   blobs/<alg>/<2 hex>/<hex>    one file per blob or manifest, named by its digest, immutable
//!   uploads/<id>                 an upload session's bytes so far
//!   tmp/<random>                 a manifest being written, before it is renamed into blobs/
//! ```
//!
//! A file appears under `blobs/` only by `rename` of a complete, verified, fsynced file,
//! followed by an fsync of its directory, so a blob file is never partial, even after a
//! crash. Everything here blocks: callers run it on the blocking pool.

pub mod blobs;
pub mod uploads;

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    /// Creates the directories under `root` (registryd's state directory) if needed.
    pub fn open(root: &Path) -> Result<Storage, Error> {
        let storage = Storage {
            root: root.to_path_buf(),
        };
        for dir in [
            storage.blobs_dir(),
            storage.uploads_dir(),
            storage.tmp_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        }
        sync_dir(root)?;
        Ok(storage)
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join("registry.db")
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
}

/// Makes a directory's entries (a created, renamed or removed file) durable.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

/// Removes a file; one that is not there (never created, or removed already) is fine.
pub fn remove_if_present(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// A random identifier: 128 bits as 32 hex digits.
pub fn random_id() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(Error::Random)?;
    Ok(hex::encode(bytes))
}

/// True for strings [`random_id`] could have made: the only names used under `uploads/`.
pub fn is_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
