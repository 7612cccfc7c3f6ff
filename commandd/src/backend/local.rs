//! The default backend, on the data volume: documents in the `kv` table of commandd's SQLite
//! file, bodies as files under `<data>/commands/blobs/<commandId>/<params|response>`, each
//! streamed to `tmp/`, fsynced and renamed into place, and read back as a stream. Presigned
//! requests are `http` requests to the manager's `/v1/commands/storage/...`, signed with the
//! signing key and expiring.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use rusqlite::{OptionalExtension, params};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio_util::io::ReaderStream;
use tracing::warn;

use plumbing::clock;
use protocol::commands::signing;
use protocol::commands::{BlobKind, Operation, PresignedBackend, PresignedRequest};

use super::{Blobs, BoxFuture, Kv, StagedBlob, blob_path, check_command_id, is_command_id};
use crate::Error;
use crate::key::KeyFile;
use crate::store::Db;

#[derive(Debug, Clone)]
pub struct LocalKv {
    db: Db,
}

impl LocalKv {
    pub fn new(db: Db) -> LocalKv {
        LocalKv { db }
    }
}

impl Kv for LocalKv {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        let key = key.to_owned();
        Box::pin(self.db.call(move |conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM kv WHERE key = ?1")?
                .query_row([key], |row| row.get(0))
                .optional()?)
        }))
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, ()> {
        let key = key.to_owned();
        Box::pin(self.db.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
            Ok(())
        }))
    }
}

/// Bodies reach the file through a buffer this large: a few blocking writes per mebibyte.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Bodies are read back in chunks this large.
const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct LocalBlobs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    tmp: PathBuf,
    /// `{base_url}/v1`, where the manager serves `commands/storage/...`.
    api_url: String,
    key: KeyFile,
}

impl LocalBlobs {
    /// Opens (creating) `<state>/blobs` and `<state>/tmp`, emptying the latter of files a
    /// crash left before their rename.
    pub fn open(state_dir: &Path, api_url: String, key: KeyFile) -> Result<LocalBlobs, Error> {
        let root = state_dir.join("blobs");
        let tmp = state_dir.join("tmp");
        for dir in [&root, &tmp] {
            std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
        }
        for entry in std::fs::read_dir(&tmp).map_err(Error::io("read", &tmp))? {
            let path = entry.map_err(Error::io("read", &tmp))?.path();
            std::fs::remove_file(&path).map_err(Error::io("remove", &path))?;
        }
        Ok(LocalBlobs {
            inner: Arc::new(Inner {
                root,
                tmp,
                api_url,
                key,
            }),
        })
    }

    /// The file of a body. Command ids are our own (`cmd_` and `[0-9a-z]`), checked by the
    /// caller, so they never climb out of the directory.
    fn file(&self, command_id: &str, kind: BlobKind) -> PathBuf {
        self.inner.root.join(command_id).join(kind.as_str())
    }
}

fn sync_dir(path: &Path) -> Result<(), Error> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(Error::io("sync", path))
}

/// A body written to `tmp/`, fsynced, and renamed into place when published.
#[derive(Debug)]
struct LocalStaged {
    temporary: PathBuf,
    dest: PathBuf,
    /// The command's directory, which `dest` is in, and the root that directory is in.
    dir: PathBuf,
    root: PathBuf,
    published: bool,
}

impl StagedBlob for LocalStaged {
    fn publish(mut self: Box<Self>) -> Result<(), Error> {
        if !self.dir.is_dir() {
            std::fs::create_dir_all(&self.dir).map_err(Error::io("create", &self.dir))?;
            sync_dir(&self.root)?;
        }
        std::fs::rename(&self.temporary, &self.dest)
            .map_err(Error::io("rename into place", &self.dest))?;
        self.published = true;
        sync_dir(&self.dir)
    }
}

