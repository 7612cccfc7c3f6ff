//! The extractors of request bodies, paths and queries. axum's own answer a bad request in
//! plain text; the public manager's clients parse errors as the JSON envelope, so every
//! rejection here is an [`Error`], for bodies with the public manager's statuses and a
//! message that names the offending field (docs/compatibility.md, Input errors).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::Error;

/// The public manager's limit on request bodies (axum's default), set explicitly so that it
/// does not move with axum.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// A request body parsed as `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        if !is_json(req.headers()) {
            return Err(Error::UnsupportedMediaType);
        }
        let bytes = read(req, state).await?;
        parse(&bytes).map(JsonBody)
    }
}

/// A JSON body that may be left out: `None` when the body is empty or whitespace, whatever
/// its `Content-Type`; otherwise checked as [`JsonBody`] checks it.
#[derive(Debug)]
pub struct OptionalJsonBody<T> {
    pub value: Option<T>,
}

impl<T, S> FromRequest<S> for OptionalJsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let json = is_json(req.headers());
        let bytes = read(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody { value: None });
        }
        if !json {
            return Err(Error::UnsupportedMediaType);
        }
        let value = parse(&bytes)?;
        Ok(OptionalJsonBody { value: Some(value) })
    }
}

/// The whole body, within [`BODY_LIMIT`].
async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Error> {
    Bytes::from_request(req, state)
        .await
        .map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge { limit: BODY_LIMIT },
            _ => Error::UnreadableBody(rejection.body_text()),
        })
}

/// Path parameters, as axum's `Path`.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(params)) => Ok(PathParams(params)),
            Err(rejection) => Err(Error::BadRequest(rejection.body_text())),
        }
    }
}

/// The query string as name-value pairs in order, repeated names kept
/// (`include=a&include[]=b`).
#[derive(Debug)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    /// The values of `name`, also when sent as `name[]`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| {
                key == name || key.strip_suffix("[]").is_some_and(|key| key == name)
            })
            .map(|(_, value)| value.as_str())
    }

    /// The first value of `name`.
    pub fn first<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).next()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
            .map(QueryPairs)
            .map_err(|e| Error::BadRequest(format!("Invalid query string: {e}")))
    }
}

/// `application/json`, or a `+json` type, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application") && (subtype == "json" || subtype.ends_with("+json"))
}

/// How deeply arrays and objects may nest in a body. serde_json stops at 128 levels when it
/// builds values but not when it skips them (raw values, ignored fields), so a body that
/// passed could fail later, where a part of it is parsed again; with this limit every part
/// parses anywhere. No stack comes close.
pub const MAX_NESTING: usize = 100;

/// Parses JSON text as `T`: text that is not JSON is a 400, JSON of the wrong shape a 422
/// that names where in the body it is. The whole text is checked first, so that a body cut
/// short is a 400 even where its first bytes already have the wrong shape.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if nests_deeper_than(bytes, MAX_NESTING) {
        return Err(Error::MalformedJson(format!(
            "arrays and objects nest deeper than {MAX_NESTING} levels"
        )));
    }
    let mut syntax = serde_json::Deserializer::from_slice(bytes);
    serde::de::IgnoredAny::deserialize(&mut syntax)
        .and_then(|_| syntax.end())
        .map_err(|error| Error::MalformedJson(error.to_string()))?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let field = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            Category::Data => Error::InvalidBody {
                field,
                reason: inner.to_string(),
            },
            Category::Syntax | Category::Eof | Category::Io => {
                Error::MalformedJson(inner.to_string())
            }
        }
    })
}

