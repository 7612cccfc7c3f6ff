//! The agent's data directory (mode 0700): its lock, its identity (the deployment it runs
//! and the token the manager minted for it) and its deployment record, each a small JSON file
//! (mode 0600) replaced whole and fsynced, so a crash leaves the old content or the new one.
//! The workloads and their images live beside them (`deployments/`, `images/`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use deployer::config::DeploymentConfig;
use deployer::state::{DeploymentState, ReleaseInfo};
use plumbing::lock::{LockError, LockFile};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::AgentError;

const LOCK: &str = "agent.lock";
const IDENTITY: &str = "identity.json";
const RECORD: &str = "deployment.json";
const RELAY: &str = "relay.json";

/// Who the agent is to the manager, once the first start has asked.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub deployment_id: String,
    pub token: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("deployment_id", &self.deployment_id)
            .finish_non_exhaustive()
    }
}

/// The relay's port, kept so that a restarted agent serves its workloads at the address
/// they were launched with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct RelayPort {
    port: u16,
}

/// What the manager asked for since the deployment loop last looked; the loop applies it
/// before its next step, so that it alone writes the deployment's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requests {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ReleaseInfo>,
    #[serde(default)]
    pub delete: bool,
    #[serde(default)]
    pub retry: bool,
    /// Roll the release this machine runs out again (with the configuration the manager
    /// sent last).
    #[serde(default)]
    pub redeploy: bool,
    /// The manager's record, for an agent that has no deployment state yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<DeploymentState>,
}

impl Requests {
    pub fn is_empty(&self) -> bool {
        self.target.is_none()
            && !self.delete
            && !self.retry
            && !self.redeploy
            && self.adopt.is_none()
    }
}

/// The deployment as this machine knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub state: DeploymentState,
    /// The configuration of the last target, as the manager sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<DeploymentConfig>,
    #[serde(default)]
    pub requests: Requests,
    /// Heartbeats of the last health check, until a sync has carried them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heartbeats: Vec<serde_json::Value>,
    /// The revision the heartbeats came with: a sync that reported it has carried them.
    #[serde(default)]
    pub heartbeats_revision: u64,
    /// Bumped by every change of `state`: a sync that reported an older one reports again.
    #[serde(default)]
    pub revision: u64,
}

impl Record {
    pub fn new() -> Record {
        Record {
            state: DeploymentState::new("local"),
            config: None,
            requests: Requests::default(),
            heartbeats: Vec::new(),
            heartbeats_revision: 0,
            revision: 0,
        }
    }
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    _lock: LockFile,
}

impl Store {
    /// Creates the directory if needed (0700) and takes its lock: one agent per directory.
    pub fn open(dir: &Path) -> Result<Store, AgentError> {
        let io = |what: &str, e: std::io::Error| {
            AgentError::Data(format!("cannot {what} {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| io("create", e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("restrict", e))?;
        let lock = LockFile::acquire(&dir.join(LOCK)).map_err(|e| match e {
            LockError::Held { .. } => AgentError::Data(format!(
                "another agent runs with the data directory {}: {e}",
                dir.display()
            )),
            other => AgentError::Data(other.to_string()),
        })?;
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn identity(&self) -> Result<Option<Identity>, AgentError> {
        read(&self.dir.join(IDENTITY))
    }

    pub fn save_identity(&self, identity: &Identity) -> Result<(), AgentError> {
        write(&self.dir.join(IDENTITY), identity)
    }

    pub fn record(&self) -> Result<Option<Record>, AgentError> {
        read(&self.dir.join(RECORD))
    }

    /// The relay's port of the last start, if any.
    pub fn relay_port(&self) -> Result<Option<u16>, AgentError> {
        Ok(read::<RelayPort>(&self.dir.join(RELAY))?.map(|r| r.port))
    }

    pub fn save_relay_port(&self, port: u16) -> Result<(), AgentError> {
        write(&self.dir.join(RELAY), &RelayPort { port })
    }

    /// Blocking: call it off the async threads.
    pub fn save_record(&self, record: &Record) -> Result<(), AgentError> {
        write(&self.dir.join(RECORD), record)
    }
}

fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, AgentError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AgentError::Data(format!("{} is damaged: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::Data(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), AgentError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| AgentError::Data(format!("cannot encode {}: {e}", path.display())))?;
    plumbing::durable::replace(path, &bytes)
        .map_err(|e| AgentError::Data(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_agent_per_directory_and_its_files_are_private() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("agent");
        let store = Store::open(&dir).expect("open");
        assert!(
            Store::open(&dir).is_err(),
            "a second agent on the same directory"
        );
        assert!(store.identity().expect("read").is_none());
        let identity = Identity {
            deployment_id: "dep_1".into(),
            token: "ax_deploy_secret".into(),
        };
        store.save_identity(&identity).expect("save");
        assert_eq!(store.identity().expect("read"), Some(identity.clone()));
        assert!(!format!("{identity:?}").contains("secret"));
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(IDENTITY)), 0o600);
        let record = Record::new();
        store.save_record(&record).expect("save");
        assert_eq!(store.record().expect("read").map(|r| r.revision), Some(0));
        std::fs::write(dir.join(RECORD), b"{").expect("damage");
        assert!(
            store.record().is_err(),
            "a damaged record is an error, not a new start"
        );
    }
}
