//! The crate's one error type: every failure of a pull, an unpack or a cache operation, each
//! naming what it was about (the reference, the blob, the layer entry).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("another image store holds {}", root.display())]
    Locked { root: PathBuf },

    #[error("cannot reach {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },

    #[error("{url} answered {status}: {detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },

    #[error("{registry} refused the credentials: {detail}")]
    Unauthorized { registry: String, detail: String },

    #[error("{what} has media type {media_type:?}, which cannot be pulled")]
    UnsupportedMediaType { what: String, media_type: String },

    #[error("{reference} has no image for {os}/{architecture}")]
    NoMatchingPlatform {
        reference: String,
        os: String,
        architecture: String,
    },

    #[error("manifest {what} is invalid: {reason}")]
    InvalidManifest { what: String, reason: String },

    #[error("image config {digest} is invalid: {reason}")]
    InvalidConfig { digest: String, reason: String },

    #[error("blob {digest} does not match its descriptor: {reason}")]
    BlobMismatch { digest: String, reason: String },

    #[error("layer {layer}: cannot read the archive: {reason}")]
    InvalidLayer { layer: String, reason: String },

    #[error("layer {layer}: entry {entry:?} is refused: {reason}")]
    UnsafeEntry {
        layer: String,
        entry: String,
        reason: String,
    },

    #[error("cached image {digest} is unreadable: {reason}")]
    CorruptCache { digest: String, reason: String },
}

impl Error {
    /// A failure of the registry or the way to it that may pass by itself: no connection, a
    /// connection broken mid-answer (a registry restarting), or an answer that says "later"
    /// (5xx, 408, 429). Nothing about the image itself is ever transient.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Status { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches what was being done to an I/O error.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: what(),
            source,
        })
    }
}
