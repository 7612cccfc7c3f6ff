//! Commands for the deployment's workers: the manager cannot push into this machine, so the
//! agent leases each command-enabled worker's commands (`POST /v1/commands/leases`, held
//! until one comes with our `waitSeconds`) and pushes each envelope into the worker's
//! runtime at its `/_alien/commands`, as the manager does in push mode; the runtime submits
//! the answer to the manager itself. Containers and daemons lease their own commands with
//! the variables the deployment injects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deployer::state::{ResourceStatus, Status};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::manager::{LEASES_PATH, Lease};
use crate::{Agent, MAX_BACKOFF};

/// How often the set of workers to relay for is looked at again.
const RESCAN: Duration = Duration::from_secs(2);
/// How long a lease request waits at the manager for a command.
const LEASE_WAIT_SECONDS: u64 = 20;
/// A command's lease outlives the worker's own budget by this much, as on the public platform.
const LEASE_MARGIN_SECONDS: u64 = 60;
const DEFAULT_TIMEOUT_SECONDS: u64 = 180;

/// One worker the agent relays for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Relay {
    worker_id: String,
    push_target: String,
    lease_seconds: u64,
}

impl Agent {
    pub(crate) async fn commands_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut relays: BTreeMap<String, (Relay, JoinHandle<()>)> = BTreeMap::new();
        loop {
            let wanted = self.relays().await;
            relays.retain(|id, (relay, task)| {
                let keep = wanted.get(id) == Some(relay) && !task.is_finished();
                if !keep {
                    task.abort();
                }
                keep
            });
            for (id, relay) in wanted {
                if let std::collections::btree_map::Entry::Vacant(slot) = relays.entry(id) {
                    let task = tokio::spawn(self.clone().relay(relay.clone(), shutdown.clone()));
                    slot.insert((relay, task));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RESCAN) => {}
                () = shutdown.cancelled() => break,
            }
        }
        for (_, (_, task)) in relays {
            task.abort();
        }
    }

    /// The running command-enabled workers and where their runtimes take commands.
    async fn relays(&self) -> BTreeMap<String, Relay> {
        let record = self.record.lock().await;
        let state = &record.state;
        let mut relays = BTreeMap::new();
        if state.status != Status::Running && state.status != Status::UpdatePending {
            return relays;
        }
        let Some(stack) = &state.stack_state else {
            return relays;
        };
        for (id, resource) in &stack.resources {
            let enabled = resource
                .config
                .get("commandsEnabled")
                .and_then(Value::as_bool);
            let target = resource
                .outputs
                .as_ref()
                .and_then(|o| o.get("commandsPushTarget"))
                .and_then(Value::as_str);
            if resource.kind != "worker"
                || resource.status != ResourceStatus::Running
                || enabled != Some(true)
            {
                continue;
            }
            let Some(target) = target else { continue };
            let timeout = resource
                .config
                .get("timeoutSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
            relays.insert(
                id.clone(),
                Relay {
                    worker_id: id.clone(),
                    push_target: target.to_owned(),
                    lease_seconds: timeout + LEASE_MARGIN_SECONDS,
                },
            );
        }
        relays
    }

    /// Leases the worker's commands one at a time and pushes each into its runtime.
    async fn relay(self: Arc<Self>, relay: Relay, shutdown: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        let request = json!({
            "deploymentId": self.identity.deployment_id,
            "target": {"resourceId": relay.worker_id, "resourceType": "worker"},
            "maxLeases": 1,
            "leaseSeconds": relay.lease_seconds,
            "waitSeconds": LEASE_WAIT_SECONDS,
        });
        loop {
            let leased = tokio::select! {
                leased = self.manager.lease(&self.identity.token, &request, LEASE_WAIT_SECONDS) => leased,
                () = shutdown.cancelled() => return,
            };
            let leases = match leased {
                Ok(leases) => {
                    backoff = Duration::from_secs(1);
                    leases
                }
                Err(error) => {
                    debug!(worker = relay.worker_id, %error, "cannot lease commands");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            for lease in leases {
                self.dispatch(&relay, lease).await;
            }
        }
    }

    /// Pushes one leased envelope into the worker's runtime; a push that is not taken
    /// releases the lease, so the command comes again with its next attempt.
    async fn dispatch(&self, relay: &Relay, lease: Lease) {
        let envelope = match self.manager.absolute_envelope(lease.envelope) {
            Ok(envelope) => envelope,
            Err(error) => {
                warn!(worker = relay.worker_id, %error, "a leased command cannot be delivered");
                return;
            }
        };
        let pushed = self
            .manager
            .push_command(&relay.push_target, &self.identity.token, &envelope)
            .await;
        if let Err(error) = pushed {
            warn!(worker = relay.worker_id, command_id = lease.command_id, %error, "the worker did not take a command; it comes again");
            let released = self
                .manager
                .release_lease(&self.identity.token, &lease.lease_id)
                .await;
            if let Err(error) = released {
                debug!(%error, path = LEASES_PATH, "cannot release the lease; it expires");
            }
        }
    }
}
