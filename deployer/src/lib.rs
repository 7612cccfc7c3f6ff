//! The deployment engine: takes a deployment's state, its target release and its
//! configuration, performs one step with a platform driver and returns the new state and how
//! long to wait before the next step ([`engine::step`]); checks and heals running
//! deployments ([`engine::refresh`]). It knows nothing of HTTP or SQLite: deployd's push loop
//! and the pull agent both drive it. Drivers implement [`platform::Platform`]; `local` is the
//! first.

pub mod config;
pub mod engine;
pub mod env;
pub mod local;
pub mod platform;
pub mod prepared;
pub mod state;
