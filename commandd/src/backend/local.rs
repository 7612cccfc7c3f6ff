//! The default backend, on the data volume: documents in the `kv` table of commandd's SQLite
//! file, bodies as files under `<data>/commands/blobs/<commandId>/<params|response>`, each
//! written to `tmp/`, fsynced and renamed into place. Presigned requests are `http` requests
//! to the manager's `/v1/commands/storage/...`, signed with the signing key and expiring.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use rusqlite::{OptionalExtension, params};

use plumbing::clock;
use protocol::commands::signing;
use protocol::commands::{BlobKind, Operation, PresignedBackend, PresignedRequest};

use super::{Blobs, BoxFuture, Kv, blob_path, check_command_id, is_command_id};
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

impl Blobs for LocalBlobs {
    fn put<'a>(&'a self, command_id: &'a str, kind: BlobKind, bytes: Bytes) -> BoxFuture<'a, ()> {
        let this = self.clone();
        let command_id = command_id.to_owned();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                check_command_id(&command_id)?;
                let dest = this.file(&command_id, kind);
                let dir = this.inner.root.join(&command_id);
                if !dir.is_dir() {
                    std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
                    sync_dir(&this.inner.root)?;
                }
                let temporary = this.inner.tmp.join(format!(
                    "{command_id}.{}.{}",
                    kind.as_str(),
                    crate::ids::lease()?
                ));
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&temporary)
                    .map_err(Error::io("create", &temporary))?;
                let written = file.write_all(&bytes).and_then(|()| file.sync_all());
                drop(file);
                if let Err(e) = written {
                    // A body cut short by a full volume takes no room until the next start.
                    let _ = std::fs::remove_file(&temporary);
                    return Err(Error::io("write", &temporary)(e));
                }
                std::fs::rename(&temporary, &dest)
                    .map_err(Error::io("rename into place", &dest))?;
                sync_dir(&dir)
            })
            .await?
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
}
