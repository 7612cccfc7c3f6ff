//! What the routes do that is more than one store call or one daemon call, so that no route
//! reaches into another: loading a deployment for a caller, the facts commandd needs, and
//! waking the syncs that wait for a deployment to change.

pub mod changes;
pub mod commands;
pub mod deployments;
