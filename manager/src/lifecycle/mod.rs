//! The deployment lifecycle as pure rules (docs/compatibility.md, Deployment lifecycle): the
//! statuses and their sets, which deployments a lease may take, and what a reported state
//! writes. The store runs what these rules decide; nothing here touches the database.

pub mod creation;
pub mod lease;
pub mod reconcile;
pub mod status;

pub use status::DeploymentStatus;
