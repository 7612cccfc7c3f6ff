//! What the routes do that is more than one store call or one daemon call, so that no route
//! reaches into another: loading a deployment for a caller, and the facts commandd needs.

pub mod commands;
pub mod deployments;
