//! The params and response documents (§1.6) and their bodies: a document in [`Kv`], with its
//! body inline, or in [`Blobs`] once the document would pass [`KV_VALUE_THRESHOLD`]. Also the
//! calls that reach them directly: the payload API, outside a command's lifecycle, and the
//! local backend's storage URLs.
//!
//! [`Kv`]: crate::backend::Kv
//! [`Blobs`]: crate::backend::Blobs

use axum::body::Bytes;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use protocol::commands::{
    BlobKind, BodySpec, CommandResponse, PayloadResponse, StorePayloadRequest,
};

use super::Commands;
use crate::Error;

/// A params or response document larger than this, serialized, goes to blob storage (§1.6).
const KV_VALUE_THRESHOLD: usize = 20_000;

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ParamsDoc {
    pub(super) params: BodySpec,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ResponseDoc {
    pub(super) response: CommandResponse,
}

pub(super) fn params_key(id: &str) -> String {
    format!("cmd:{id}:params")
}

pub(super) fn response_key(id: &str) -> String {
    format!("cmd:{id}:response")
}

pub(super) fn corrupt(what: String) -> impl FnOnce(serde_json::Error) -> Error {
    move |source| Error::CorruptJson { what, source }
}

impl Commands {
    pub(super) async fn store_params(&self, id: &str, params: &BodySpec) -> Result<(), Error> {
        let doc = ParamsDoc {
            params: params.clone(),
        };
        let bytes = serde_json::to_vec(&doc).map_err(corrupt(params_key(id)))?;
        let bytes = match params {
            BodySpec::Inline { inline_base64 } if bytes.len() > KV_VALUE_THRESHOLD => {
                let raw = STANDARD.decode(inline_base64).map_err(|e| {
                    Error::InvalidCommand(format!("params.inlineBase64 is not base64: {e}"))
                })?;
                let size = raw.len() as u64;
                self.blobs
                    .put(id, BlobKind::Params, Bytes::from(raw))
                    .await?;
                let reference = ParamsDoc {
                    params: BodySpec::Storage {
                        size: Some(size),
                        storage_get_request: None,
                        storage_put_used: Some(true),
                    },
                };
                serde_json::to_vec(&reference).map_err(corrupt(params_key(id)))?
            }
            _ => bytes,
        };
        self.kv.put(&params_key(id), bytes).await
    }

    pub(super) async fn store_response(
        &self,
        id: &str,
        response: &CommandResponse,
    ) -> Result<(), Error> {
        let doc = ResponseDoc {
            response: response.clone(),
        };
        let bytes = serde_json::to_vec(&doc).map_err(corrupt(response_key(id)))?;
        let bytes = match response {
            CommandResponse::Success {
                response: BodySpec::Inline { inline_base64 },
            } if bytes.len() > KV_VALUE_THRESHOLD => {
                let raw = STANDARD.decode(inline_base64).map_err(|e| {
                    Error::BadRequest(format!("response.inlineBase64 is not base64: {e}"))
                })?;
                let size = raw.len() as u64;
                self.blobs
                    .put(id, BlobKind::Response, Bytes::from(raw))
                    .await?;
                let reference = ResponseDoc {
                    response: CommandResponse::Success {
                        response: BodySpec::Storage {
                            size: Some(size),
                            storage_get_request: None,
                            storage_put_used: Some(true),
                        },
                    },
                };
                serde_json::to_vec(&reference).map_err(corrupt(response_key(id)))?
            }
            _ => bytes,
        };
        self.kv.put(&response_key(id), bytes).await
    }

    /// `GET /v1/commands/{id}/payload`: the stored documents as they are.
    pub async fn payload(&self, id: &str) -> Result<PayloadResponse, Error> {
        let params = match self.kv.get(&params_key(id)).await? {
            Some(doc) => Some(
                serde_json::from_slice::<ParamsDoc>(&doc)
                    .map_err(corrupt(params_key(id)))?
                    .params,
            ),
            None => None,
        };
        let response = match self.kv.get(&response_key(id)).await? {
            Some(doc) => Some(
                serde_json::from_slice::<ResponseDoc>(&doc)
                    .map_err(corrupt(response_key(id)))?
                    .response,
            ),
            None => None,
        };
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
        if !crate::backend::local::is_command_id(id) {
            return Err(Error::BadRequest(format!("not a command id: {id:?}")));
        }
        if let Some(params) = &request.params {
            self.store_params(id, params).await?;
        }
        if let Some(response) = &request.response {
            self.store_response(id, response).await?;
        }
        Ok(())
    }

    pub async fn put_blob(&self, id: &str, kind: BlobKind, bytes: Bytes) -> Result<(), Error> {
        if !crate::backend::local::is_command_id(id) {
            return Err(Error::BadRequest(format!("not a command id: {id:?}")));
        }
        self.blobs.put(id, kind, bytes).await
    }

    pub async fn get_blob(&self, id: &str, kind: BlobKind) -> Result<Bytes, Error> {
        self.blobs
            .get(id, kind)
            .await?
            .ok_or_else(|| Error::BlobNotFound(crate::backend::blob_path(id, kind)))
    }
}
