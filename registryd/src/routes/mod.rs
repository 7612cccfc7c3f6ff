//! The HTTP API: the OCI distribution spec's `/v2/...` endpoints, one module per family,
//! and `POST /gc` for the collector.
//!
//! Names have any number of `/`-separated components, so the path is parsed from its end:
//! `<name>/blobs/uploads/[<id>]`, `<name>/blobs/<digest>`, `<name>/manifests/<reference>`,
//! `<name>/tags/list`, `<name>/referrers/<digest>`. Every `Location` header is relative
//! (`/v2/...`), so that the manager can forward requests and responses as they are.

mod blobs;
mod catalog;
mod gc;
mod manifests;
mod referrers;
mod tags;
mod uploads;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use protocol::registryd::GC_PATH;

use crate::error::Error;
use crate::names::Name;
use crate::state::Registry;

pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub const UPLOAD_SESSION_ID: HeaderName = HeaderName::from_static("blob-upload-session-id");
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .route(GC_PATH, post(gc::collect))
        .with_state(registry)
}

/// Where a `/v2` path leads.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Base,
    Catalog,
    Blob(Name, String),
    UploadStart(Name),
    Upload(Name, String),
    Manifest(Name, String),
    Tags(Name),
    Referrers(Name, String),
}

impl Route {
    fn parse(path: &str) -> Result<Route, Error> {
        let rest = path
            .strip_prefix("/v2")
            .ok_or_else(|| Error::Unsupported(path.to_owned()))?;
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Ok(Route::Base);
        }
        if rest == "_catalog" {
            return Ok(Route::Catalog);
        }
        let unknown = || Error::Unsupported(format!("no such endpoint: {path}"));
        let name = |s: &str| Name::parse(s);
        let last = |s: &str| plumbing::percent::decode(s).ok_or_else(unknown);
        if let Some(n) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            return Ok(Route::UploadStart(name(n)?));
        }
        let (head, tail) = rest.rsplit_once('/').ok_or_else(unknown)?;
        if let Some(n) = head.strip_suffix("/blobs/uploads") {
            return Ok(Route::Upload(name(n)?, last(tail)?));
        }
        if head.ends_with("/tags") && tail == "list" {
            return Ok(Route::Tags(name(&head[..head.len() - 5])?));
        }
        let (n, kind) = head.rsplit_once('/').ok_or_else(unknown)?;
        match kind {
            "blobs" => Ok(Route::Blob(name(n)?, last(tail)?)),
            "manifests" => Ok(Route::Manifest(name(n)?, last(tail)?)),
            "referrers" => Ok(Route::Referrers(name(n)?, last(tail)?)),
            _ => Err(unknown()),
        }
    }
}

async fn dispatch(State(registry): State<Arc<Registry>>, request: Request) -> Response {
    let mut response = route(&registry, request)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    response
}

async fn route(registry: &Registry, request: Request) -> Result<Response, Error> {
    let (parts, body) = request.into_parts();
    let query = Query::parse(parts.uri.query());
    let headers = &parts.headers;
    let method = &parts.method;
    let head = method == Method::HEAD;
    match (Route::parse(parts.uri.path())?, method.clone()) {
        (Route::Base, Method::GET | Method::HEAD) => Ok(json_response(
            StatusCode::OK,
            "application/json",
            "{}".into(),
        )),
        (Route::Catalog, Method::GET) => catalog::list(registry, &query).await,
        (Route::Blob(name, digest), Method::GET | Method::HEAD) => {
            blobs::get(registry, name, &digest, head, headers).await
        }
        (Route::Blob(name, digest), Method::DELETE) => blobs::delete(registry, name, &digest).await,
        (Route::UploadStart(name), Method::POST) => {
            uploads::start(registry, name, &query, headers, body).await
        }
        (Route::Upload(name, id), Method::GET) => uploads::status(registry, name, &id).await,
        (Route::Upload(name, id), Method::PATCH) => {
            uploads::patch(registry, name, &id, headers, body).await
        }
        (Route::Upload(name, id), Method::PUT) => {
            uploads::finish(registry, name, &id, &query, headers, body).await
        }
        (Route::Upload(name, id), Method::DELETE) => uploads::cancel(registry, name, &id).await,
        (Route::Manifest(name, reference), Method::GET | Method::HEAD) => {
            manifests::get(registry, name, &reference, head).await
        }
        (Route::Manifest(name, reference), Method::PUT) => {
            manifests::put(registry, name, &reference, headers, body).await
        }
        (Route::Manifest(name, reference), Method::DELETE) => {
            manifests::delete(registry, name, &reference).await
        }
        (Route::Tags(name), Method::GET) => tags::list(registry, name, &query).await,
        (Route::Referrers(name, digest), Method::GET) => {
            referrers::list(registry, name, &digest, &query).await
        }
        (_, method) => Err(Error::MethodNotAllowed(method)),
    }
}

