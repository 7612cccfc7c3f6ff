//! The address a client reached the manager at, and `Location`s made absolute with it
//! (docs/compatibility.md, Registry proxy). registryd answers relative `Location`s; a client
//! must be sent back to the manager as it reached it: directly, or through a reverse proxy
//! that says where it was reached (`X-Forwarded-Host`/`-Proto`, or `Forwarded`).

use std::net::IpAddr;

use http::HeaderMap;
use http::header::HOST;

/// The origin requests are forwarded to registryd with: an absolute `Location` naming it
/// (registryd sends none) is rewritten as a relative one is.
pub const UPSTREAM_ORIGIN: &str = "http://registryd";

/// `scheme://host[:port]` of the manager as the client reached it. The host is the first of
/// `X-Forwarded-Host`, `Forwarded: host=` and `Host`; the scheme the first of
/// `X-Forwarded-Proto` and `Forwarded: proto=`, else `base_url`'s for a loopback host and
/// `https` for any other. A value that is not a plain host (or scheme) is passed over, and
/// without any host the answer is `base_url`.
pub fn public_base(headers: &HeaderMap, base_url: &str) -> String {
    let forwarded = forwarded_pairs(headers);
    let from_forwarded = |key: &str| {
        forwarded
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    };
    let host = [
        first_value(headers, "x-forwarded-host"),
        from_forwarded("host"),
        first_value(headers, HOST.as_str()),
    ]
    .into_iter()
    .flatten()
    .find(|host| is_host(host));
    let Some(host) = host else {
        return base_url.to_owned();
    };
    let (base_scheme, _) = base_url.split_once("://").unwrap_or(("http", base_url));
    let scheme = [
        first_value(headers, "x-forwarded-proto"),
        from_forwarded("proto"),
    ]
    .into_iter()
    .flatten()
    .map(str::to_ascii_lowercase)
    .find(|scheme| scheme == "http" || scheme == "https")
    .unwrap_or_else(|| {
        if is_loopback(host) {
            base_scheme.to_owned()
        } else {
            "https".to_owned()
        }
    });
    format!("{scheme}://{host}")
}

/// A `Location` as the client must follow it: a path is put under `base`, and so is an
/// absolute one naming registryd; any other is left alone.
pub fn absolute(location: &str, base: &str) -> String {
    if location.starts_with('/') && !location.starts_with("//") {
        return format!("{base}{location}");
    }
    match location.strip_prefix(UPSTREAM_ORIGIN) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{base}{rest}"),
        _ => location.to_owned(),
    }
}

/// The first of a header's comma-separated values, trimmed.
fn first_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let value = headers.get(name)?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

/// The `key=value` pairs of the first element of `Forwarded` (RFC 7239), quotes removed.
fn forwarded_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    let Some(element) = first_value(headers, "forwarded") else {
        return Vec::new();
    };
    element
        .split(';')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some((key.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

/// A host, optionally with a port, that can stand in a URL's authority: letters, digits,
/// `.`, `-`, `_`, a `:port`, or a bracketed IPv6 address.
fn is_host(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 255
        && value.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
}

/// Whether `host` (with or without a port) is this machine: `localhost`, `*.localhost`, or
/// a loopback address.
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(bracketed),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn the_public_base_follows_the_client_and_its_proxies() {
        const BASE: &str = "http://localhost:8080";
        // (request headers, base)
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("host", "127.0.0.1:41234")], "http://127.0.0.1:41234"),
            (vec![("host", "localhost:8080")], "http://localhost:8080"),
            (vec![("host", "[::1]:8080")], "http://[::1]:8080"),
            (vec![("host", "app.localhost")], "http://app.localhost"),
            (
                vec![("host", "registry.example.test")],
                "https://registry.example.test",
            ),
            (vec![("host", "10.0.0.5:8080")], "https://10.0.0.5:8080"),
            (
                vec![
                    ("host", "127.0.0.1:41234"),
                    ("x-forwarded-host", "registry.example.test"),
                    ("x-forwarded-proto", "https"),
                ],
                "https://registry.example.test",
            ),
            (
                vec![
                    ("host", "127.0.0.1:1"),
                    ("x-forwarded-host", "a.test, b.test"),
                ],
                "https://a.test",
            ),
            (
                vec![("host", "127.0.0.1:1"), ("x-forwarded-proto", "HTTPS")],
                "https://127.0.0.1:1",
            ),
            (
                vec![("host", "mgr.test"), ("x-forwarded-proto", "http")],
                "http://mgr.test",
            ),
            (
                vec![
                    ("host", "127.0.0.1:1"),
                    (
                        "forwarded",
                        "for=10.0.0.1;host=mirror.example.test;proto=https",
                    ),
                ],
                "https://mirror.example.test",
            ),
            (
                vec![
                    ("host", "127.0.0.1:1"),
                    (
                        "forwarded",
                        "host=\"m.test:8443\";proto=https, host=second.test",
                    ),
                ],
                "https://m.test:8443",
            ),
            (
                vec![
                    ("host", "127.0.0.1:1"),
                    ("forwarded", "host=f.test;proto=http"),
                    ("x-forwarded-host", "x.test"),
                ],
                "http://x.test",
            ),
            // Values that are not a host or scheme are passed over.
            (
                vec![
                    ("host", "127.0.0.1:1"),
                    ("x-forwarded-host", "evil.test/path?x"),
                ],
                "http://127.0.0.1:1",
            ),
            (
                vec![("host", "mgr.test"), ("x-forwarded-proto", "javascript")],
                "https://mgr.test",
            ),
            (vec![], BASE),
        ];
        for (headers, want) in cases {
            let mut map = HeaderMap::new();
            for (name, value) in &headers {
                map.append(*name, HeaderValue::from_str(value).expect("header"));
            }
            assert_eq!(public_base(&map, BASE), want, "{headers:?}");
        }
        let mut https = HeaderMap::new();
        https.insert(HOST, HeaderValue::from_static("localhost:8443"));
        assert_eq!(
            public_base(&https, "https://mgr.test"),
            "https://localhost:8443"
        );
    }

    #[test]
    fn locations_are_made_absolute() {
        const BASE: &str = "https://mgr.test";
        for (location, want) in [
            (
                "/v2/artifacts/default/blobs/uploads/0f",
                "https://mgr.test/v2/artifacts/default/blobs/uploads/0f",
            ),
            (
                "/v2/a/blobs/sha256:ab",
                "https://mgr.test/v2/a/blobs/sha256:ab",
            ),
            (
                "http://registryd/v2/a/manifests/v1",
                "https://mgr.test/v2/a/manifests/v1",
            ),
            ("http://registryd", "https://mgr.test"),
            ("http://registrydx/v2/", "http://registrydx/v2/"),
            ("https://elsewhere.test/v2/a", "https://elsewhere.test/v2/a"),
            ("//elsewhere.test/v2/a", "//elsewhere.test/v2/a"),
            ("relative/path", "relative/path"),
        ] {
            assert_eq!(absolute(location, BASE), want, "{location}");
        }
    }
}
