//! `GET /v2/<name>/referrers/<digest>[?artifactType=<type>]` (end-12a, end-12b): an image
//! index of the manifests whose `subject` is `<digest>`. Always 200, empty when there are
//! none.

use axum::response::Response;
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};

use super::{OCI_FILTERS_APPLIED, Query, json_response};
use crate::digest::Digest;
use crate::error::Error;
use crate::manifest::OCI_INDEX;
use crate::meta;
use crate::names::Name;
use crate::state::Registry;

pub async fn list(
    registry: &Registry,
    name: Name,
    digest: &str,
    query: &Query,
) -> Result<Response, Error> {
    let subject: Digest = digest.parse()?;
    let filter = query.get("artifactType").map(str::to_owned);
    let filtered = filter.is_some();
    let subject = subject.to_string();
    let referrers = registry
        .meta
        .call(move |conn| meta::manifests::referrers(conn, &name, &subject, filter.as_deref()))
        .await?;
    let manifests: Vec<Value> = referrers
        .into_iter()
        .map(|r| {
            let mut d = json!({"mediaType": r.media_type, "digest": r.digest, "size": r.size});
            if let Some(t) = r.artifact_type {
                d["artifactType"] = Value::String(t);
            }
            if let Some(a) = r.annotations.and_then(|a| serde_json::from_str(&a).ok()) {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let mut response = json_response(StatusCode::OK, OCI_INDEX, body.to_string());
    if filtered {
        response.headers_mut().insert(
            OCI_FILTERS_APPLIED,
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}
