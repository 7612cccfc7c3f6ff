//! The rules a stack obeys beyond its shape, checked once it is parsed: every resource id is a
//! DNS-safe name equal to its key, and each type has the lifecycle the engine can honour.

use crate::error::StackError;
use crate::resource::{Lifecycle, ResourceConfig};
use crate::stack::Stack;

pub(crate) fn check(stack: &Stack) -> Result<(), StackError> {
    for (key, entry) in stack.resources() {
        let id = entry.config.id();
        if !is_resource_id(id) {
            return Err(StackError::ResourceId { id: id.to_owned() });
        }
        if key != id {
            return Err(StackError::KeyMismatch {
                key: key.to_owned(),
                id: id.to_owned(),
            });
        }
        if let Some(required) = required_lifecycle(&entry.config)
            && entry.lifecycle != required
        {
            return Err(StackError::Lifecycle {
                id: id.to_owned(),
                kind: entry.config.kind(),
                required: required.as_str(),
                found: entry.lifecycle.as_str(),
            });
        }
    }
    Ok(())
}

/// Workloads are created and replaced by the engine; clusters, identities, registries and
/// networks only by setup. Other types may be either.
fn required_lifecycle(config: &ResourceConfig) -> Option<Lifecycle> {
    match config {
        ResourceConfig::Worker(_) | ResourceConfig::Daemon(_) | ResourceConfig::Container(_) => {
            Some(Lifecycle::Live)
        }
        ResourceConfig::ComputeCluster(_)
        | ResourceConfig::ServiceAccount(_)
        | ResourceConfig::ArtifactRegistry(_)
        | ResourceConfig::Network(_) => Some(Lifecycle::Frozen),
        _ => None,
    }
}

/// `[a-z0-9]([a-z0-9-]*[a-z0-9])?` without `--`.
fn is_resource_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(|b| edge(b) || *b == b'-')
        && !id.contains("--")
}
