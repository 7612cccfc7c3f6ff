//! What a reported state writes to the record, and the agent sync's rules for when a report
//! is ignored and when a target is due (docs/compatibility.md, Deployment lifecycle).

use serde_json::{Map, Value, json};

use super::DeploymentStatus;
use crate::wire::sync::DeploymentState;

/// A suggested delay longer than this is cut to it, so that a deployment is never parked
/// for good by one report.
pub const MAX_DELAY_MS: u64 = 365 * 24 * 60 * 60 * 1000;

/// What the rules read of the stored record.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub status: DeploymentStatus,
    pub retry_requested: bool,
    pub current_release_id: Option<&'a str>,
    pub desired_release_id: Option<&'a str>,
    pub locked_by: Option<&'a str>,
    /// Whether the record holds a stack state, environment info or runtime metadata.
    pub has_state: bool,
}

/// The columns a report decides beyond the ones it carries as they are (stack state,
/// environment info, runtime metadata).
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub status: DeploymentStatus,
    pub current_release_id: Option<String>,
    pub clear_desired_release: bool,
    pub retry_requested: bool,
    pub error: Option<Value>,
    pub protocol_version: u32,
    /// Milliseconds from now to `next_step_after`; `None` clears it.
    pub delay_ms: Option<u64>,
    /// The reporter holds the lock, so the report also renews it.
    pub renew_lock: bool,
}

pub fn write(
    recorded: &Recorded<'_>,
    state: &DeploymentState,
    session: &str,
    suggested_delay_ms: Option<u64>,
) -> Write {
    // A pending delete is never overwritten by a report that does not move it on.
    let status = if state.status.is_delete_progress() || !recorded.status.is_deleting() {
        state.status
    } else {
        recorded.status
    };
    let current_release_id = state
        .current_release
        .as_ref()
        .and_then(|release| release.release_id.clone());
    let clear_desired_release = recorded.desired_release_id.is_some()
        && recorded.desired_release_id == current_release_id.as_deref();
    // A retry asked for while the engine was still reporting the failure survives that report.
    let retry_requested = state.retry_requested
        || (recorded.retry_requested && recorded.status.is_retryable() && state.status.is_failed());
    Write {
        status,
        current_release_id,
        clear_desired_release,
        retry_requested,
        error: headline_error(state),
        protocol_version: state.protocol_version,
        delay_ms: suggested_delay_ms.map(|ms| ms.min(MAX_DELAY_MS)),
        renew_lock: recorded.locked_by == Some(session),
    }
}

/// The error the record shows: the reported one, unless it is only a summary of
/// resource errors; for a failed status without one, a summary made from the resources.
pub fn headline_error(state: &DeploymentState) -> Option<Value> {
    match &state.error {
        Some(error) if !is_resource_summary(error) => return Some(error.clone()),
        _ => {}
    }
    if !state.status.is_failed() {
        return None;
    }
    summarize_resource_errors(state.stack_state.as_ref()).or_else(|| state.error.clone())
}

const SUMMARY_CODE: &str = "DEPLOYMENT_FAILED";

fn is_resource_summary(error: &Value) -> bool {
    error.get("code").and_then(Value::as_str) == Some(SUMMARY_CODE)
        && error
            .get("context")
            .and_then(|context| context.get("resource_errors"))
            .is_some()
}

fn summarize_resource_errors(stack_state: Option<&Value>) -> Option<Value> {
    let resources = stack_state?.get("resources")?.as_object()?;
    let failed: Vec<Value> = resources
        .iter()
        .filter_map(|(id, resource)| {
            let error = resource.get("error").filter(|e| !e.is_null())?;
            Some(json!({ "resource_id": id, "error": error }))
        })
        .collect();
    if failed.is_empty() {
        return None;
    }
    let names: Vec<&str> = failed
        .iter()
        .filter_map(|entry| entry.get("resource_id").and_then(Value::as_str))
        .collect();
    Some(json!({
        "code": SUMMARY_CODE,
        "message": format!(
            "{} of {} resources failed: {}",
            failed.len(),
            resources.len(),
            names.join(", ")
        ),
        "context": {
            "resource_errors": failed,
            "total_resources": resources.len(),
            "failed_resources": failed.len(),
        },
        "retryable": false,
        "internal": false,
    }))
}

