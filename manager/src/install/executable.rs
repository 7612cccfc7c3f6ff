//! The executable this process runs, served as the agent's binary, and its SHA-256.
//!
//! It is opened through `/proc/self/exe` rather than by the path `current_exe()` names: an
//! upgrade may have replaced or removed that file since the start, while the running one
//! stays what this manager is. A running executable cannot be written to (ETXTBSY), so the
//! checksum computed once stays true for the life of the process.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tracing::warn;

use crate::Error;

const PATH: &str = "/proc/self/exe";

/// Read at a time, for a download and for the checksum.
const CHUNK: usize = 256 * 1024;

/// Opened on first use, then kept open; the checksum is computed on the first request for it
/// (hashing 100 MB takes a fraction of a second that a start-up need not wait for).
#[derive(Debug, Default)]
pub struct RunningExecutable {
    opened: OnceCell<Arc<Opened>>,
}

#[derive(Debug)]
struct Opened {
    file: File,
    len: u64,
    sha256: OnceCell<String>,
}

impl RunningExecutable {
    /// Its size, and its bytes as a body read a chunk at a time off the reactor.
    pub async fn stream(&self) -> Result<(u64, Body), Error> {
        let opened = self.open().await?;
        let len = opened.len;
        let chunks = futures_util::stream::unfold(0u64, move |offset| {
            let opened = opened.clone();
            async move {
                if offset >= len {
                    return None;
                }
                let n = usize::try_from(len - offset).map_or(CHUNK, |left| left.min(CHUNK));
                match read(opened, offset, n).await {
                    Ok(bytes) => Some((Ok(bytes), offset + n as u64)),
                    // The client sees the body end short of its Content-Length.
                    Err(error) => {
                        warn!(%error, "reading the running executable failed mid-download");
                        Some((Err(error), len))
                    }
                }
            }
        });
        Ok((len, Body::from_stream(chunks)))
    }

    /// Its size, without reading it.
    pub async fn size(&self) -> Result<u64, Error> {
        Ok(self.open().await?.len)
    }

    /// The lowercase hex SHA-256 of its bytes.
    pub async fn sha256(&self) -> Result<String, Error> {
        let opened = self.open().await?;
        opened
            .sha256
            .get_or_try_init(|| {
                let opened = opened.clone();
                async move { blocking(move || hash(&opened)).await }
            })
            .await
            .cloned()
    }

    async fn open(&self) -> Result<Arc<Opened>, Error> {
        self.opened
            .get_or_try_init(|| {
                blocking(|| {
                    let file = File::open(PATH)?;
                    let len = file.metadata()?.len();
                    Ok(Arc::new(Opened {
                        file,
                        len,
                        sha256: OnceCell::new(),
                    }))
                })
            })
            .await
            .cloned()
    }
}

/// Positional reads: every download has its own offset in the one open file.
async fn read(opened: Arc<Opened>, offset: u64, n: usize) -> io::Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; n];
        opened.file.read_exact_at(&mut buf, offset)?;
        Ok(Bytes::from(buf))
    })
    .await
    .unwrap_or_else(|joined| Err(io::Error::other(joined)))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|joined| Err(io::Error::other(joined)))
        .map_err(Error::Executable)
}

fn hash(opened: &Opened) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    while offset < opened.len {
        let n = usize::try_from(opened.len - offset).map_or(CHUNK, |left| left.min(CHUNK));
        opened.file.read_exact_at(&mut buf[..n], offset)?;
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_serves_and_hashes_the_bytes_of_the_running_executable() {
        let executable = RunningExecutable::default();
        let expected = std::fs::read(PATH).expect("the test binary");
        let (len, body) = executable.stream().await.expect("stream");
        assert_eq!(len, expected.len() as u64);
        let served = axum::body::to_bytes(body, usize::MAX).await.expect("body");
        assert!(served == expected, "the served bytes differ");
        let sha256 = executable.sha256().await.expect("checksum");
        assert_eq!(sha256, hex::encode(Sha256::digest(&expected)));
        assert_eq!(executable.sha256().await.expect("cached"), sha256);
        assert_eq!(executable.size().await.expect("size"), len);
    }
}
