//! The `local` platform: a deployment's resources on this machine, under its directory on
//! the data volume (`deployments/<deployment id>/`). Storage, kv, vault and queue resources
//! are directories the workloads reach through their bindings; service accounts and the
//! compute cluster have nothing to create; workers, containers and daemons are workloads
//! ([`compute`]).

mod compute;
pub mod gateway;
pub mod logs;
mod netns;
mod worker;

pub use compute::{Compute, ComputeParts};

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::platform::{Applied, Platform, ResourceContext, ResourceError};
use crate::prepared;
use crate::state::ResourceState;
use stack::Stack;

/// Local resources whose state is a directory, and the directory's name under the
/// deployment's.
fn directory_kind(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "storage" => "storage",
        "kv" => "kv",
        "vault" => "vault",
        "queue" => "queue",
        _ => return None,
    })
}

#[derive(Debug)]
pub struct Local {
    /// `deployments/` on the data volume.
    root: PathBuf,
    compute: Compute,
}

impl Local {
    pub fn new(root: PathBuf, parts: ComputeParts) -> Local {
        Local {
            compute: Compute::new(root.clone(), parts),
            root,
        }
    }

    /// After a restart: the running workloads behind their stable addresses again.
    pub async fn recover(&self) {
        self.compute.recover().await;
    }

    /// The backend new workloads start in (see [`Compute::use_launcher`]).
    pub fn use_launcher(&self, launcher: launcher::Launcher) {
        self.compute.use_launcher(launcher);
    }

    /// Stops every workload, `grace` each.
    pub async fn stop_all(&self, grace: std::time::Duration) {
        self.compute.stop_all(grace).await;
    }

    /// The directory of one deployment.
    pub fn deployment_dir(&self, deployment_id: &str) -> PathBuf {
        self.root.join(deployment_id)
    }

    fn resource_dir(&self, deployment_id: &str, kind: &str, id: &str) -> Option<PathBuf> {
        data_dir(&self.root, deployment_id, kind, id)
    }
}

/// The directory of a storage, kv, vault or queue resource under `root` (`deployments/`).
fn data_dir(root: &Path, deployment_id: &str, kind: &str, id: &str) -> Option<PathBuf> {
    directory_kind(kind).map(|dir| root.join(deployment_id).join(dir).join(id))
}

/// The runtime workloads run in: an OCI runtime when one can run a container here, else
/// plain processes, which the log says once. `program` is the `alien` executable, which the
/// probe runs.
pub async fn detect_launcher(
    program: PathBuf,
) -> Result<launcher::Launcher, tokio::task::JoinError> {
    let launcher =
        tokio::task::spawn_blocking(move || launcher::Launcher::detect(&program)).await?;
    match launcher.backend() {
        launcher::Backend::Oci { runtime } => {
            tracing::info!(runtime = %runtime.display(), "workloads run in an OCI runtime");
        }
        launcher::Backend::Process { reason } => {
            tracing::warn!(%reason, "no OCI runtime can run containers here: workloads run as plain processes, without isolation or limits");
        }
    }
    Ok(launcher)
}

fn local_error(action: &str, path: &Path, error: std::io::Error) -> ResourceError {
    ResourceError::fatal(
        "LOCAL_PLATFORM_ERROR",
        format!("Cannot {action} {}: {error}", path.display()),
    )
}

/// Runs blocking file work off the async reactor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ResourceError> + Send + 'static,
) -> Result<T, ResourceError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(ResourceError::retryable(
            "LOCAL_PLATFORM_ERROR",
            format!("A file operation stopped: {e}"),
        ))
    })
}

fn create_dir(path: PathBuf) -> Result<(), ResourceError> {
    std::fs::create_dir_all(&path).map_err(|e| local_error("create", &path, e))
}

fn outputs(kind: &str, id: &str, path: &Path) -> Option<Value> {
    let p = path.display().to_string();
    Some(match kind {
        "storage" => json!({"type": "storage", "bucketName": p}),
        "kv" => json!({"type": "kv", "storeName": p, "identifier": p}),
        "queue" => json!({"type": "queue", "queueName": p, "identifier": p}),
        "vault" => json!({"type": "vault", "vaultId": p}),
        _ => {
            let _ = id;
            return None;
        }
    })
}