/// Whether the brackets of JSON text, outside its strings, open more than `max` deep.
fn nests_deeper_than(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code, reason = "only parsed")]
    struct Shape {
        name: String,
        items: Option<Vec<Item>>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code, reason = "only parsed")]
    struct Item {
        kind: u32,
    }

    #[test]
    fn nesting_is_counted_outside_strings() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!nests_deeper_than(nested(3).as_bytes(), 3));
        assert!(nests_deeper_than(nested(4).as_bytes(), 3));
        assert!(!nests_deeper_than(br#"{"a":"[[[[{{{{"}"#, 3));
        assert!(!nests_deeper_than(br#"{"a":"\"[[[[","b":[1]}"#, 3));
        assert!(nests_deeper_than(br#"{"a":"\\","b":[[[1]]]}"#, 3));
        let deep = format!(r#"{{"stack":{}}}"#, nested(MAX_NESTING));
        assert!(matches!(
            parse::<serde_json::Value>(deep.as_bytes()),
            Err(Error::MalformedJson(m)) if m.contains("100 levels")
        ));
    }

    #[test]
    fn content_types() {
        for (value, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/json", false),
            ("text/plain", false),
            ("application/jsonx", false),
            ("", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, value.parse().expect("header"));
            assert_eq!(is_json(&headers), json, "{value}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn repeated_and_bracketed_query_names() {
        let query: QueryPairs = QueryPairs(
            serde_urlencoded::from_str("include=a&include%5B%5D=b&name=x%20y&include=c&other=1")
                .expect("query"),
        );
        assert_eq!(query.all("include").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(query.first("name"), Some("x y"));
        assert_eq!(query.first("missing"), None);
    }

    #[test]
    fn rejections_name_the_field() {
        // (body, 400 rather than 422, field, words of the reason)
        let cases = [
            (r#"{"name": 5}"#, false, "name", "invalid type"),
            (r#"{}"#, false, ".", "missing field `name`"),
            (
                r#"{"name": "a", "extra": 1}"#,
                false,
                "extra",
                "unknown field `extra`",
            ),
            (
                r#"{"name": "a", "items": [{"kind": "x"}]}"#,
                false,
                "items[0].kind",
                "invalid type",
            ),
            (
                r#"{"name": "a", "items": [{"kind": -1}]}"#,
                false,
                "items[0].kind",
                "invalid value",
            ),
            (r#"{"name": "#, true, "", "EOF"),
            (r#"{"name": "a"} trailing"#, true, "", "trailing characters"),
            (r#"{"extra": 1}}"#, true, "", "trailing characters"),
            (r#"{"extra": "#, true, "", "EOF"),
            ("", true, "", "EOF"),
            ("not json", true, "", "expected"),
        ];
        for (body, syntax, field, words) in cases {
            match (parse::<Shape>(body.as_bytes()), syntax) {
                (Err(Error::MalformedJson(reason)), true) => {
                    assert!(reason.contains(words), "{body}: {reason}");
                }
                (Err(Error::InvalidBody { field: got, reason }), false) => {
                    assert_eq!(got, field, "{body}");
                    assert!(reason.contains(words), "{body}: {reason}");
                }
                (other, _) => panic!("{body}: unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn an_optional_body_may_be_left_out_whatever_its_type() {
        async fn extract(content_type: Option<&str>, body: &str) -> Result<Option<Item>, Error> {
            let mut request = Request::new(axum::body::Body::from(body.to_owned()));
            if let Some(value) = content_type {
                request
                    .headers_mut()
                    .insert(CONTENT_TYPE, value.parse().expect("header"));
            }
            let got = OptionalJsonBody::<Item>::from_request(request, &()).await?;
            Ok(got.value)
        }
        assert!(matches!(extract(None, "").await, Ok(None)));
        assert!(matches!(
            extract(Some("application/json"), " \n").await,
            Ok(None)
        ));
        assert!(matches!(extract(Some("text/plain"), "").await, Ok(None)));
        assert!(matches!(
            extract(Some("application/json"), r#"{"kind": 3}"#).await,
            Ok(Some(Item { kind: 3 }))
        ));
        assert!(matches!(
            extract(None, r#"{"kind": 3}"#).await,
            Err(Error::UnsupportedMediaType)
        ));
        assert!(matches!(
            extract(Some("application/json"), r#"{"kind": "x"}"#).await,
            Err(Error::InvalidBody { .. })
        ));
        assert!(matches!(
            extract(Some("application/json"), "{").await,
            Err(Error::MalformedJson(_))
        ));
    }
}
