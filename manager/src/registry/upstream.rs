//! What of a client's `/v2` request reaches registryd, and what of registryd's answer
//! reaches the client: only the headers registryd acts on go in (the credentials least of
//! all), and the headers about registryd's connection do not come out. Bodies are streamed
//! both ways without being copied, so memory stays bounded by hyper's buffers whatever the
//! blob's size.

use axum::body::Body;
use http::header::{self, HeaderName};
use http::{HeaderMap, Method};

use crate::daemons::Call;

/// The request headers registryd acts on, as the public manager forwards them; nothing else is
/// forwarded, the credentials least of all. Framing (`Content-Length` or chunked) follows the
/// body.
const FORWARDED_REQUEST_HEADERS: [HeaderName; 9] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::ACCEPT,
    header::RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
];

/// Headers about one connection, not the message (RFC 9110 §7.6.1): never copied from
/// registryd's answer to the client's.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The call that forwards a client's request to registryd: `method path_and_query` with
/// `body` streamed and the headers of `headers` that registryd acts on.
pub fn call(method: Method, path_and_query: String, headers: &HeaderMap, body: Body) -> Call {
    Call::new(method, path_and_query)
        .headers_from(headers, &FORWARDED_REQUEST_HEADERS)
        .stream(body)
}

/// Removes the headers that are about registryd's connection rather than its answer.
pub fn drop_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_registryd_acts_on_is_forwarded() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer ax_admin_secret"),
            ("content-type", "application/octet-stream"),
            ("content-length", "5"),
            ("content-range", "0-4"),
            ("if-none-match", "\"sha256:ab\""),
            ("x-forwarded-host", "mgr.test"),
            ("cookie", "a=b"),
        ] {
            headers.insert(name, value.parse().expect("header"));
        }
        let call = call(Method::PATCH, "/v2/a".into(), &headers, Body::empty());
        let mut sent: Vec<&str> = call.headers().keys().map(HeaderName::as_str).collect();
        sent.sort_unstable();
        assert_eq!(
            sent,
            [
                "content-length",
                "content-range",
                "content-type",
                "if-none-match"
            ]
        );
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("content-length", "3"),
            ("location", "/v2/a/blobs/uploads/x"),
            ("docker-content-digest", "sha256:ab"),
        ] {
            headers.insert(name, value.parse().expect("header"));
        }
        drop_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            ["content-length", "docker-content-digest", "location"]
        );
    }
}
