//! One module per section of the spec's HTTP API (§3).

pub mod health;
pub mod whoami;
