//! Where command payloads live: a key-value store for the params and
//! response documents and a blob store for bodies too large for it. The protocol code sees
//! only these two narrow traits; the local implementation ([`local`]) is the only one today.
//! A DynamoDB/S3, Firestore/GCS or Azure Table/Blob backend implements the same two traits
//! (the blob store's presigned requests then point at the cloud, not at the manager).
//!
//! Command state, leases, idempotency keys and deadlines are not here: they live in the
//! registry ([`crate::store`]), on the data volume, where every transition is one conditional
//! statement.

pub mod local;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use axum::body::{Body, Bytes};

use protocol::commands::{BlobKind, Operation, PresignedRequest};

use crate::Error;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Values of at most a few tens of kilobytes, by key.
pub trait Kv: Send + Sync + Debug {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>>;
    /// Durable when it returns.
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, ()>;
}

/// A command's large bodies, at `arc/commands/{commandId}/{params|response}`.
pub trait Blobs: Send + Sync + Debug {
    /// Durable when it returns; replaces what was there.
    fn put<'a>(&'a self, command_id: &'a str, kind: BlobKind, bytes: Bytes) -> BoxFuture<'a, ()>;
    /// Streams `body` to durable storage beside the body's place, without holding it whole:
    /// [`StagedBlob::publish`] puts it in place. More than `limit` bytes is
    /// [`Error::PayloadTooLarge`]; a body that breaks off is [`Error::UnreadableBody`]. On
    /// any error nothing is left behind.
    fn stage<'a>(
        &'a self,
        command_id: &'a str,
        kind: BlobKind,
        body: Body,
        limit: u64,
    ) -> BoxFuture<'a, Box<dyn StagedBlob>>;
    /// A small body whole (the envelope inlines params up to 150,000 bytes).
    fn get<'a>(&'a self, command_id: &'a str, kind: BlobKind) -> BoxFuture<'a, Option<Bytes>>;
    /// A body of any size as a stream, with its length.
    fn read<'a>(
        &'a self,
        command_id: &'a str,
        kind: BlobKind,
    ) -> BoxFuture<'a, Option<(u64, Body)>>;
    /// A request a client can make without other credentials, valid for `seconds`.
    fn presign<'a>(
        &'a self,
        operation: Operation,
        command_id: &'a str,
        kind: BlobKind,
        seconds: i64,
    ) -> BoxFuture<'a, PresignedRequest>;
}

/// A body written whole and durably by [`Blobs::stage`], not yet in its place; dropped
/// unpublished, it is gone.
pub trait StagedBlob: Send + Debug {
    /// Puts the body in place, replacing what was there; durable when it returns. Blocking,
    /// so that it can run inside the registry transaction that decides whether it may.
    fn publish(self: Box<Self>) -> Result<(), Error>;
}

/// The storage path of a body, `arc/commands/<commandId>/<params|response>`, the same
/// layout whatever the backend.
pub fn blob_path(command_id: &str, kind: BlobKind) -> String {
    format!("arc/commands/{command_id}/{}", kind.as_str())
}

/// A command id as we make them, so that it is a safe file name and storage key in any
/// backend.
pub fn is_command_id(id: &str) -> bool {
    id.strip_prefix("cmd_").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 64
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// A write under anything but a command id is refused: see [`is_command_id`].
pub fn check_command_id(id: &str) -> Result<(), Error> {
    if is_command_id(id) {
        Ok(())
    } else {
        Err(Error::BadRequest(format!("not a command id: {id:?}")))
    }
}
