//! The params and response documents and their bodies: a document in [`Kv`], with its
//! body inline, or in [`Blobs`] once the document would pass [`KV_VALUE_THRESHOLD`]. Also the
//! calls that reach them directly: the payload API, outside a command's lifecycle, and the
//! local backend's storage URLs.
//!
//! [`Kv`]: crate::backend::Kv
//! [`Blobs`]: crate::backend::Blobs

use axum::body::{Body, Bytes};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::debug;

use plumbing::clock;
use protocol::commands::signing;
use protocol::commands::{
    BlobKind, BodySpec, CommandResponse, CommandState, Operation, PayloadResponse,
    PresignedRequest, STORAGE_BODY_LIMIT, StorePayloadRequest,
};

use super::Commands;
use crate::Error;
use crate::backend::check_command_id;
use crate::store::registry;

/// The state in which a command waits for a body uploaded to its storage URL: params
/// until `upload-complete`, a response while it is dispatched and unanswered.
fn awaited_in(kind: BlobKind) -> CommandState {
    match kind {
        BlobKind::Params => CommandState::PendingUpload,
        BlobKind::Response => CommandState::Dispatched,
    }
}

/// Reads a refused body to its end (or to the limit) and drops it: a client that sends its
/// whole body before reading the answer then gets the answer, not a connection reset under
/// it.
async fn discard(mut body: Body) {
    let mut read = 0u64;
    while read <= STORAGE_BODY_LIMIT
        && let Some(Ok(frame)) = body.frame().await
    {
        read += frame.data_ref().map_or(0, |data| data.len() as u64);
    }
}

/// A params or response document larger than this, serialized, goes to blob storage, as in
/// the public manager (its KV values have a size limit).
const KV_VALUE_THRESHOLD: usize = 20_000;

#[derive(Debug, Serialize, Deserialize)]
struct ParamsDoc {
    params: BodySpec,
}

#[derive(Debug, Serialize, Deserialize)]
struct ResponseDoc {
    response: CommandResponse,
}

fn params_key(id: &str) -> String {
    format!("cmd:{id}:params")
}

fn response_key(id: &str) -> String {
    format!("cmd:{id}:response")
}

fn corrupt(what: String) -> impl FnOnce(serde_json::Error) -> Error {
    move |source| Error::CorruptJson { what, source }
}

impl Commands {
    /// The params as stored; `None` when the command has no params document.
    pub(super) async fn params_doc(&self, id: &str) -> Result<Option<BodySpec>, Error> {
        let doc: Option<ParamsDoc> = self.read(params_key(id)).await?;
        Ok(doc.map(|doc| doc.params))
    }

    /// The response as stored; `None` until one is written.
    pub(super) async fn response_doc(&self, id: &str) -> Result<Option<CommandResponse>, Error> {
        let doc: Option<ResponseDoc> = self.read(response_key(id)).await?;
        Ok(doc.map(|doc| doc.response))
    }

