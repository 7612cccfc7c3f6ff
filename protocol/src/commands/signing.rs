//! Signed URLs: the `response_token` of a submit URL (exactly the public manager's scheme,
//! docs/compatibility.md, Commands) and the signature of a storage URL the manager serves for
//! the local backend. Both are HMAC-SHA256 with the 32-byte key in `<data>/signing-key`, which
//! the manager makes and owns: commandd signs with it, and the manager, which authenticates
//! every request, verifies.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::BlobKind;

/// A response token is valid for at most this long after it is checked.
pub const RESPONSE_TOKEN_SECS: i64 = 7200;

/// Storage URLs (params upload and download, response download) live an hour.
pub const STORAGE_URL_SECS: i64 = 3600;

/// The response upload URL of an envelope lives as long as its submit URL.
pub const RESPONSE_UPLOAD_SECS: i64 = RESPONSE_TOKEN_SECS;

/// The file in the data directory (owned by the manager).
pub const KEY_FILE: &str = "signing-key";

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], message: &str) -> HmacSha256 {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(message.as_bytes());
    mac
}

fn sign(key: &[u8], message: &str) -> String {
    hex::encode(mac(key, message).finalize().into_bytes())
}

/// Constant-time check of `signature` (lowercase hex, 64 characters) over `message`, then of
/// the expiry window, in that order as the public manager does.
fn verify(key: &[u8], message: &str, signature: &str, expires: i64, now: i64, max: i64) -> bool {
    if signature.len() != 64 {
        return false;
    }
    let Ok(bytes) = hex::decode(signature) else {
        return false;
    };
    let valid = mac(key, message).verify_slice(&bytes).is_ok();
    valid && now <= expires && expires <= now + max
}

fn response_message(command_id: &str, expires: i64) -> String {
    format!("commands.v1:{command_id}:{expires}")
}

/// `hex(HMAC-SHA256(key, "commands.v1:{commandId}:{expires}"))`.
pub fn response_token(key: &[u8], command_id: &str, expires: i64) -> String {
    sign(key, &response_message(command_id, expires))
}

pub fn verify_response_token(
    key: &[u8],
    command_id: &str,
    token: &str,
    expires: i64,
    now: i64,
) -> bool {
    verify(
        key,
        &response_message(command_id, expires),
        token,
        expires,
        now,
        RESPONSE_TOKEN_SECS,
    )
}

fn storage_message(method: &str, command_id: &str, kind: BlobKind, expires: i64) -> String {
    format!(
        "commands.storage.v1:{method}:{command_id}:{}:{expires}",
        kind.as_str()
    )
}

/// The signature of a storage URL for `method` (`GET` or `PUT`) on one body of a command.
pub fn storage_signature(
    key: &[u8],
    method: &str,
    command_id: &str,
    kind: BlobKind,
    expires: i64,
) -> String {
    sign(key, &storage_message(method, command_id, kind, expires))
}

pub fn verify_storage_signature(
    key: &[u8],
    method: &str,
    command_id: &str,
    kind: BlobKind,
    signature: &str,
    expires: i64,
    now: i64,
) -> bool {
    verify(
        key,
        &storage_message(method, command_id, kind, expires),
        signature,
        expires,
        now,
        RESPONSE_UPLOAD_SECS.max(STORAGE_URL_SECS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test case 2.
        let mac = sign(b"Jefe", "what do ya want for nothing?");
        assert_eq!(
            mac,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn response_tokens() {
        let key = [7u8; 32];
        let now = 1_000_000;
        let expires = now + RESPONSE_TOKEN_SECS;
        let token = response_token(&key, "cmd_a", expires);
        assert_eq!(token.len(), 64);
        assert!(verify_response_token(&key, "cmd_a", &token, expires, now));
        // Another command, another key, a tampered token, expired, too far out, not hex.
        assert!(!verify_response_token(&key, "cmd_b", &token, expires, now));
        assert!(!verify_response_token(
            &[8u8; 32], "cmd_a", &token, expires, now
        ));
        let mut tampered = token.clone().into_bytes();
        tampered[0] = if tampered[0] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert!(!verify_response_token(
            &key, "cmd_a", &tampered, expires, now
        ));
        assert!(!verify_response_token(
            &key,
            "cmd_a",
            &token,
            expires,
            expires + 1
        ));
        let far = now + RESPONSE_TOKEN_SECS + 10;
        let far_token = response_token(&key, "cmd_a", far);
        assert!(!verify_response_token(&key, "cmd_a", &far_token, far, now));
        assert!(!verify_response_token(&key, "cmd_a", "zz", expires, now));
    }

    #[test]
    fn storage_signatures_bind_method_command_and_body() {
        let key = [1u8; 32];
        let now = 50;
        let expires = now + STORAGE_URL_SECS;
        let sig = storage_signature(&key, "PUT", "cmd_a", BlobKind::Params, expires);
        assert!(verify_storage_signature(
            &key,
            "PUT",
            "cmd_a",
            BlobKind::Params,
            &sig,
            expires,
            now
        ));
        assert!(!verify_storage_signature(
            &key,
            "GET",
            "cmd_a",
            BlobKind::Params,
            &sig,
            expires,
            now
        ));
        assert!(!verify_storage_signature(
            &key,
            "PUT",
            "cmd_a",
            BlobKind::Response,
            &sig,
            expires,
            now
        ));
    }
}
