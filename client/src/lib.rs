//! The manager as the `alien` client commands see it: its API reached with an API key
//! ([`Manager`]), its refusals as a user reads them ([`ClientError`], each with an exit
//! status), deployments named as `dep_…` or `group/name` ([`deployments`]), and commands
//! invoked and waited for ([`commands`]); releases made with their images pushed to the
//! manager's registry ([`release`], [`push`]).

pub mod api;
pub mod commands;
pub mod deployments;
pub mod error;
pub mod push;
pub mod release;

pub use api::Manager;
pub use error::ClientError;
