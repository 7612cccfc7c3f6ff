//! `%XX` escapes in paths and query strings, decoded one way for the whole system: the
//! manager authorizes a `/v2` request by the names it decodes, and registryd acts on the
//! names it decodes, so both must read every escape alike. Encoding is one way too, so that
//! whatever we put into a path or query decodes back to what it was.

/// `%XX` escapes decoded; `+` stays `+` (media types contain one). A malformed escape or a
/// result that is not UTF-8 is `None`: refused, never passed on half-read.
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Every byte but RFC 3986's unreserved characters (`A-Z a-z 0-9 - _ . ~`) as `%XX`: safe
/// as one path segment or one query value, whatever it holds.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn what_is_encoded_decodes_back() {
        for input in ["artifacts/default-x_1.2~", "a/b c?&=+%", "é", ""] {
            assert_eq!(decode(&encode(input)).as_deref(), Some(input), "{input:?}");
        }
        assert_eq!(
            encode("artifacts/default-x_1.2~"),
            "artifacts%2Fdefault-x_1.2~"
        );
        assert_eq!(encode("a b+c"), "a%20b%2Bc");
    }

    #[test]
    fn escapes_are_decoded_strictly() {
        let cases = [
            ("sha256%3Aab", Some("sha256:ab")),
            ("a+b%2Bc", Some("a+b+c")),
            ("plain", Some("plain")),
            ("%zz", None),
            ("%4", None),
            ("%ff", None),
        ];
        for (input, expected) in cases {
            assert_eq!(decode(input).as_deref(), expected, "{input:?}");
        }
    }
}