/// Answers a user gave to the engine's gates are the record's: a report cannot drop or
/// change them.
pub fn preserve_gate_answers(
    recorded_runtime_metadata: Option<&Value>,
    state: &mut DeploymentState,
) {
    const KEY: &str = "persistedGateAnswers";
    let Some(recorded) = recorded_runtime_metadata
        .and_then(|metadata| metadata.get(KEY))
        .and_then(Value::as_object)
        .filter(|answers| !answers.is_empty())
    else {
        return;
    };
    let metadata = state
        .runtime_metadata
        .get_or_insert_with(|| Value::Object(Map::new()));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    let answers = metadata
        .entry(KEY)
        .or_insert_with(|| Value::Object(Map::new()));
    if !answers.is_object() {
        *answers = Value::Object(Map::new());
    }
    if let Some(answers) = answers.as_object_mut() {
        for (gate, answer) in recorded {
            answers.insert(gate.clone(), answer.clone());
        }
    }
}

/// Whether a redeploy was asked of a pull deployment and its agent has not taken it up yet:
/// the release it runs is desired again.
pub fn redeploy_pending(recorded: &Recorded<'_>) -> bool {
    recorded.status == DeploymentStatus::UpdatePending
        && recorded.desired_release_id.is_some()
        && recorded.desired_release_id == recorded.current_release_id
}

/// An agent's report is ignored when it would undo a pending delete or a pending redeploy,
/// or when it is the blank state of an agent that just started while the record already
/// knows more.
pub fn sync_ignores(recorded: &Recorded<'_>, state: &DeploymentState) -> bool {
    let stale_during_delete = recorded.status.is_deleting() && !state.status.is_delete_progress();
    let blank = state.status == DeploymentStatus::Pending
        && state.current_release.is_none()
        && state.target_release.is_none()
        && state.stack_state.is_none()
        && state.environment_info.is_none()
        && state.runtime_metadata.is_none();
    let authoritative = recorded.has_state
        || recorded.current_release_id.is_some()
        || recorded.status != DeploymentStatus::Pending;
    // A redeploy asked of a pull deployment (its release desired again while it runs it):
    // the agent's `running` on that release predates the request, and must not end it
    // before the agent has heard of it.
    let reported_release = state
        .current_release
        .as_ref()
        .and_then(|release| release.release_id.as_deref());
    let stale_during_redeploy = redeploy_pending(recorded)
        && state.status == DeploymentStatus::Running
        && reported_release == recorded.current_release_id;
    stale_during_delete || stale_during_redeploy || (blank && authoritative)
}