    async fn read<D: DeserializeOwned>(&self, key: String) -> Result<Option<D>, Error> {
        match self.kv.get(&key).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(corrupt(key)),
            None => Ok(None),
        }
    }

    pub(super) async fn store_params(&self, id: &str, params: &BodySpec) -> Result<(), Error> {
        let key = params_key(id);
        let mut doc = ParamsDoc {
            params: params.clone(),
        };
        let mut bytes = serde_json::to_vec(&doc).map_err(corrupt(key.clone()))?;
        if let BodySpec::Inline { inline_base64 } = params
            && bytes.len() > KV_VALUE_THRESHOLD
        {
            doc.params = self
                .spill(id, BlobKind::Params, inline_base64, Error::InvalidCommand)
                .await?;
            bytes = serde_json::to_vec(&doc).map_err(corrupt(key.clone()))?;
        }
        self.kv.put(&key, bytes).await
    }

    pub(super) async fn store_response(
        &self,
        id: &str,
        response: &CommandResponse,
    ) -> Result<(), Error> {
        let key = response_key(id);
        let mut doc = ResponseDoc {
            response: response.clone(),
        };
        let mut bytes = serde_json::to_vec(&doc).map_err(corrupt(key.clone()))?;
        if let CommandResponse::Success {
            response: BodySpec::Inline { inline_base64 },
        } = response
            && bytes.len() > KV_VALUE_THRESHOLD
        {
            doc.response = CommandResponse::Success {
                response: self
                    .spill(id, BlobKind::Response, inline_base64, Error::BadRequest)
                    .await?,
            };
            bytes = serde_json::to_vec(&doc).map_err(corrupt(key.clone()))?;
        }
        self.kv.put(&key, bytes).await
    }

    /// An inline body that would make its document too large, moved to blob storage: the
    /// reference that takes its place in the document. A body that is not base64 is
    /// the caller's mistake, answered with `invalid`.
    async fn spill(
        &self,
        id: &str,
        kind: BlobKind,
        inline_base64: &str,
        invalid: fn(String) -> Error,
    ) -> Result<BodySpec, Error> {
        let raw = STANDARD
            .decode(inline_base64)
            .map_err(|e| invalid(format!("{}.inlineBase64 is not base64: {e}", kind.as_str())))?;
        let size = raw.len() as u64;
        self.blobs.put(id, kind, Bytes::from(raw)).await?;
        Ok(BodySpec::Storage {
            size: Some(size),
            storage_get_request: None,
            storage_put_used: Some(true),
        })
    }

    /// A presigned download of a stored body, for as long as storage URLs live.
    pub(super) async fn download_request(
        &self,
        id: &str,
        kind: BlobKind,
    ) -> Result<PresignedRequest, Error> {
        self.blobs
            .presign(Operation::Get, id, kind, signing::STORAGE_URL_SECS)
            .await
    }

    /// `GET /v1/commands/{id}/payload`: the stored documents as they are.
    pub async fn payload(&self, id: &str) -> Result<PayloadResponse, Error> {
        let params = self.params_doc(id).await?;
        let response = self.response_doc(id).await?;
        if params.is_none() && response.is_none() {
            return Err(Error::CommandNotFound(id.to_owned()));
        }
        Ok(PayloadResponse {
            command_id: id.to_owned(),
            params,
            response,
        })
    }

    /// `PUT /v1/commands/{id}/payload`: writes the documents, bypassing the lifecycle.
    pub async fn store_payload(&self, id: &str, request: StorePayloadRequest) -> Result<(), Error> {
        check_command_id(id)?;
        if let Some(params) = &request.params {
            self.store_params(id, params).await?;
        }
        if let Some(response) = &request.response {
            self.store_response(id, response).await?;
        }
        Ok(())
    }

    /// A `PUT` of the storage URL signed `signature`: it writes once, and only while the
    /// command waits for that body (see [`awaited_in`]). A URL refused already is refused
    /// without storing its body; otherwise the body streams to storage and is put in place in
    /// the one transaction that claims the URL, so of two racing writes one lands. A body that
    /// broke off, was too large or failed to be stored claims nothing: the URL can be retried.
    pub async fn upload(
        &self,
        id: &str,
        kind: BlobKind,
        signature: String,
        body: Body,
    ) -> Result<(), Error> {
        check_command_id(id)?;
        let expected = awaited_in(kind);
        let checked = {
            let (id, signature) = (id.to_owned(), signature.clone());
            self.db
                .call(move |conn| {
                    registry::check_storage_write(conn, &id, kind, &signature, expected)
                })
                .await
        };
        if let Err(refusal) = checked {
            discard(body).await;
            return Err(refusal);
        }
        let staged = self.blobs.stage(id, kind, body, STORAGE_BODY_LIMIT).await?;
        let owned = id.to_owned();
        self.db
            .transaction(move |tx| {
                registry::claim_storage_write(
                    tx,
                    &owned,
                    kind,
                    &signature,
                    expected,
                    clock::now_ms(),
                )?;
                staged.publish()
            })
            .await?;
        debug!(command_id = %id, body = kind.as_str(), "storage upload written");
        Ok(())
    }

    /// A `GET` of a storage URL: the body streamed, and its length.
    pub async fn download(&self, id: &str, kind: BlobKind) -> Result<(u64, Body), Error> {
        self.blobs
            .read(id, kind)
            .await?
            .ok_or_else(|| Error::BlobNotFound(crate::backend::blob_path(id, kind)))
    }
}
