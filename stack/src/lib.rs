//! The typed stack of a release (docs/compatibility.md, Stacks and settings).
//!
//! [`Stack::parse`] reads a platform's stack as strictly as the public platform does: exact type
//! tags, unknown fields of a resource's config refused, the required fields required, and the
//! rules the engine relies on (resource ids, lifecycles) checked. The parsed stack serializes
//! with every default filled in, which is the form the manager stores and answers.
//!
//! ```
//! let stack = stack::Stack::parse(r#"{"id": "app", "resources": {}}"#)?;
//! assert_eq!(stack.resources().count(), 0);
//! # Ok::<(), stack::StackError>(())
//! ```

mod container;
mod daemon;
mod data;
mod error;
mod frozen;
mod resource;
mod rules;
mod shared;
mod stack;
mod worker;

pub use container::{Container, ContainerAutoscaling, ContainerPort, Gpu, PersistentStorage};
pub use daemon::{Daemon, DaemonRuntime, DaemonRuntimeMount};
pub use data::{Kv, LifecycleRule, Queue, Storage, Vault};
pub use error::StackError;
pub use frozen::{ComputeCluster, ServiceAccount};
pub use resource::{Lifecycle, OtherConfig, ResourceConfig, ResourceRef};
pub use shared::{Code, ExposeProtocol, HealthCheck, PublicEndpoint, ResourceSpec, Toolchain};
pub use stack::{Management, Permissions, ResourceEntry, Stack};
pub use worker::{HttpMethod, ReadinessProbe, Trigger, Worker, WorkerPublicEndpoint};

#[cfg(test)]
mod tests;
