//! Blob files: putting a verified file in place, reading one as a stream, removing one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use tokio::sync::mpsc;
use tracing::warn;

use super::{Storage, random_id, remove_if_present, sync_dir};
use crate::digest::{Algorithm, Digest};
use crate::error::Error;

/// Bytes read per chunk when serving a blob; with [`READ_AHEAD`] chunks queued, this bounds
/// what one download holds in memory.
const READ_CHUNK: usize = 256 * 1024;
const READ_AHEAD: usize = 4;

impl Storage {
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs_dir()
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    /// Moves the complete, fsynced file `src` to `digest`'s place, durably. Its mtime is set
    /// to now first: the collector's sweep of rowless files spares recent ones, and a resumed
    /// upload's file may be old. Call it inside [`crate::meta::Meta::call`], together with
    /// recording the blob's row (see [`crate::gc`]).
    pub fn publish(&self, src: &Path, digest: &Digest) -> Result<(), Error> {
        let dest = self.blob_path(digest);
        let shard = dest
            .parent()
            .ok_or_else(|| Error::Inconsistent(format!("blob path {}", dest.display())))?;
        if !shard.is_dir() {
            std::fs::create_dir_all(shard).map_err(Error::io("create", shard))?;
            if let Some(alg_dir) = shard.parent() {
                sync_dir(alg_dir)?;
                sync_dir(&self.blobs_dir())?;
            }
        }
        File::options()
            .write(true)
            .open(src)
            .and_then(|f| f.set_modified(SystemTime::now()))
            .map_err(Error::io("touch", src))?;
        std::fs::rename(src, &dest).map_err(Error::io("rename into place", &dest))?;
        sync_dir(shard)
    }

    /// Writes `bytes` (a manifest) to a fresh fsynced file under `tmp/`, ready to publish;
    /// one that cannot be written whole (a full volume) is removed.
    pub fn write_temp(&self, bytes: &[u8]) -> Result<PathBuf, Error> {
        let path = self.tmp_dir().join(random_id()?);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(Error::io("create", &path))?;
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(Error::io("write", &path)(e));
        }
        Ok(path)
    }

    /// Moves a blob published by [`Storage::publish`] back to `src`, when the metadata that
    /// would have recorded it could not be committed: an upload keeps its bytes and can be
    /// completed again. Call it inside the same [`crate::meta::Meta::call`].
    pub fn unpublish(&self, digest: &Digest, src: &Path) -> Result<(), Error> {
        std::fs::rename(self.blob_path(digest), src).map_err(Error::io("move back", src))
    }

    /// Removes a temporary file that was not published.
    pub fn remove_temp(&self, path: &Path) -> Result<(), Error> {
        std::fs::remove_file(path).map_err(Error::io("remove", path))
    }

    /// Removes a blob file; one already gone is fine.
    pub fn remove_blob(&self, digest: &Digest) -> Result<(), Error> {
        remove_if_present(&self.blob_path(digest))
    }

    /// Opens `digest` for reading `len` bytes from `start`, as a body streamed from a
    /// blocking reader through a bounded channel. The file is opened before this returns, so
    /// a collector that removes it afterwards cannot cut the download short.
    pub async fn stream_blob(&self, digest: &Digest, start: u64, len: u64) -> Result<Body, Error> {
        let path = self.blob_path(digest);
        let file = tokio::task::spawn_blocking(move || {
            let mut file = File::open(&path).map_err(Error::io("open", &path))?;
            file.seek(SeekFrom::Start(start))
                .map_err(Error::io("seek", &path))?;
            Ok::<_, Error>((file, path))
        })
        .await??;
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(READ_AHEAD);
        tokio::task::spawn_blocking(move || read_into(file, len, &tx));
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Body::from_stream(stream))
    }
}

fn read_into(
    (mut file, path): (File, PathBuf),
    mut remaining: u64,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    while remaining > 0 {
        let n = usize::try_from(remaining).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
        let mut buf = vec![0u8; n];
        let item = match file.read_exact(&mut buf) {
            Ok(()) => Ok(Bytes::from(buf)),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "blob read failed mid-download");
                Err(e)
            }
        };
        let failed = item.is_err();
        // A closed channel means the client went away.
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
        remaining -= n as u64;
    }
}

/// Hashes the first `len` bytes of `path` with `algorithm`.
pub fn hash_file(
    path: &Path,
    algorithm: Algorithm,
    len: u64,
) -> Result<crate::digest::Hasher, Error> {
    let mut hasher = algorithm.hasher();
    let file = File::open(path).map_err(Error::io("open", path))?;
    let mut reader = file.take(len);
    let mut buf = vec![0u8; 1024 * 1024];
    let mut read = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(Error::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    if read != len {
        return Err(Error::Inconsistent(format!(
            "{} holds {read} bytes, {len} were acknowledged",
            path.display()
        )));
    }
    Ok(hasher)
}