impl Platform for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn environment_info(&self) -> Value {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        json!({
            "platform": "local",
            "hostname": hostname,
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        })
    }

    fn prepare(&self, stack: &Stack) -> Stack {
        prepared::prepare_local(stack)
    }

    fn binding(&self, deployment_id: &str, id: &str, resource: &ResourceState) -> Option<Value> {
        let dir = self.resource_dir(deployment_id, &resource.kind, id);
        match (resource.kind.as_str(), dir) {
            ("storage", Some(dir)) => Some(json!({
                "service": "local-storage",
                "storagePath": format!("file://{}/", dir.display()),
            })),
            ("kv", Some(dir)) => Some(json!({"service": "local-kv", "dataDir": dir})),
            ("queue", Some(dir)) => Some(json!({"service": "local-queue", "queuePath": dir})),
            ("vault", Some(dir)) => Some(json!({
                "service": "local-vault",
                "vaultName": id,
                "dataDir": dir,
            })),
            ("worker", _) => {
                let url = resource
                    .outputs
                    .as_ref()?
                    .pointer("/publicEndpoints/default/url")?;
                Some(json!({"service": "local", "workerUrl": url}))
            }
            ("container", _) => {
                let outputs = resource.outputs.as_ref()?;
                let port = resource
                    .config
                    .pointer("/publicEndpoints/0/port")
                    .or_else(|| resource.config.pointer("/ports/0/port"))
                    .and_then(Value::as_u64)
                    .unwrap_or(8080);
                let mut binding = json!({
                    "service": "local",
                    "containerName": id,
                    "internalUrl": format!("http://{id}.svc:{port}"),
                });
                if let Some(url) = outputs
                    .get("publicEndpoints")
                    .and_then(Value::as_object)
                    .and_then(|endpoints| endpoints.values().next())
                    .and_then(|endpoint| endpoint.get("url"))
                {
                    binding["publicUrl"] = url.clone();
                }
                Some(binding)
            }
            _ => None,
        }
    }

    async fn apply(&self, ctx: ResourceContext) -> Result<Applied, ResourceError> {
        if let Some(dir) = self.resource_dir(&ctx.deployment_id, &ctx.kind, &ctx.resource_id) {
            let created = dir.clone();
            blocking(move || create_dir(created)).await?;
            return Ok(Applied {
                outputs: outputs(&ctx.kind, &ctx.resource_id, &dir),
                internal: None,
            });
        }
        match ctx.kind.as_str() {
            "worker" | "container" | "daemon" => self.compute.apply(&ctx).await,
            "service-account" => {
                let identity = format!("local-sa-{}", ctx.resource_id);
                Ok(Applied {
                    outputs: Some(json!({
                        "type": "service-account",
                        "identity": identity,
                        "resourceId": identity,
                    })),
                    internal: None,
                })
            }
            "compute-cluster" => Ok(Applied {
                outputs: Some(json!({
                    "type": "compute-cluster",
                    "clusterId": "local",
                    "horizonReady": true,
                    "capacityGroupStatuses": [],
                    "totalMachines": 1,
                })),
                internal: None,
            }),
            other => Err(ResourceError::fatal(
                "RESOURCE_CONFIG_INVALID",
                format!(
                    "Resource '{}' is a {other}, which the local platform cannot deploy",
                    ctx.resource_id
                ),
            )),
        }
    }

    async fn delete(&self, ctx: ResourceContext) -> Result<(), ResourceError> {
        if matches!(ctx.kind.as_str(), "worker" | "container" | "daemon") {
            return self.compute.delete(&ctx).await;
        }
        if let Some(dir) = self.resource_dir(&ctx.deployment_id, &ctx.kind, &ctx.resource_id) {
            return blocking(move || match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(local_error("remove", &dir, e)),
            })
            .await;
        }
        Ok(())
    }

    async fn heal(&self, ctx: ResourceContext) -> Result<Applied, ResourceError> {
        if matches!(ctx.kind.as_str(), "worker" | "container" | "daemon") {
            return self.compute.heal(&ctx).await;
        }
        if let Some(dir) = self.resource_dir(&ctx.deployment_id, &ctx.kind, &ctx.resource_id) {
            let checked = dir.clone();
            let present = blocking(move || Ok(checked.is_dir())).await?;
            if !present {
                return Err(ResourceError::fatal(
                    "LOCAL_PLATFORM_ERROR",
                    format!(
                        "The directory of {} '{}' is gone: {}",
                        ctx.kind,
                        ctx.resource_id,
                        dir.display()
                    ),
                ));
            }
            return Ok(Applied::default());
        }
        Ok(Applied::default())
    }

    async fn forget(&self, deployment_id: &str) -> Result<(), ResourceError> {
        let dir = self.deployment_dir(deployment_id);
        blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(local_error("remove", &dir, e)),
        })
        .await
    }
}
