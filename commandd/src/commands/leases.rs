//! Pull delivery: a receiver acquires leases on its target's commands, long-polling
//! until one can be leased; a lease released, or run out, leaves its command leasable again
//! with one more attempt. A lease's owner is asked for by the manager, to authorize a release.

use std::time::Duration;

use tracing::{debug, error};

use plumbing::clock;
use protocol::commandd::{Owner, Principal};
use protocol::commands::{LeaseInfo, LeaseRequest, LeaseResponse};

use super::{Commands, just_after, owner_of, principal_label};
use crate::signals::target_key;
use crate::store::registry;
use crate::{Error, ids};

/// Leases handed out by one acquire at most, whatever `maxLeases` says.
const MAX_LEASES: u32 = 100;

impl Commands {
    /// `POST /v1/commands/leases`; with `wait`, answers as soon as a command of the
    /// target can be leased, or with no lease when the wait is over.
    pub async fn acquire(
        &self,
        principal: &Principal,
        request: &LeaseRequest,
        wait: Option<Duration>,
    ) -> Result<LeaseResponse, Error> {
        if let Some(problem) = request.problem() {
            return Err(Error::BadRequest(problem));
        }
        let key = target_key(&request.deployment_id, &request.target.resource_id);
        let until = wait.map(|wait| tokio::time::Instant::now() + wait);
        loop {
            let mut changes = self.signals.subscribe(&key);
            let leases = self.lease_now(request).await?;
            let Some(until) = until else {
                return Ok(LeaseResponse { leases });
            };
            if !leases.is_empty() || tokio::time::Instant::now() >= until {
                return Ok(LeaseResponse { leases });
            }
            // A lease running out makes its command available without any event.
            let (dep, target) = (
                request.deployment_id.clone(),
                request.target.resource_id.clone(),
            );
            let next_expiry = self
                .db
                .call(move |conn| registry::next_lease_expiry(conn, &dep, &target, clock::now_ms()))
                .await?;
            let wake = match next_expiry {
                Some(at) => until.min(just_after(at)),
                None => until,
            };
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(wake) => {}
                () = self.shutdown.cancelled() => return Ok(LeaseResponse { leases }),
            }
            debug!(principal = %principal_label(principal), "long poll woke");
        }
    }

    async fn lease_now(&self, request: &LeaseRequest) -> Result<Vec<LeaseInfo>, Error> {
        let max = request.max_leases.min(MAX_LEASES);
        if max == 0 {
            return Ok(Vec::new());
        }
        let (dep, target) = (request.deployment_id.clone(), request.target.clone());
        let seconds = i64::try_from(request.lease_seconds.max(1)).unwrap_or(i64::MAX / 2000);
        let (leased, expired) = self
            .db
            .transaction(move |tx| {
                let now = clock::now_ms();
                let mut leased = Vec::new();
                let mut expired = Vec::new();
                for id in registry::leasable(tx, &dep, &target.resource_id, now, max * 2)? {
                    if leased.len() >= max as usize {
                        break;
                    }
                    let Some(command) = registry::get(tx, &id)? else {
                        continue;
                    };
                    if command.target != target {
                        // The index and the record disagree: refuse rather than deliver to
                        // the wrong resource (the record is kept for the operator).
                        return Err(Error::Corrupt(format!(
                            "command {id} is indexed under target {} but recorded for {}",
                            target.resource_id, command.target.resource_id
                        )));
                    }
                    if command.deadline.is_some_and(|d| d <= now) {
                        expired.push(command);
                        continue;
                    }
                    let lease_id = ids::lease()?;
                    let expires_at = now.saturating_add(seconds.saturating_mul(1000));
                    if let Some(command) = registry::lease(tx, &id, &lease_id, now, expires_at)? {
                        leased.push((lease_id, expires_at, command));
                    }
                }
                Ok((leased, expired))
            })
            .await?;
        for command in &expired {
            self.expire(command).await?;
        }
        let mut leases = Vec::with_capacity(leased.len());
        for (lease_id, expires_at, command) in leased {
            self.signals.bump(&command.id);
            let mut envelope = match self.envelope(&command).await {
                Ok(envelope) => envelope,
                Err(e) => {
                    // Kept leased: it is offered again when the lease runs out.
                    error!(command_id = %command.id, error = %e, "cannot build the envelope of a leased command");
                    continue;
                }
            };
            self.relativize(&mut envelope);
            leases.push(LeaseInfo {
                lease_id,
                lease_expires_at: clock::rfc3339(expires_at),
                command_id: command.id,
                attempt: command.attempt,
                envelope,
            });
        }
        Ok(leases)
    }

    pub async fn lease_owner(&self, lease_id: &str) -> Result<Owner, Error> {
        let owned = lease_id.to_owned();
        let command = self
            .db
            .call(move |conn| registry::leased(conn, &owned, clock::now_ms()))
            .await?
            .ok_or_else(|| Error::LeaseNotFound(lease_id.to_owned()))?;
        Ok(owner_of(command))
    }

    /// `POST /v1/commands/leases/{leaseId}/release`: back to `PENDING` with one more attempt.
    pub async fn release(&self, lease_id: &str) -> Result<(), Error> {
        let owner = self.lease_owner(lease_id).await?;
        let owned = lease_id.to_owned();
        let released = self
            .db
            .call(move |conn| registry::release(conn, &owned, clock::now_ms()))
            .await?
            .ok_or_else(|| Error::LeaseNotFound(lease_id.to_owned()))?;
        debug!(lease_id, released, "lease released");
        self.signals.bump(&owner.command_id);
        self.signals
            .bump(&target_key(&owner.deployment_id, &owner.target.resource_id));
        Ok(())
    }
}
