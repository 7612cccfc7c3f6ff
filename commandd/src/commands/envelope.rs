//! What a receiver gets: a command's envelope, built afresh for every delivery so that
//! its URLs and response token outlive the wait before it; absolute for a push, relative to
//! the lease endpoint for a lease.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tracing::warn;

use plumbing::clock;
use protocol::commands::signing;
use protocol::commands::{
    BlobKind, BodySpec, Envelope, INLINE_MAX_BYTES, Operation, PROTOCOL, PresignedBackend,
    ResponseHandling,
};

use super::Commands;
use crate::Error;
use crate::store::registry::Command;

impl Commands {
    /// The envelope of `command` (protocol `arc.v1`, its params, the submit URL with a fresh
    /// response token and the response upload request), with absolute URLs (push); leases
    /// make them relative.
    pub(super) async fn envelope(&self, command: &Command) -> Result<Envelope, Error> {
        let mut params = self
            .params_doc(&command.id)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("command {} has no params", command.id)))?;
        if let BodySpec::Storage {
            size: Some(size), ..
        } = &params
            && (1..=INLINE_MAX_BYTES).contains(size)
        {
            match self.blobs.get(&command.id, BlobKind::Params).await {
                Ok(Some(bytes)) => {
                    params = BodySpec::Inline {
                        inline_base64: STANDARD.encode(&bytes),
                    }
                }
                Ok(None) => warn!(command_id = %command.id, "params blob missing; sending its URL"),
                Err(e) => {
                    warn!(command_id = %command.id, error = %e, "params blob unreadable; sending its URL")
                }
            }
        }
        if let BodySpec::Storage {
            storage_get_request,
            ..
        } = &mut params
        {
            // Always fresh: a command may wait longer than a URL minted earlier lives.
            *storage_get_request =
                Some(self.download_request(&command.id, BlobKind::Params).await?);
        }
        let key = {
            let key = self.key.clone();
            tokio::task::spawn_blocking(move || key.get()).await??
        };
        let expires = clock::now_secs() + signing::RESPONSE_TOKEN_SECS;
        let token = signing::response_token(&key, &command.id, expires);
        Ok(Envelope {
            protocol: PROTOCOL.to_owned(),
            deployment_id: command.deployment_id.clone(),
            target: command.target.clone(),
            command_id: command.id.clone(),
            attempt: command.attempt,
            deadline: command.deadline.map(clock::rfc3339),
            command: command.name.clone(),
            params,
            response_handling: ResponseHandling {
                max_inline_bytes: INLINE_MAX_BYTES,
                submit_response_url: format!(
                    "{}/commands/{}/response?response_token={token}&expires={expires}",
                    self.api_url, command.id
                ),
                storage_upload_request: self
                    .blobs
                    .presign(
                        Operation::Put,
                        &command.id,
                        BlobKind::Response,
                        signing::RESPONSE_UPLOAD_SECS,
                    )
                    .await?,
            },
        })
    }

    /// Manager URLs in a lease-served envelope become references relative to the lease
    /// endpoint `{api_url}/commands/leases`, as the public manager serves them; others stay
    /// as they are.
    pub(super) fn relativize(&self, envelope: &mut Envelope) {
        let relative = |url: &mut String| {
            if let Some(rest) = url.strip_prefix(&format!("{}/commands/", self.api_url)) {
                *url = rest.to_owned();
            } else if let Some(rest) = url.strip_prefix(&format!("{}/", self.api_url)) {
                *url = format!("../{rest}");
            }
        };
        relative(&mut envelope.response_handling.submit_response_url);
        if let PresignedBackend::Http { url, .. } =
            &mut envelope.response_handling.storage_upload_request.backend
        {
            relative(url);
        }
        if let BodySpec::Storage {
            storage_get_request: Some(request),
            ..
        } = &mut envelope.params
            && let PresignedBackend::Http { url, .. } = &mut request.backend
        {
            relative(url);
        }
    }
}
