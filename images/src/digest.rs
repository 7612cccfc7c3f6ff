//! Content digests (`sha256:<64 hex>`, the only algorithm registries use for images) and a
//! reader that checks one while the bytes stream through.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext, Result};

/// A validated `sha256:<hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `text`; `what` names it in the error (a manifest's descriptor, a reference).
    pub fn parse(text: &str, what: &str) -> Result<Digest> {
        let valid = text.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if valid {
            Ok(Digest(text.to_owned()))
        } else {
            Err(Error::InvalidManifest {
                what: what.to_owned(),
                reason: format!("{text:?} is not a sha256 digest"),
            })
        }
    }

    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, which names the cache directory.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// Checks that `bytes` are exactly what this digest and `size` describe.
    pub fn verify(&self, bytes: &[u8], size: Option<u64>) -> Result<()> {
        if let Some(size) = size
            && bytes.len() as u64 != size
        {
            return Err(self.mismatch(format!("{} bytes, {size} expected", bytes.len())));
        }
        let actual = Digest::of(bytes);
        if &actual != self {
            return Err(self.mismatch(format!("the content's digest is {actual}")));
        }
        Ok(())
    }

    pub(crate) fn mismatch(&self, reason: String) -> Error {
        Error::BlobMismatch {
            digest: self.0.clone(),
            reason,
        }
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Copies at most `size + 1` bytes of `from` (read from `source`) into `to` while hashing
/// them, then checks the count and the digest: a body longer than its descriptor says is cut
/// off at once rather than read to its end.
pub(crate) fn copy_verified(
    from: impl Read,
    to: &mut impl io::Write,
    digest: &Digest,
    size: u64,
    source: &str,
) -> Result<()> {
    let mut hasher = Sha256::new();
    let mut limited = from.take(size.saturating_add(1));
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = match limited.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The connection broke mid-body: the registry's failure, not the content's.
            Err(e) => {
                return Err(Error::Transport {
                    url: source.to_owned(),
                    source: Box::new(ureq::Error::Io(e)),
                });
            }
        };
        hasher.update(&buffer[..n]);
        total += n as u64;
        to.write_all(&buffer[..n])
            .context(|| format!("storing blob {digest}"))?;
    }
    if total > size {
        return Err(digest.mismatch(format!("more than the {size} bytes expected")));
    }
    if total != size {
        return Err(digest.mismatch(format!("{total} bytes, {size} expected")));
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != digest.as_str() {
        return Err(digest.mismatch(format!("the content's digest is {actual}")));
    }
    Ok(())
}
