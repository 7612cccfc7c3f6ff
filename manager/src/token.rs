//! Raw bearer tokens (docs/compatibility.md, Tokens): their kinds, how they are made, and the
//! only forms of them that are ever stored, the SHA-256 hash and the 12-character prefix.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Admin,
    DeploymentGroup,
    Deployment,
}

impl TokenKind {
    /// The `tokens.type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Admin => "admin",
            TokenKind::DeploymentGroup => "deployment-group",
            TokenKind::Deployment => "deployment",
        }
    }

    pub fn from_db(value: &str) -> Option<TokenKind> {
        [
            TokenKind::Admin,
            TokenKind::DeploymentGroup,
            TokenKind::Deployment,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == value)
    }

    /// The raw token's prefix and how many random bytes follow it, hex-encoded.
    fn shape(self) -> (&'static str, usize) {
        match self {
            TokenKind::Admin => ("ax_admin_", 16),
            TokenKind::DeploymentGroup => ("ax_dg_", 20),
            TokenKind::Deployment => ("ax_deploy_", 20),
        }
    }
}

/// Characters of a raw token kept in `tokens.key_prefix`, enough to tell tokens apart in a
/// listing and too few to guess the rest.
const KEY_PREFIX_CHARS: usize = 12;

/// A raw bearer token. Its `Debug` form is redacted so that it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct RawToken(String);

impl RawToken {
    pub fn generate(kind: TokenKind) -> Result<RawToken, Error> {
        let (prefix, len) = kind.shape();
        let mut random = vec![0u8; len];
        getrandom::fill(&mut random).map_err(Error::Random)?;
        Ok(RawToken(format!("{prefix}{}", hex::encode(random))))
    }

    pub fn new(raw: impl Into<String>) -> RawToken {
        RawToken(raw.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        hash(&self.0)
    }

    pub fn key_prefix(&self) -> &str {
        self.0
            .char_indices()
            .nth(KEY_PREFIX_CHARS)
            .map_or(&self.0, |(end, _)| &self.0[..end])
    }
}

impl fmt::Debug for RawToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawToken({}…)", self.key_prefix())
    }
}

/// `tokens.key_hash`: lowercase hex SHA-256 of the whole raw token.
pub fn hash(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_public_shapes() {
        for (kind, prefix, len) in [
            (TokenKind::Admin, "ax_admin_", 41),
            (TokenKind::DeploymentGroup, "ax_dg_", 46),
            (TokenKind::Deployment, "ax_deploy_", 50),
        ] {
            let token = RawToken::generate(kind).expect("random");
            let raw = token.expose();
            assert!(raw.starts_with(prefix), "{raw}");
            assert_eq!(raw.len(), len, "{raw}");
            let random = &raw[prefix.len()..];
            assert!(
                random
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{raw}"
            );
            assert_eq!(token.key_prefix(), &raw[..12]);
            assert_eq!(TokenKind::from_db(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn hashes_are_lowercase_hex_sha256() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn short_and_multibyte_tokens_keep_a_whole_prefix() {
        assert_eq!(RawToken::new("short").key_prefix(), "short");
        assert_eq!(RawToken::new("ééééééééééééé").key_prefix(), "éééééééééééé");
        assert!(!format!("{:?}", RawToken::new("ax_admin_0123456789")).contains("3456789"));
    }
}
