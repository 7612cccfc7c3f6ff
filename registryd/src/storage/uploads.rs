//! Upload sessions' bytes, `uploads/<id>`: appending a request body while hashing it.
//!
//! The body's chunks cross a bounded channel to a blocking writer that hashes and writes
//! them, so neither hashing nor disk I/O runs on the reactor and memory stays at a few
//! chunks whatever the blob's size. Before appending, the file is cut back to the length
//! the session acknowledged: bytes from a request that failed, or that a crash interrupted,
//! are never part of the upload. An append that fails (a full volume above all) cuts them
//! back at once, so that they take no room meanwhile.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::blobs::hash_file;
use super::{Storage, remove_if_present, sync_dir};
use crate::digest::{Algorithm, Hasher};
use crate::error::Error;

const QUEUED_CHUNKS: usize = 8;
const WRITE_BUFFER: usize = 1024 * 1024;

/// Where the hash of an upload's first bytes comes from.
#[derive(Debug)]
pub enum Resume {
    /// The hasher kept in memory since the last append.
    Live(Box<Hasher>),
    /// Gone (a restart): rehash the acknowledged bytes from disk first.
    Rehash(Algorithm),
}

#[derive(Debug)]
pub struct Appended {
    /// The upload's length now.
    pub length: u64,
    /// The hash of all `length` bytes.
    pub hasher: Hasher,
}

enum Chunk {
    Data(Bytes),
    /// The whole body arrived: make it durable.
    Done,
}

impl Storage {
    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.uploads_dir().join(id)
    }

    /// Appends `body` to upload `id` at `offset` (its acknowledged length), fsyncing before
    /// returning. With `expected`, a body of any other length is refused with
    /// `SIZE_INVALID`. On any error the upload is left at `offset`.
    pub async fn append(
        &self,
        id: &str,
        offset: u64,
        resume: Resume,
        mut body: Body,
        expected: Option<u64>,
    ) -> Result<Appended, Error> {
        let path = self.upload_path(id);
        let dir = self.uploads_dir();
        let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
        let writer =
            tokio::task::spawn_blocking(move || write_chunks(&path, &dir, offset, resume, rx));
        let received = async {
            let mut received = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Error::Body(e.to_string()))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                received += data.len() as u64;
                if expected.is_some_and(|e| received > e) {
                    break;
                }
                if tx.send(Chunk::Data(data)).await.is_err() {
                    // The writer failed; its error is the one to report.
                    return Ok(());
                }
            }
            match expected {
                Some(e) if e != received => Err(Error::SizeInvalid(format!(
                    "{e} bytes declared, {} sent",
                    if received > e {
                        "more".to_owned()
                    } else {
                        received.to_string()
                    }
                ))),
                _ => Ok(()),
            }
        }
        .await;
        if received.is_ok() {
            // Dropping the sender without Done tells the writer to roll back.
            let _ = tx.send(Chunk::Done).await;
        }
        drop(tx);
        let written = writer.await?;
        received?;
        let (written, hasher) = written?;
        Ok(Appended {
            length: offset + written,
            hasher,
        })
    }

    /// Cuts an upload's file back to the `length` its session acknowledged.
    pub fn truncate_upload(&self, id: &str, length: u64) -> Result<(), Error> {
        let path = self.upload_path(id);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_len(length))
            .map_err(Error::io("truncate", &path))
    }

    /// Removes an upload's file; one never created is fine.
    pub fn remove_upload(&self, id: &str) -> Result<(), Error> {
        remove_if_present(&self.upload_path(id))
    }

    /// The hash of an upload's first `length` bytes, read back from disk.
    pub fn rehash_upload(
        &self,
        id: &str,
        algorithm: Algorithm,
        length: u64,
    ) -> Result<Hasher, Error> {
        let path = self.upload_path(id);
        if length == 0 && !path.exists() {
            return Ok(algorithm.hasher());
        }
        hash_file(&path, algorithm, length)
    }
}

/// Appends what `rx` brings to `path` from `offset`; on any failure the file is left at
/// `offset` (and one it created is removed).
fn write_chunks(
    path: &Path,
    dir: &Path,
    offset: u64,
    resume: Resume,
    rx: mpsc::Receiver<Chunk>,
) -> Result<(u64, Hasher), Error> {
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(Error::io("open", path))?;
    let written = append_chunks(path, dir, &file, offset, resume, rx, existed);
    if written.is_err() {
        if !existed {
            let _ = std::fs::remove_file(path);
        } else if file.metadata().is_ok_and(|m| m.len() > offset) {
            let _ = file.set_len(offset);
        }
    }
    written
}

fn append_chunks(
    path: &Path,
    dir: &Path,
    mut file: &File,
    offset: u64,
    resume: Resume,
    mut rx: mpsc::Receiver<Chunk>,
    existed: bool,
) -> Result<(u64, Hasher), Error> {
    let io = |action| Error::io(action, path);
    let on_disk = file.metadata().map_err(io("stat"))?.len();
    if on_disk < offset {
        return Err(Error::Inconsistent(format!(
            "{} holds {on_disk} bytes, {offset} were acknowledged",
            path.display()
        )));
    }
    file.set_len(offset).map_err(io("truncate"))?;
    let mut hasher = match resume {
        Resume::Live(hasher) => *hasher,
        Resume::Rehash(algorithm) => hash_file(path, algorithm, offset)?,
    };
    file.seek(SeekFrom::Start(offset)).map_err(io("seek"))?;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut written = 0u64;
    let complete = loop {
        match rx.blocking_recv() {
            Some(Chunk::Data(data)) => {
                hasher.update(&data);
                out.write_all(&data).map_err(io("write"))?;
                written += data.len() as u64;
            }
            Some(Chunk::Done) => break true,
            None => break false,
        }
    };
    if !complete {
        return Err(Error::Body("upload interrupted".into()));
    }
    let file = out.into_inner().map_err(|e| io("write")(e.into_error()))?;
    file.sync_data().map_err(io("fsync"))?;
    if !existed {
        sync_dir(dir)?;
    }
    Ok((written, hasher))
}