/// The release an agent should be moving to, if it is not there yet.
pub fn sync_target<'a>(recorded: &Recorded<'a>) -> Option<&'a str> {
    let deleting = recorded.status.is_deleting();
    let target = if deleting {
        recorded.desired_release_id.or(recorded.current_release_id)
    } else {
        recorded.desired_release_id
    }?;
    let due = deleting
        || recorded.current_release_id != Some(target)
        || recorded.status != DeploymentStatus::Running;
    due.then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Platform;
    use crate::wire::sync::ReleaseInfo;
    use DeploymentStatus::*;

    fn state(status: DeploymentStatus) -> DeploymentState {
        DeploymentState {
            status,
            platform: Platform::Aws,
            current_release: None,
            target_release: None,
            stack_state: None,
            error: None,
            environment_info: None,
            runtime_metadata: None,
            retry_requested: false,
            protocol_version: 1,
        }
    }

    fn recorded(status: DeploymentStatus) -> Recorded<'static> {
        Recorded {
            status,
            retry_requested: false,
            current_release_id: None,
            desired_release_id: None,
            locked_by: None,
            has_state: false,
        }
    }

    fn release(id: &str) -> Option<ReleaseInfo> {
        Some(ReleaseInfo {
            release_id: Some(id.to_owned()),
            version: None,
            description: None,
            stack: json!({}),
        })
    }

    #[test]
    fn a_pending_delete_keeps_its_status_against_stale_reports() {
        // (recorded, reported, written)
        let cases = [
            (Running, Updating, Updating),
            (DeletePending, Running, DeletePending),
            (Deleting, UpdateFailed, Deleting),
            (DeleteFailed, Pending, DeleteFailed),
            (DeletePending, Deleting, Deleting),
            (Deleting, Deleted, Deleted),
            (Deleting, TeardownRequired, TeardownRequired),
            (DeleteFailed, TeardownFailed, TeardownFailed),
            (TeardownRequired, Running, Running),
            (Deleted, Running, Running),
            (UpdatePending, DeletePending, DeletePending),
        ];
        for (stored, reported, expected) in cases {
            let written = write(&recorded(stored), &state(reported), "s", None);
            assert_eq!(written.status, expected, "{stored} <- {reported}");
        }
    }

    #[test]
    fn a_redeploy_of_a_pull_deployment_outlives_the_running_report_that_predates_it() {
        let mut record = recorded(UpdatePending);
        record.current_release_id = Some("rel_a");
        record.desired_release_id = Some("rel_a");
        assert!(redeploy_pending(&record));
        let mut running = state(Running);
        running.current_release = release("rel_a");
        assert!(sync_ignores(&record, &running), "the stale running");
        let mut taken_up = state(UpdatePending);
        taken_up.current_release = release("rel_a");
        assert!(!sync_ignores(&record, &taken_up));
        assert!(write(&record, &taken_up, "s", None).clear_desired_release);
        // A new release is no redeploy: the running report of the old one is taken.
        record.desired_release_id = Some("rel_b");
        assert!(!redeploy_pending(&record));
        assert!(!sync_ignores(&record, &running));
    }

    #[test]
    fn the_retry_flag() {
        // (recorded status, recorded flag, reported status, reported flag, written flag)
        let cases = [
            (UpdateFailed, true, UpdateFailed, false, true),
            (UpdateFailed, true, Updating, false, false),
            (UpdateFailed, false, UpdateFailed, false, false),
            (Running, false, UpdateFailed, true, true),
            (Running, true, UpdateFailed, false, false),
            (UpdateFailed, true, Error, false, true),
            (TeardownFailed, true, TeardownFailed, false, false),
            (ProvisioningFailed, true, ProvisioningFailed, true, true),
        ];
        for (stored, stored_flag, reported, reported_flag, expected) in cases {
            let mut record = recorded(stored);
            record.retry_requested = stored_flag;
            let mut report = state(reported);
            report.retry_requested = reported_flag;
            let written = write(&record, &report, "s", None);
            assert_eq!(
                written.retry_requested, expected,
                "{stored}/{stored_flag} <- {reported}/{reported_flag}"
            );
        }
    }

    #[test]
    fn releases_locks_and_delays() {
        let mut record = recorded(Updating);
        record.desired_release_id = Some("rel_b");
        record.locked_by = Some("s-1");
        let mut report = state(Running);
        report.current_release = release("rel_b");
        let written = write(&record, &report, "s-1", Some(u64::MAX));
        assert_eq!(written.current_release_id.as_deref(), Some("rel_b"));
        assert!(written.clear_desired_release);
        assert!(written.renew_lock);
        assert_eq!(written.delay_ms, Some(MAX_DELAY_MS));

        report.current_release = release("rel_a");
        let written = write(&record, &report, "s-2", Some(5000));
        assert!(!written.clear_desired_release);
        assert!(!written.renew_lock, "another session's report");
        assert_eq!(written.delay_ms, Some(5000));

        report.current_release = None;
        let written = write(&record, &report, "s-1", None);
        assert_eq!(written.current_release_id, None);
        assert!(!written.clear_desired_release);
        assert_eq!(written.delay_ms, None);
    }

    #[test]
    fn headline_errors() {
        let own = json!({"code": "BOOM", "message": "boom", "retryable": false, "internal": false});
        let summary = json!({"code": "DEPLOYMENT_FAILED", "message": "1 failed",
                             "context": {"resource_errors": []}});
        let resources = json!({"platform": "aws", "resourcePrefix": "p", "resources": {
            "api": {"type": "worker", "error": {"code": "X", "message": "x"}},
            "db": {"type": "storage"},
            "queue": {"type": "queue", "error": null}
        }});
        // (status, reported error, stack state, expected code or none)
        let cases = [
            (Running, Some(own.clone()), None, Some("BOOM")),
            (
                UpdateFailed,
                Some(own.clone()),
                Some(resources.clone()),
                Some("BOOM"),
            ),
            (
                Running,
                Some(summary.clone()),
                Some(resources.clone()),
                None,
            ),
            (
                UpdateFailed,
                Some(summary.clone()),
                Some(resources.clone()),
                Some("DEPLOYMENT_FAILED"),
            ),
            (
                UpdateFailed,
                Some(summary.clone()),
                None,
                Some("DEPLOYMENT_FAILED"),
            ),
            (
                UpdateFailed,
                None,
                Some(resources.clone()),
                Some("DEPLOYMENT_FAILED"),
            ),
            (UpdateFailed, None, None, None),
            (Running, None, Some(resources.clone()), None),
        ];
        for (status, error, stack_state, expected) in cases {
            let mut report = state(status);
            report.error = error.clone();
            report.stack_state = stack_state.clone();
            let headline = headline_error(&report);
            assert_eq!(
                headline.as_ref().and_then(|e| e["code"].as_str()),
                expected,
                "{status} {error:?} {stack_state:?}"
            );
        }
        let mut report = state(UpdateFailed);
        report.stack_state = Some(resources);
        let summary = headline_error(&report).expect("a summary");
        assert_eq!(summary["context"]["failed_resources"], 1);
        assert_eq!(summary["context"]["total_resources"], 3);
        assert_eq!(
            summary["context"]["resource_errors"][0]["resource_id"],
            "api"
        );
        assert_eq!(summary["message"], "1 of 3 resources failed: api");
    }

    #[test]
    fn gate_answers_stay_as_recorded() {
        let recorded = json!({"persistedGateAnswers": {"a": "yes", "b": "no"}, "other": 1});
        // (reported runtime metadata, expected afterwards)
        let cases = [
            (
                None,
                json!({"persistedGateAnswers": {"a": "yes", "b": "no"}}),
            ),
            (
                Some(json!({"persistedGateAnswers": {"a": "changed", "c": "new"}, "x": 2})),
                json!({"persistedGateAnswers": {"a": "yes", "b": "no", "c": "new"}, "x": 2}),
            ),
            (
                Some(json!({"persistedGateAnswers": "garbage"})),
                json!({"persistedGateAnswers": {"a": "yes", "b": "no"}}),
            ),
        ];
        for (reported, expected) in cases {
            let mut report = state(Running);
            report.runtime_metadata = reported.clone();
            preserve_gate_answers(Some(&recorded), &mut report);
            assert_eq!(report.runtime_metadata, Some(expected), "{reported:?}");
        }
        for recorded in [
            None,
            Some(json!({})),
            Some(json!({"persistedGateAnswers": {}})),
        ] {
            let mut report = state(Running);
            preserve_gate_answers(recorded.as_ref(), &mut report);
            assert_eq!(report.runtime_metadata, None, "{recorded:?}");
        }
    }

    #[test]
    fn which_agent_reports_are_ignored() {
        let mut blank = state(Pending);
        blank.protocol_version = 1;
        let mut progressed = state(Pending);
        progressed.stack_state = Some(json!({}));
        // (recorded status, recorded has state, report, ignored)
        let cases = [
            (Pending, false, blank.clone(), false),
            (Pending, true, blank.clone(), true),
            (Running, false, blank.clone(), true),
            (Running, false, progressed.clone(), false),
            (DeletePending, false, state(Running), true),
            (Deleting, true, state(Deleting), false),
            (DeleteFailed, true, state(Deleted), false),
            (DeletePending, true, state(TeardownRequired), false),
            (TeardownRequired, true, state(Running), false),
        ];
        for (status, has_state, report, ignored) in cases {
            let mut record = recorded(status);
            record.has_state = has_state;
            assert_eq!(
                sync_ignores(&record, &report),
                ignored,
                "{status} {report:?}"
            );
        }
        let mut record = recorded(Pending);
        record.current_release_id = Some("rel_a");
        assert!(
            sync_ignores(&record, &blank),
            "a current release is authoritative"
        );
    }

    #[test]
    fn sync_targets() {
        // (status, current, desired, target)
        let cases = [
            (Running, Some("rel_a"), None, None),
            (Running, Some("rel_a"), Some("rel_a"), None),
            (Running, Some("rel_a"), Some("rel_b"), Some("rel_b")),
            (Pending, None, Some("rel_a"), Some("rel_a")),
            (UpdateFailed, Some("rel_a"), Some("rel_a"), Some("rel_a")),
            (Pending, None, None, None),
            (DeletePending, Some("rel_a"), None, Some("rel_a")),
            (Deleting, Some("rel_a"), Some("rel_b"), Some("rel_b")),
            (DeleteFailed, None, None, None),
            (TeardownRequired, Some("rel_a"), None, None),
        ];
        for (status, current, desired, expected) in cases {
            let mut record = recorded(status);
            record.current_release_id = current;
            record.desired_release_id = desired;
            assert_eq!(
                sync_target(&record),
                expected,
                "{status} {current:?} {desired:?}"
            );
        }
    }
}
