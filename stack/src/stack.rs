//! The top level of a stack and its resource entries.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StackError;
use crate::resource::{Lifecycle, ResourceConfig, ResourceRef};
use crate::rules;

/// One platform's stack of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stack {
    pub id: String,
    /// In declaration order, which decides command targets and the engine's walk.
    pub resources: IndexMap<String, ResourceEntry>,
    #[serde(default)]
    pub permissions: Permissions,
    /// Absent: every platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_platforms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Value>,
}

impl Stack {
    /// Parses a stack from its JSON text and checks the rules the engine relies on. The text,
    /// not a `serde_json::Value`, is what keeps the resources in declaration order.
    pub fn parse(json: &str) -> Result<Self, StackError> {
        let stack: Self = serde_json::from_str(json).map_err(StackError::format)?;
        rules::check(&stack)?;
        Ok(stack)
    }

    /// The resources in declaration order, by id.
    pub fn resources(&self) -> impl Iterator<Item = (&str, &ResourceEntry)> {
        self.resources
            .iter()
            .map(|(id, entry)| (id.as_str(), entry))
    }

    pub fn resource(&self, id: &str) -> Option<&ResourceEntry> {
        self.resources.get(id)
    }
}

/// A resource and how the engine treats it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceEntry {
    pub config: ResourceConfig,
    pub lifecycle: Lifecycle,
    /// Ordering edges on top of the config's own; always given, even empty.
    pub dependencies: Vec<ResourceRef>,
    /// Publish the resource's binding in the deployment's state.
    #[serde(default)]
    pub remote_access: bool,
    /// The boolean stack input that gates the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_when: Option<String>,
}

impl ResourceEntry {
    /// Everything this resource waits for: the config's intrinsic edges, then the declared
    /// ones, each once, in that order.
    pub fn all_dependencies(&self) -> Vec<ResourceRef> {
        let mut all: Vec<ResourceRef> = Vec::new();
        for dependency in self
            .config
            .intrinsic_dependencies()
            .into_iter()
            .chain(self.dependencies.iter().cloned())
        {
            if !all.contains(&dependency) {
                all.push(dependency);
            }
        }
        all
    }

    /// This resource as others name it.
    pub fn reference(&self) -> ResourceRef {
        ResourceRef::new(self.config.kind(), self.config.id())
    }
}

/// The stack's permission profiles and how its management identity is derived.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// Profile name → scope (`*` or a resource id) → permission-set references (a name, or an
    /// inline set).
    pub profiles: IndexMap<String, IndexMap<String, Vec<Value>>>,
    #[serde(default)]
    pub management: Management,
}

/// `"auto"`, `{"extend": <profile>}` or `{"override": <profile>}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Management {
    #[default]
    Auto,
    Extend(Value),
    Override(Value),
}
