//! A resource's config, tagged by `config.type`, and the references between resources.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::container::Container;
use crate::daemon::Daemon;
use crate::data::{Kv, Queue, Storage, Vault};
use crate::frozen::{ComputeCluster, ServiceAccount};
use crate::shared::Code;
use crate::worker::Worker;

/// `{"type": "<resource type>", "id": "<id>"}`: one resource naming another.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

impl ResourceRef {
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
        }
    }
}

/// Who owns a resource: `frozen` ones are created by setup, `live` ones by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    Frozen,
    Live,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Frozen => "frozen",
            Self::Live => "live",
        }
    }
}

/// The config of a resource type the `local` platform does not run. It is kept as the client
/// sent it (its `id` still required), so such stacks round-trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherConfig {
    pub id: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A resource's config. The variants, in this order, are every type tag the public platform
/// knows; any other tag is refused with serde's "unknown variant".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ResourceConfig {
    #[serde(rename = "worker")]
    Worker(Worker),
    #[serde(rename = "daemon")]
    Daemon(Daemon),
    #[serde(rename = "container")]
    Container(Container),
    #[serde(rename = "storage")]
    Storage(Storage),
    #[serde(rename = "kv")]
    Kv(Kv),
    #[serde(rename = "vault")]
    Vault(Vault),
    #[serde(rename = "queue")]
    Queue(Queue),
    #[serde(rename = "postgres")]
    Postgres(OtherConfig),
    #[serde(rename = "ai")]
    Ai(OtherConfig),
    #[serde(rename = "sandbox")]
    Sandbox(OtherConfig),
    #[serde(rename = "key")]
    Key(OtherConfig),
    #[serde(rename = "email")]
    Email(OtherConfig),
    #[serde(rename = "network")]
    Network(OtherConfig),
    #[serde(rename = "build")]
    Build(OtherConfig),
    #[serde(rename = "service-account")]
    ServiceAccount(ServiceAccount),
    #[serde(rename = "artifact-registry")]
    ArtifactRegistry(OtherConfig),
    #[serde(rename = "compute-cluster")]
    ComputeCluster(ComputeCluster),
    #[serde(rename = "kubernetes-cluster")]
    KubernetesCluster(OtherConfig),
    #[serde(rename = "remote-stack-management")]
    RemoteStackManagement(OtherConfig),
    #[serde(rename = "resource-access")]
    ResourceAccess(OtherConfig),
    #[serde(rename = "service_activation")]
    ServiceActivation(OtherConfig),
    #[serde(rename = "azure_resource_group")]
    AzureResourceGroup(OtherConfig),
    #[serde(rename = "azure_storage_account")]
    AzureStorageAccount(OtherConfig),
    #[serde(rename = "azure_container_apps_environment")]
    AzureContainerAppsEnvironment(OtherConfig),
    #[serde(rename = "azure_service_bus_namespace")]
    AzureServiceBusNamespace(OtherConfig),
    #[serde(rename = "experimental/aws-opensearch")]
    AwsOpenSearch(OtherConfig),
}

impl ResourceConfig {
    /// The type tag, as `config.type` spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Worker(_) => "worker",
            Self::Daemon(_) => "daemon",
            Self::Container(_) => "container",
            Self::Storage(_) => "storage",
            Self::Kv(_) => "kv",
            Self::Vault(_) => "vault",
            Self::Queue(_) => "queue",
            Self::Postgres(_) => "postgres",
            Self::Ai(_) => "ai",
            Self::Sandbox(_) => "sandbox",
            Self::Key(_) => "key",
            Self::Email(_) => "email",
            Self::Network(_) => "network",
            Self::Build(_) => "build",
            Self::ServiceAccount(_) => "service-account",
            Self::ArtifactRegistry(_) => "artifact-registry",
            Self::ComputeCluster(_) => "compute-cluster",
            Self::KubernetesCluster(_) => "kubernetes-cluster",
            Self::RemoteStackManagement(_) => "remote-stack-management",
            Self::ResourceAccess(_) => "resource-access",
            Self::ServiceActivation(_) => "service_activation",
            Self::AzureResourceGroup(_) => "azure_resource_group",
            Self::AzureStorageAccount(_) => "azure_storage_account",
            Self::AzureContainerAppsEnvironment(_) => "azure_container_apps_environment",
            Self::AzureServiceBusNamespace(_) => "azure_service_bus_namespace",
            Self::AwsOpenSearch(_) => "experimental/aws-opensearch",
        }
    }

    /// `config.id`.
    pub fn id(&self) -> &str {
        match self {
            Self::Worker(c) => &c.id,
            Self::Daemon(c) => &c.id,
            Self::Container(c) => &c.id,
            Self::Storage(c) => &c.id,
            Self::Kv(c) => &c.id,
            Self::Vault(c) => &c.id,
            Self::Queue(c) => &c.id,
            Self::ServiceAccount(c) => &c.id,
            Self::ComputeCluster(c) => &c.id,
            Self::Postgres(c)
            | Self::Ai(c)
            | Self::Sandbox(c)
            | Self::Key(c)
            | Self::Email(c)
            | Self::Network(c)
            | Self::Build(c)
            | Self::ArtifactRegistry(c)
            | Self::KubernetesCluster(c)
            | Self::RemoteStackManagement(c)
            | Self::ResourceAccess(c)
            | Self::ServiceActivation(c)
            | Self::AzureResourceGroup(c)
            | Self::AzureStorageAccount(c)
            | Self::AzureContainerAppsEnvironment(c)
            | Self::AzureServiceBusNamespace(c)
            | Self::AwsOpenSearch(c) => &c.id,
        }
    }

    /// The edges the config itself implies, before the entry's declared `dependencies`: a
    /// worker's links and trigger sources, a container's or daemon's links and cluster, a
    /// storage's encryption key.
    pub fn intrinsic_dependencies(&self) -> Vec<ResourceRef> {
        match self {
            Self::Worker(worker) => worker.intrinsic_dependencies(),
            Self::Container(container) => {
                with_cluster(&container.links, container.cluster.as_deref())
            }
            Self::Daemon(daemon) => with_cluster(&daemon.links, daemon.cluster.as_deref()),
            Self::Storage(storage) => storage.encryption_key.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether it is a workload the engine runs (worker, container, daemon).
    pub fn is_compute(&self) -> bool {
        matches!(self, Self::Worker(_) | Self::Container(_) | Self::Daemon(_))
    }

    /// A workload's code.
    pub fn code(&self) -> Option<&Code> {
        match self {
            Self::Worker(c) => Some(&c.code),
            Self::Container(c) => Some(&c.code),
            Self::Daemon(c) => Some(&c.code),
            _ => None,
        }
    }

    /// A workload's code, which `alien release` rewrites once it pushed the image.
    pub fn code_mut(&mut self) -> Option<&mut Code> {
        match self {
            Self::Worker(c) => Some(&mut c.code),
            Self::Container(c) => Some(&mut c.code),
            Self::Daemon(c) => Some(&mut c.code),
            _ => None,
        }
    }
}

fn with_cluster(links: &[ResourceRef], cluster: Option<&str>) -> Vec<ResourceRef> {
    let mut dependencies = links.to_vec();
    dependencies.extend(cluster.map(|id| ResourceRef::new("compute-cluster", id)));
    dependencies
}
