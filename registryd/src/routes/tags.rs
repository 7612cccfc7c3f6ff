//! `GET /v2/<name>/tags/list[?n=<n>&last=<tag>]` (end-8a, end-8b).

use axum::response::Response;
use http::{StatusCode, header};
use serde_json::json;

use super::{Query, json_response, next_link};
use crate::error::Error;
use crate::meta;
use crate::names::Name;
use crate::state::Registry;

pub async fn list(registry: &Registry, name: Name, query: &Query) -> Result<Response, Error> {
    let (n, last) = query.page()?;
    let last = last.to_owned();
    let repo = name.clone();
    let tags = registry
        .meta
        .call(move |conn| {
            if !meta::repo_exists(conn, &repo)? {
                return Err(Error::NameUnknown);
            }
            match n {
                Some(0) => Ok(Vec::new()),
                // One more than asked, to know whether there is a next page.
                Some(n) => meta::manifests::tags(conn, &repo, &last, n.saturating_add(1)),
                None => meta::manifests::tags(conn, &repo, &last, u64::MAX),
            }
        })
        .await?;
    page(
        &format!("/v2/{name}/tags/list"),
        n,
        tags,
        |tags| json!({"name": name.as_str(), "tags": tags}),
    )
}

/// A page of `items` (holding one extra when there is more) with its `Link` header.
pub fn page(
    path: &str,
    n: Option<u64>,
    mut items: Vec<String>,
    body: impl FnOnce(&[String]) -> serde_json::Value,
) -> Result<Response, Error> {
    let more = n.is_some_and(|n| items.len() as u64 > n);
    if let Some(n) = n.filter(|_| more) {
        items.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let mut response = json_response(StatusCode::OK, "application/json", body(&items).to_string());
    if let (true, Some(n), Some(last)) = (more, n, items.last()) {
        response
            .headers_mut()
            .insert(header::LINK, next_link(path, n, last));
    }
    Ok(response)
}