impl Drop for LocalStaged {
    /// An unpublished body goes, on the blocking pool when there is one: a write refused,
    /// broken off or abandoned with its request leaves nothing behind.
    fn drop(&mut self) {
        if self.published {
            return;
        }
        let temporary = std::mem::take(&mut self.temporary);
        let remove = move || match std::fs::remove_file(&temporary) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                warn!(path = %temporary.display(), error = %e, "temporary body not removed");
            }
            _ => {}
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// Streams `body` into `file` and fsyncs it, refusing more than `limit` bytes. The writes
/// are tokio's, on the blocking pool; in memory are at most the [`WRITE_BUFFER`], tokio's
/// copy of it for the write under way, and one chunk of the body.
async fn write_body(file: File, path: &Path, mut body: Body, limit: u64) -> Result<(), Error> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file));
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::UnreadableBody(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        size += data.len() as u64;
        if size > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        out.write_all(&data)
            .await
            .map_err(Error::io("write", path))?;
    }
    out.flush().await.map_err(Error::io("write", path))?;
    out.into_inner()
        .sync_all()
        .await
        .map_err(Error::io("fsync", path))
}

impl Blobs for LocalBlobs {
    fn put<'a>(&'a self, command_id: &'a str, kind: BlobKind, bytes: Bytes) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let staged = self
                .stage(command_id, kind, Body::from(bytes), u64::MAX)
                .await?;
            tokio::task::spawn_blocking(move || staged.publish()).await?
        })
    }

    fn stage<'a>(
        &'a self,
        command_id: &'a str,
        kind: BlobKind,
        body: Body,
        limit: u64,
    ) -> BoxFuture<'a, Box<dyn StagedBlob>> {
        Box::pin(async move {
            check_command_id(command_id)?;
            let staged = LocalStaged {
                temporary: self.inner.tmp.join(format!(
                    "{command_id}.{}.{}",
                    kind.as_str(),
                    crate::ids::lease()?
                )),
                dest: self.file(command_id, kind),
                dir: self.inner.root.join(command_id),
                root: self.inner.root.clone(),
                published: false,
            };
            let path = staged.temporary.clone();
            let file = tokio::task::spawn_blocking(move || {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(Error::io("create", &path))
            })
            .await??;
            write_body(file, &staged.temporary, body, limit).await?;
            Ok(Box::new(staged) as Box<dyn StagedBlob>)
        })
    }

    fn get<'a>(&'a self, command_id: &'a str, kind: BlobKind) -> BoxFuture<'a, Option<Bytes>> {
        let this = self.clone();
        let command_id = command_id.to_owned();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                if !is_command_id(&command_id) {
                    return Ok(None);
                }
                let path = this.file(&command_id, kind);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io("read", &path)(e)),
                }
            })
            .await?
        })
    }

    fn read<'a>(
        &'a self,
        command_id: &'a str,
        kind: BlobKind,
    ) -> BoxFuture<'a, Option<(u64, Body)>> {
        let path = self.file(command_id, kind);
        let valid = is_command_id(command_id);
        Box::pin(async move {
            if !valid {
                return Ok(None);
            }
            let opened = tokio::task::spawn_blocking(move || match File::open(&path) {
                Ok(file) => {
                    let len = file.metadata().map_err(Error::io("stat", &path))?.len();
                    Ok(Some((file, len)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io("open", &path)(e)),
            })
            .await??;
            Ok(opened.map(|(file, len)| {
                let chunks =
                    ReaderStream::with_capacity(tokio::fs::File::from_std(file), READ_CHUNK);
                (len, Body::from_stream(chunks))
            }))
        })
    }

    fn presign<'a>(
        &'a self,
        operation: Operation,
        command_id: &'a str,
        kind: BlobKind,
        seconds: i64,
    ) -> BoxFuture<'a, PresignedRequest> {
        let this = self.clone();
        let command_id = command_id.to_owned();
        Box::pin(async move {
            let key = {
                let key = this.inner.key.clone();
                tokio::task::spawn_blocking(move || key.get()).await??
            };
            let method = match operation {
                Operation::Put => "PUT",
                Operation::Get => "GET",
                Operation::Delete => "DELETE",
            };
            let expires = clock::now_secs() + seconds;
            let signature = signing::storage_signature(&key, method, &command_id, kind, expires);
            Ok(PresignedRequest {
                backend: PresignedBackend::Http {
                    url: format!(
                        "{}/commands/storage/{command_id}/{}?expires={expires}&signature={signature}",
                        this.inner.api_url,
                        kind.as_str()
                    ),
                    method: method.to_owned(),
                    headers: Default::default(),
                },
                expiration: clock::rfc3339(expires * 1000),
                operation,
                path: blob_path(&command_id, kind),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_are_replaced_whole_and_presigned_for_the_manager() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(signing::KEY_FILE), [9u8; 32]).expect("key");
        let blobs = LocalBlobs::open(
            &dir.path().join("commands"),
            "http://m/v1".into(),
            KeyFile::in_dir(dir.path()),
        )
        .expect("open");
        assert_eq!(
            blobs.get("cmd_a", BlobKind::Params).await.expect("get"),
            None
        );
        blobs
            .put("cmd_a", BlobKind::Params, Bytes::from_static(b"one"))
            .await
            .expect("put");
        blobs
            .put("cmd_a", BlobKind::Params, Bytes::from_static(b"two"))
            .await
            .expect("put");
        assert_eq!(
            blobs
                .get("cmd_a", BlobKind::Params)
                .await
                .expect("get")
                .as_deref(),
            Some(&b"two"[..])
        );
        assert!(
            blobs
                .put("../x", BlobKind::Params, Bytes::new())
                .await
                .is_err()
        );
        let request = blobs
            .presign(Operation::Get, "cmd_a", BlobKind::Response, 3600)
            .await
            .expect("presign");
        assert_eq!(request.path, "arc/commands/cmd_a/response");
        let PresignedBackend::Http { url, method, .. } = request.backend else {
            panic!("http backend");
        };
        assert_eq!(method, "GET");
        assert!(
            url.starts_with("http://m/v1/commands/storage/cmd_a/response?expires="),
            "{url}"
        );
        let tmp = std::fs::read_dir(dir.path().join("commands/tmp")).expect("tmp");
        assert_eq!(tmp.count(), 0);
    }

    #[tokio::test]
    async fn a_staged_body_is_in_place_only_once_published_and_gone_otherwise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = LocalBlobs::open(
            &dir.path().join("commands"),
            "http://m/v1".into(),
            KeyFile::in_dir(dir.path()),
        )
        .expect("open");
        let tmp_files = || {
            std::fs::read_dir(dir.path().join("commands/tmp"))
                .expect("tmp")
                .count()
        };
        let chunks = |parts: Vec<Result<&'static [u8], std::io::Error>>| {
            Body::from_stream(futures_util::stream::iter(
                parts.into_iter().map(|part| part.map(Bytes::from_static)),
            ))
        };
        let staged = blobs
            .stage(
                "cmd_a",
                BlobKind::Response,
                chunks(vec![Ok(b"one "), Ok(b"two")]),
                7,
            )
            .await
            .expect("stage");
        assert_eq!(tmp_files(), 1);
        assert_eq!(
            blobs.get("cmd_a", BlobKind::Response).await.expect("get"),
            None
        );
        tokio::task::spawn_blocking(move || staged.publish())
            .await
            .expect("join")
            .expect("publish");
        let (length, body) = blobs
            .read("cmd_a", BlobKind::Response)
            .await
            .expect("read")
            .expect("a body");
        assert_eq!(length, 7);
        let read = body.collect().await.expect("stream").to_bytes();
        assert_eq!(&read[..], b"one two");

        let too_large = blobs
            .stage(
                "cmd_a",
                BlobKind::Response,
                chunks(vec![Ok(b"one "), Ok(b"two!")]),
                7,
            )
            .await;
        assert!(
            matches!(too_large, Err(Error::PayloadTooLarge { limit: 7 })),
            "{too_large:?}"
        );
        let broken = blobs
            .stage(
                "cmd_a",
                BlobKind::Response,
                chunks(vec![Ok(b"one "), Err(std::io::Error::other("hung up"))]),
                7,
            )
            .await;
        assert!(
            matches!(broken, Err(Error::UnreadableBody(_))),
            "{broken:?}"
        );
        let dropped = blobs
            .stage("cmd_a", BlobKind::Response, chunks(vec![Ok(b"three")]), 7)
            .await
            .expect("stage");
        drop(dropped);
        let emptied = async {
            while tmp_files() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), emptied)
            .await
            .expect("temporary files removed");
        let kept = blobs.get("cmd_a", BlobKind::Response).await.expect("get");
        assert_eq!(kept.as_deref(), Some(&b"one two"[..]));
        assert_eq!(
            blobs
                .read("cmd_b", BlobKind::Params)
                .await
                .expect("read")
                .map(|r| r.0),
            None
        );
    }
}
