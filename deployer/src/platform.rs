//! What the engine asks of a platform driver. The engine decides what to do and in which
//! order; a driver makes one resource be as configured (idempotently: a step interrupted by a
//! crash is simply run again), removes one, or checks and heals one.

use std::collections::BTreeMap;
use std::future::Future;

use serde_json::{Value, json};

use crate::config::DeploymentConfig;
use crate::state::ResourceState;
use stack::Stack;

/// One resource as a driver sees it.
#[derive(Debug, Clone)]
pub struct ResourceContext {
    pub deployment_id: String,
    pub resource_id: String,
    pub kind: String,
    /// The desired configuration, with the injected environment (plain variables only).
    pub config: Value,
    /// What the last step recorded of the resource, if it ran before.
    pub recorded: Option<ResourceState>,
    /// `ALIEN_<ID>_BINDING` values of the resource's links, which are all running.
    pub bindings: BTreeMap<String, String>,
    /// Variables that must never be stored in the state: secret values, the deployment's
    /// token for commands and telemetry. Set only at launch.
    pub secrets: BTreeMap<String, String>,
    pub deployment: DeploymentConfig,
}

/// What a driver reports of a resource that is as configured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// `stackState.resources[id].outputs`.
    pub outputs: Option<Value>,
    /// `stackState.resources[id]._internal`: what the driver needs to find it again.
    pub internal: Option<Value>,
}

/// A resource step that failed, as the public platform's error object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ResourceError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

impl ResourceError {
    pub fn fatal(code: &str, message: impl Into<String>) -> ResourceError {
        ResourceError {
            code: code.to_owned(),
            message: message.into(),
            retryable: false,
        }
    }

    pub fn retryable(code: &str, message: impl Into<String>) -> ResourceError {
        ResourceError {
            code: code.to_owned(),
            message: message.into(),
            retryable: true,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "internal": false,
            "httpStatusCode": 500,
        })
    }
}

pub trait Platform: Send + Sync {
    /// The platform's name in `stackState.platform`.
    fn name(&self) -> &'static str;

    /// `environmentInfo` of a new deployment.
    fn environment_info(&self) -> Value;

    /// The stack with the resources this platform adds.
    fn prepare(&self, stack: &Stack) -> Stack;

    /// The binding JSON other resources get for a running resource, if it has one.
    fn binding(&self, deployment_id: &str, id: &str, resource: &ResourceState) -> Option<Value>;

    /// Creates or updates the resource until it is as configured and healthy.
    fn apply(
        &self,
        ctx: ResourceContext,
    ) -> impl Future<Output = Result<Applied, ResourceError>> + Send;

    /// Removes the resource and everything it kept.
    fn delete(
        &self,
        ctx: ResourceContext,
    ) -> impl Future<Output = Result<(), ResourceError>> + Send;

    /// Checks a running resource and restarts what died or stopped answering.
    fn heal(
        &self,
        ctx: ResourceContext,
    ) -> impl Future<Output = Result<Applied, ResourceError>> + Send;

    /// Removes what the deployment kept that belongs to no resource (its directory).
    fn forget(&self, deployment_id: &str)
    -> impl Future<Output = Result<(), ResourceError>> + Send;
}