/// The query string as decoded pairs. `+` stays `+`: media types in `artifactType` have one.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Query {
        Query(
            query
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    Some((plumbing::percent::decode(k)?, plumbing::percent::decode(v)?))
                })
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Pagination: `n` (a count; `Ok(None)` when absent) and `last`.
    pub fn page(&self) -> Result<(Option<u64>, &str), Error> {
        let n = self
            .get("n")
            .map(|n| {
                n.parse::<u64>()
                    .map_err(|_| Error::BadQuery(format!("n={n} is not a count")))
            })
            .transpose()?;
        Ok((n, self.get("last").unwrap_or("")))
    }
}

/// A header value made of a name, a digest or an id: always visible ASCII.
pub fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn empty(
    status: StatusCode,
    headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let map: &mut HeaderMap = response.headers_mut();
    for (name, value) in headers {
        map.insert(name, value);
    }
    map.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

pub fn json_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `Link: </v2/...?n=<n>&last=<last>>; rel="next"`, when a page was full.
pub fn next_link(path: &str, n: u64, last: &str) -> HeaderValue {
    value(&format!(
        "<{path}?n={n}&last={}>; rel=\"next\"",
        plumbing::percent::encode(last)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse(s).expect("name")
    }

    #[test]
    fn paths_are_parsed_from_the_end() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let cases = [
            ("/v2/", Route::Base),
            ("/v2", Route::Base),
            ("/v2/_catalog", Route::Catalog),
            ("/v2/a/b/blobs/uploads/", Route::UploadStart(name("a/b"))),
            ("/v2/a/blobs/uploads", Route::UploadStart(name("a"))),
            (
                "/v2/a/blobs/blobs/uploads/xyz",
                Route::Upload(name("a/blobs"), "xyz".into()),
            ),
            (
                &format!("/v2/a/b/c/blobs/{d}"),
                Route::Blob(name("a/b/c"), d.into()),
            ),
            (
                "/v2/x/manifests/manifests/latest",
                Route::Manifest(name("x/manifests"), "latest".into()),
            ),
            (
                "/v2/x/manifests/sha256%3Aab",
                Route::Manifest(name("x"), "sha256:ab".into()),
            ),
            ("/v2/tags/tags/list", Route::Tags(name("tags"))),
            (
                &format!("/v2/r/referrers/{d}"),
                Route::Referrers(name("r"), d.into()),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(Route::parse(path).expect(path), want, "{path}");
        }
        assert!(matches!(
            Route::parse("/v2/UPPER/tags/list"),
            Err(Error::NameInvalid(_))
        ));
        assert!(matches!(
            Route::parse("/v2/a/../b/manifests/latest"),
            Err(Error::NameInvalid(_))
        ));
        assert!(matches!(
            Route::parse("/v2/a/nothing"),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn queries_decode_percent_but_keep_plus() {
        let q = Query::parse(Some("artifactType=application%2Fvnd.x+json&n=2&from=a%2Fb"));
        assert_eq!(q.get("artifactType"), Some("application/vnd.x+json"));
        assert_eq!(q.get("from"), Some("a/b"));
        assert_eq!(q.page().expect("page"), (Some(2), ""));
    }
}
