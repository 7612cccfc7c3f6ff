//! `waitSeconds`, our long-poll extension of the commands' status and leases and of the agent
//! sync (docs/compatibility.md): absent or 0 answers at once, as the public manager does;
//! more than the route's longest wait is cut to it.

use serde_json::Value;

use crate::Error;
use crate::extract::QueryPairs;

/// The wait asked for in the query, if any; a value that is not a whole number is a 400.
pub fn in_query(query: &QueryPairs, max: u64) -> Result<Option<u64>, Error> {
    query
        .first("waitSeconds")
        .map(|value| value.parse::<u64>().map_err(|_| not_seconds(max)))
        .transpose()
        .map(|seconds| bounded(seconds, max))
}

/// The wait asked for in a body's `waitSeconds`; a value that is not a whole number is a 400.
pub fn in_body(value: &Value, max: u64) -> Result<Option<u64>, Error> {
    let seconds = value.as_u64().ok_or_else(|| not_seconds(max))?;
    Ok(bounded(Some(seconds), max))
}

/// No wait for 0, and at most `max`.
pub fn bounded(seconds: Option<u64>, max: u64) -> Option<u64> {
    seconds.filter(|s| *s > 0).map(|s| s.min(max))
}

fn not_seconds(max: u64) -> Error {
    Error::BadRequest(format!(
        "waitSeconds must be a whole number of seconds up to {max}"
    ))
}
