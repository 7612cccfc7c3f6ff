//! `GET /v2/_catalog[?n=<n>&last=<name>]`: the repositories, paginated like tags. Not part
//! of the distribution spec, which reserves it; clients and admins still use it.

use axum::response::Response;
use serde_json::json;

use super::Query;
use super::tags::page;
use crate::error::Error;
use crate::meta;
use crate::state::Registry;

pub async fn list(registry: &Registry, query: &Query) -> Result<Response, Error> {
    let (n, last) = query.page()?;
    let last = last.to_owned();
    let names = registry
        .meta
        .call(move |conn| match n {
            Some(0) => Ok(Vec::new()),
            Some(n) => meta::list_repos(conn, &last, n.saturating_add(1)),
            None => meta::list_repos(conn, &last, u64::MAX),
        })
        .await?;
    page(
        "/v2/_catalog",
        n,
        names,
        |names| json!({"repositories": names}),
    )
}
