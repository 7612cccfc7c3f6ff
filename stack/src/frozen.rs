//! The setup-owned resources `local` runs: `service-account` and `compute-cluster`.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The identity a permission profile runs as. The permission sets are kept as given: the
/// `local` platform grants nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccount {
    pub id: String,
    pub stack_permission_sets: Vec<Value>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub resource_permission_sets: IndexMap<String, Vec<Value>>,
}

/// Where containers run; on `local`, the machine itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComputeCluster {
    pub id: String,
    pub capacity_groups: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_cidr: Option<String>,
}
