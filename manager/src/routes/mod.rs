//! One module per group of public routes.

pub mod build_config;
pub mod commands;
pub mod deployment_groups;
pub mod deployments;
pub mod health;
pub mod initialize;
pub mod install;
pub mod registry;
pub mod releases;
pub mod sync;
pub mod telemetry;
pub mod tokens;
pub mod unsupported;
pub mod wait;
pub mod whoami;
