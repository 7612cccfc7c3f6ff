//! Which deployments a lease may take (docs/compatibility.md, Deployment lifecycle). The store
//! turns a [`StatusFilter`] into its `WHERE` clause; [`StatusFilter::matches`] is the same
//! rule in Rust, which the tests hold the SQL to.

use super::DeploymentStatus;

/// A lock older than this is abandoned: its holder stopped renewing (it renews every 60 s
/// and gives up after 3.5 minutes), so the next acquire breaks it.
pub const STALE_LOCK_SECS: u32 = 5 * 60;

/// The statuses an acquire takes: `direct` whatever the retry flag, `with_retry` only when a
/// retry was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFilter {
    pub direct: Vec<DeploymentStatus>,
    pub with_retry: Vec<DeploymentStatus>,
}

impl StatusFilter {
    /// Without `requested`: the work statuses, and the retryable failures with a retry asked
    /// for. With it: only the requested statuses that a lease may take at all; strings that
    /// are no status, and statuses nobody works on (`waiting-for-machines`, `error`,
    /// `deleted`), are dropped, so a request for only those takes nothing.
    pub fn new(requested: Option<&[String]>) -> StatusFilter {
        let Some(requested) = requested else {
            return StatusFilter {
                direct: DeploymentStatus::WORK.to_vec(),
                with_retry: DeploymentStatus::RETRYABLE.to_vec(),
            };
        };
        let mut filter = StatusFilter {
            direct: Vec::new(),
            with_retry: Vec::new(),
        };
        for status in requested.iter().filter_map(|s| DeploymentStatus::parse(s)) {
            let set = if DeploymentStatus::WORK.contains(&status)
                || DeploymentStatus::SETUP_TEARDOWN.contains(&status)
                || status == DeploymentStatus::Running
            {
                &mut filter.direct
            } else if status.is_retryable() {
                &mut filter.with_retry
            } else {
                continue;
            };
            if !set.contains(&status) {
                set.push(status);
            }
        }
        filter
    }

    #[cfg(test)]
    pub fn matches(&self, status: DeploymentStatus, retry_requested: bool) -> bool {
        self.direct.contains(&status) || (retry_requested && self.with_retry.contains(&status))
    }
}

/// `acquireMode` of an acquire request: checked, and otherwise not acted on, as in the
/// public manager's store.
pub fn valid_acquire_mode(mode: &str) -> bool {
    matches!(mode, "runtime" | "setup-run" | "setup-teardown")
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeploymentStatus::*;

    fn strings(statuses: &[&str]) -> Vec<String> {
        statuses.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn status_filters() {
        /// Requested, taken without a retry flag, taken only with it.
        type Case = (
            Option<Vec<String>>,
            Vec<DeploymentStatus>,
            Vec<DeploymentStatus>,
        );
        let cases: Vec<Case> = vec![
            (
                None,
                DeploymentStatus::WORK.to_vec(),
                DeploymentStatus::RETRYABLE.to_vec(),
            ),
            (Some(strings(&["pending"])), vec![Pending], vec![]),
            (
                Some(strings(&[
                    "running",
                    "teardown-required",
                    "teardown-failed",
                ])),
                vec![Running, TeardownRequired, TeardownFailed],
                vec![],
            ),
            (
                Some(strings(&["update-failed", "pending"])),
                vec![Pending],
                vec![UpdateFailed],
            ),
            (
                Some(strings(&["waiting-for-machines", "error", "deleted"])),
                vec![],
                vec![],
            ),
            (Some(strings(&["nonsense"])), vec![], vec![]),
            (Some(strings(&[])), vec![], vec![]),
            (
                Some(strings(&["pending", "pending"])),
                vec![Pending],
                vec![],
            ),
        ];
        for (requested, direct, with_retry) in cases {
            let filter = StatusFilter::new(requested.as_deref());
            assert_eq!(filter, StatusFilter { direct, with_retry }, "{requested:?}");
        }
    }

    #[test]
    fn failures_are_taken_only_with_a_retry_flag() {
        let filter = StatusFilter::new(None);
        for status in DeploymentStatus::ALL {
            let work = DeploymentStatus::WORK.contains(&status);
            assert_eq!(filter.matches(status, false), work, "{status}");
            assert_eq!(
                filter.matches(status, true),
                work || status.is_retryable(),
                "{status}"
            );
        }
    }

    #[test]
    fn acquire_modes() {
        for (mode, valid) in [
            ("runtime", true),
            ("setup-run", true),
            ("setup-teardown", true),
            ("Runtime", false),
            ("", false),
            ("teardown", false),
        ] {
            assert_eq!(valid_acquire_mode(mode), valid, "{mode}");
        }
    }
}
