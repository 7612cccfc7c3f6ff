//! Deployment statuses and the sets the API and the leases decide by (docs/compatibility.md,
//! Deployment lifecycle).

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentStatus {
    Pending,
    PreflightsFailed,
    InitialSetup,
    InitialSetupFailed,
    Provisioning,
    WaitingForMachines,
    ProvisioningFailed,
    Running,
    RefreshFailed,
    UpdatePending,
    Updating,
    UpdateFailed,
    DeletePending,
    Deleting,
    DeleteFailed,
    TeardownRequired,
    TeardownFailed,
    Deleted,
    Error,
}

use DeploymentStatus::*;

impl DeploymentStatus {
    pub const ALL: [DeploymentStatus; 19] = [
        Pending,
        PreflightsFailed,
        InitialSetup,
        InitialSetupFailed,
        Provisioning,
        WaitingForMachines,
        ProvisioningFailed,
        Running,
        RefreshFailed,
        UpdatePending,
        Updating,
        UpdateFailed,
        DeletePending,
        Deleting,
        DeleteFailed,
        TeardownRequired,
        TeardownFailed,
        Deleted,
        Error,
    ];

    /// Statuses someone has work to do in: a lease takes them without being asked for them.
    pub const WORK: [DeploymentStatus; 7] = [
        Pending,
        InitialSetup,
        Provisioning,
        Updating,
        Deleting,
        UpdatePending,
        DeletePending,
    ];

    /// Failed statuses a retry can restart; a lease takes them once a retry is asked for.
    pub const RETRYABLE: [DeploymentStatus; 6] = [
        PreflightsFailed,
        InitialSetupFailed,
        ProvisioningFailed,
        RefreshFailed,
        UpdateFailed,
        DeleteFailed,
    ];

    /// Statuses where the setup tooling finishes a teardown; a lease takes them when asked.
    pub const SETUP_TEARDOWN: [DeploymentStatus; 2] = [TeardownRequired, TeardownFailed];

    /// Statuses a new release moves to `update-pending`.
    pub const RELEASE_ELIGIBLE: [DeploymentStatus; 3] = [Running, UpdateFailed, RefreshFailed];

    /// A deletion asked for and not finished: no stale report may overwrite it.
    pub const DELETING: [DeploymentStatus; 3] = [DeletePending, Deleting, DeleteFailed];

    /// A deletion asked for or done: asking for another, or for an update, is a conflict.
    /// (`delete-failed` is not: a failed deletion may be asked for again.)
    pub const DELETE_UNDER_WAY: [DeploymentStatus; 3] = [DeletePending, Deleting, Deleted];

    /// Statuses a report may always write, since they only move a deletion on.
    pub const DELETE_PROGRESS: [DeploymentStatus; 6] = [
        DeletePending,
        Deleting,
        DeleteFailed,
        TeardownRequired,
        TeardownFailed,
        Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Pending => "pending",
            PreflightsFailed => "preflights-failed",
            InitialSetup => "initial-setup",
            InitialSetupFailed => "initial-setup-failed",
            Provisioning => "provisioning",
            WaitingForMachines => "waiting-for-machines",
            ProvisioningFailed => "provisioning-failed",
            Running => "running",
            RefreshFailed => "refresh-failed",
            UpdatePending => "update-pending",
            Updating => "updating",
            UpdateFailed => "update-failed",
            DeletePending => "delete-pending",
            Deleting => "deleting",
            DeleteFailed => "delete-failed",
            TeardownRequired => "teardown-required",
            TeardownFailed => "teardown-failed",
            Deleted => "deleted",
            Error => "error",
        }
    }

    pub fn parse(value: &str) -> Option<DeploymentStatus> {
        DeploymentStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }

    /// A stored status, read as the deployment loop reads it: unknown strings are `error`.
    pub fn from_db(value: &str) -> DeploymentStatus {
        DeploymentStatus::parse(value).unwrap_or(Error)
    }

    /// The failed statuses: the retryable ones, `teardown-failed` and `error`.
    pub fn is_failed(self) -> bool {
        DeploymentStatus::RETRYABLE.contains(&self) || matches!(self, TeardownFailed | Error)
    }

    pub fn is_retryable(self) -> bool {
        DeploymentStatus::RETRYABLE.contains(&self)
    }

    pub fn is_deleting(self) -> bool {
        DeploymentStatus::DELETING.contains(&self)
    }

    pub fn is_delete_progress(self) -> bool {
        DeploymentStatus::DELETE_PROGRESS.contains(&self)
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_serde() {
        for status in DeploymentStatus::ALL {
            assert_eq!(DeploymentStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).expect("serializes"),
                serde_json::json!(status.as_str())
            );
        }
        assert_eq!(DeploymentStatus::parse("Running"), None);
        assert_eq!(DeploymentStatus::from_db("exploded"), Error);
    }

    #[test]
    fn each_status_is_in_the_public_managers_sets() {
        // (status, failed, retryable, work, deleting, delete progress, release eligible,
        // delete under way)
        #[rustfmt::skip]
        let table = [
            (Pending,            false, false, true,  false, false, false, false),
            (PreflightsFailed,   true,  true,  false, false, false, false, false),
            (InitialSetup,       false, false, true,  false, false, false, false),
            (InitialSetupFailed, true,  true,  false, false, false, false, false),
            (Provisioning,       false, false, true,  false, false, false, false),
            (WaitingForMachines, false, false, false, false, false, false, false),
            (ProvisioningFailed, true,  true,  false, false, false, false, false),
            (Running,            false, false, false, false, false, true,  false),
            (RefreshFailed,      true,  true,  false, false, false, true,  false),
            (UpdatePending,      false, false, true,  false, false, false, false),
            (Updating,           false, false, true,  false, false, false, false),
            (UpdateFailed,       true,  true,  false, false, false, true,  false),
            (DeletePending,      false, false, true,  true,  true,  false, true),
            (Deleting,           false, false, true,  true,  true,  false, true),
            (DeleteFailed,       true,  true,  false, true,  true,  false, false),
            (TeardownRequired,   false, false, false, false, true,  false, false),
            (TeardownFailed,     true,  false, false, false, true,  false, false),
            (Deleted,            false, false, false, false, true,  false, true),
            (Error,              true,  false, false, false, false, false, false),
        ];
        assert_eq!(table.len(), DeploymentStatus::ALL.len());
        for (status, failed, retryable, work, deleting, progress, eligible, under_way) in table {
            assert_eq!(status.is_failed(), failed, "{status} failed");
            assert_eq!(status.is_retryable(), retryable, "{status} retryable");
            assert_eq!(
                DeploymentStatus::WORK.contains(&status),
                work,
                "{status} work"
            );
            assert_eq!(status.is_deleting(), deleting, "{status} deleting");
            assert_eq!(
                status.is_delete_progress(),
                progress,
                "{status} delete progress"
            );
            assert_eq!(
                DeploymentStatus::RELEASE_ELIGIBLE.contains(&status),
                eligible,
                "{status} release eligible"
            );
            assert_eq!(
                DeploymentStatus::DELETE_UNDER_WAY.contains(&status),
                under_way,
                "{status} delete under way"
            );
        }
    }
}
