use std::path::Path;

use rusqlite::Connection;
use serde_json::json;

use super::*;
use crate::lifecycle::reconcile;
use crate::store::migrations;

fn database() -> Connection {
    let mut conn = Connection::open_in_memory().expect("open");
    migrations::apply(&mut conn, Path::new(":memory:")).expect("migrate");
    conn
}

fn add(conn: &Connection, id: &str, status: DeploymentStatus) {
    insert(
        conn,
        &NewDeployment {
            id,
            name: id,
            deployment_group_id: "dg_1",
            platform: Platform::Aws,
            base_platform: None,
            stack_settings: "{}",
            stack_state: None,
            environment_variables: None,
            input_values: None,
            desired_release_id: None,
            deployment_token: "ax_deploy_test",
        },
    )
    .expect("insert");
    set(conn, id, "status = ?2", status.as_str());
}

/// Sets columns of one row; `assignment` uses `?2` for `value`.
fn set(conn: &Connection, id: &str, assignment: &str, value: &str) {
    conn.execute(
        &format!("UPDATE deployments SET {assignment} WHERE id = ?1"),
        [id, value],
    )
    .expect("update");
}

fn acquire_ids(conn: &mut Connection, query: &AcquireQuery<'_>) -> Vec<String> {
    let tx = conn.transaction().expect("begin");
    let ids = acquire(&tx, query)
        .expect("acquire")
        .into_iter()
        .map(|d| d.id)
        .collect();
    tx.rollback().expect("rollback");
    ids
}

fn query<'a>(filter: &'a StatusFilter) -> AcquireQuery<'a> {
    AcquireQuery {
        session: "s-1",
        model: DeploymentModel::Push,
        statuses: filter,
        ids: None,
        platforms: None,
        limit: 1000,
    }
}

#[test]
fn the_sql_status_filter_is_the_rule() {
    let mut conn = database();
    let mut rows = Vec::new();
    for status in DeploymentStatus::ALL {
        for retry in [false, true] {
            let id = format!("dep_{status}_{retry}");
            add(&conn, &id, status);
            set(
                &conn,
                &id,
                "retry_requested = ?2",
                if retry { "1" } else { "0" },
            );
            rows.push((id, status, retry));
        }
    }
    let requests: [Option<Vec<String>>; 4] = [
        None,
        Some(vec![
            "pending".into(),
            "update-failed".into(),
            "running".into(),
        ]),
        Some(vec![
            "teardown-required".into(),
            "error".into(),
            "deleted".into(),
        ]),
        Some(vec!["waiting-for-machines".into()]),
    ];
    for requested in requests {
        let filter = StatusFilter::new(requested.as_deref());
        let mut got = acquire_ids(&mut conn, &query(&filter));
        got.sort();
        let mut expected: Vec<String> = rows
            .iter()
            .filter(|(_, status, retry)| filter.matches(*status, *retry))
            .map(|(id, _, _)| id.clone())
            .collect();
        expected.sort();
        assert_eq!(got, expected, "{requested:?}");
    }
}

#[test]
fn locks_schedules_models_and_filters() {
    let mut conn = database();
    let filter = StatusFilter::new(None);
    // (id, column assignments, acquired by a push acquire without filters)
    let cases = [
        ("dep_free", "", true),
        (
            "dep_locked",
            "locked_by = 'other', locked_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-60 seconds')",
            false,
        ),
        (
            "dep_stale",
            "locked_by = 'other', locked_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-301 seconds')",
            true,
        ),
        (
            "dep_later",
            "next_step_after = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '+60 seconds')",
            false,
        ),
        (
            "dep_due",
            "next_step_after = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-1 seconds')",
            true,
        ),
        (
            "dep_pull",
            "stack_settings = '{\"deploymentModel\":\"pull\"}'",
            false,
        ),
        (
            "dep_push",
            "stack_settings = '{\"deploymentModel\":\"push\"}'",
            true,
        ),
        ("dep_gcp", "platform = 'gcp'", true),
    ];
    for (id, assignments, _) in cases {
        add(&conn, id, DeploymentStatus::Pending);
        if !assignments.is_empty() {
            conn.execute(
                &format!("UPDATE deployments SET {assignments} WHERE id = ?1"),
                [id],
            )
            .expect("update");
        }
    }
    let expected: Vec<&str> = cases.iter().filter(|c| c.2).map(|c| c.0).collect();
    assert_eq!(acquire_ids(&mut conn, &query(&filter)), expected);

    let pull = AcquireQuery {
        model: DeploymentModel::Pull,
        ..query(&filter)
    };
    assert_eq!(acquire_ids(&mut conn, &pull), ["dep_pull"]);

    let ids = [
        "dep_free".to_owned(),
        "dep_locked".to_owned(),
        "dep_gcp".to_owned(),
    ];
    let by_id = AcquireQuery {
        ids: Some(&ids),
        ..query(&filter)
    };
    assert_eq!(acquire_ids(&mut conn, &by_id), ["dep_free", "dep_gcp"]);
    let no_ids = AcquireQuery {
        ids: Some(&[]),
        ..query(&filter)
    };
    assert!(acquire_ids(&mut conn, &no_ids).is_empty());

    let gcp = [Platform::Gcp];
    let by_platform = AcquireQuery {
        platforms: Some(&gcp),
        ..query(&filter)
    };
    assert_eq!(acquire_ids(&mut conn, &by_platform), ["dep_gcp"]);

    let two = AcquireQuery {
        limit: 2,
        ..query(&filter)
    };
    assert_eq!(acquire_ids(&mut conn, &two), ["dep_free", "dep_stale"]);
    let none = AcquireQuery {
        limit: 0,
        ..query(&filter)
    };
    assert!(acquire_ids(&mut conn, &none).is_empty());
}

#[test]
fn acquiring_locks_and_consumes_the_retry_flag() {
    let conn = database();
    add(&conn, "dep_1", DeploymentStatus::UpdateFailed);
    set(&conn, "dep_1", "retry_requested = ?2", "1");
    let filter = StatusFilter::new(None);
    let acquired = acquire(&conn, &query(&filter)).expect("acquire");
    assert_eq!(acquired.len(), 1);
    assert!(acquired[0].retry_requested, "the flag as it was");
    assert_eq!(acquired[0].locked_by.as_deref(), Some("s-1"));
    assert!(
        acquired[0]
            .locked_at
            .as_deref()
            .is_some_and(|t| t.ends_with("+00:00"))
    );
    let stored = get(&conn, "dep_1").expect("get").expect("there");
    assert!(!stored.retry_requested);
    assert_eq!(stored.locked_by.as_deref(), Some("s-1"));

    let again = acquire(
        &conn,
        &AcquireQuery {
            session: "s-2",
            ..query(&filter)
        },
    )
    .expect("acquire");
    assert!(again.is_empty(), "failed, no retry flag, and locked");

    assert!(!renew_lock(&conn, "dep_1", "s-2").expect("renew"));
    assert!(renew_lock(&conn, "dep_1", "s-1").expect("renew"));
    release_lock(&conn, "dep_1", "s-2").expect("release");
    assert!(
        get(&conn, "dep_1")
            .expect("get")
            .expect("there")
            .locked_by
            .is_some()
    );
    release_lock(&conn, "dep_1", "s-1").expect("release");
    let released = get(&conn, "dep_1").expect("get").expect("there");
    assert_eq!((released.locked_by, released.locked_at), (None, None));
    assert!(
        !renew_lock(&conn, "dep_1", "s-1").expect("renew"),
        "no lock to renew"
    );
}

#[test]
fn names_are_unique_within_a_group() {
    let conn = database();
    add(&conn, "dep_1", DeploymentStatus::Pending);
    let conflict = insert(
        &conn,
        &NewDeployment {
            id: "dep_2",
            name: "dep_1",
            deployment_group_id: "dg_1",
            platform: Platform::Local,
            base_platform: None,
            stack_settings: "{}",
            stack_state: None,
            environment_variables: None,
            input_values: None,
            desired_release_id: None,
            deployment_token: "ax_deploy_test",
        },
    );
    assert!(
        matches!(&conflict, Err(Error::DeploymentNameConflict { name, deployment_group_id })
            if name == "dep_1" && deployment_group_id == "dg_1"),
        "{conflict:?}"
    );
    assert_eq!(
        id_by_name(&conn, "dg_1", "dep_1")
            .expect("by name")
            .as_deref(),
        Some("dep_1")
    );
    assert_eq!(id_by_name(&conn, "dg_2", "dep_1").expect("by name"), None);
}

#[test]
fn lifecycle_requests_change_only_the_statuses_they_may() {
    use DeploymentStatus::*;
    // (status, a release adopted, cleanup requested, retry requested, redeploy requested)
    #[rustfmt::skip]
    let table = [
        (Pending,          false, true,  false, true),
        (Running,          true,  true,  false, true),
        (UpdateFailed,     true,  true,  true,  true),
        (RefreshFailed,    true,  true,  true,  true),
        (PreflightsFailed, false, true,  true,  true),
        (TeardownFailed,   false, false, false, true),
        (TeardownRequired, false, false, false, true),
        (DeletePending,    false, false, false, false),
        (Deleting,         false, false, false, false),
        (DeleteFailed,     false, true,  true,  true),
        (Deleted,          false, false, false, false),
        (Error,            false, true,  false, true),
    ];
    for (status, adopts, cleans, retries, redeploys) in table {
        let conn = database();
        add(&conn, "dep_1", status);
        assert_eq!(
            adopt_release(&conn, "rel_1").expect("adopt") == ["dep_1"],
            adopts,
            "{status} adopt"
        );
        if adopts {
            let d = get(&conn, "dep_1").expect("get").expect("there");
            assert_eq!(
                (d.status(), d.desired_release_id.as_deref()),
                (UpdatePending, Some("rel_1"))
            );
        }

        let conn = database();
        add(&conn, "dep_1", status);
        assert_eq!(
            request_cleanup(&conn, "dep_1").expect("cleanup"),
            cleans,
            "{status} cleanup"
        );
        if cleans {
            let d = get(&conn, "dep_1").expect("get").expect("there");
            assert_eq!(d.status(), DeletePending);
            assert_eq!(
                d.runtime_metadata.map(|m| m.get().to_owned()).as_deref(),
                Some("{}")
            );
        }

        let conn = database();
        add(&conn, "dep_1", status);
        assert_eq!(
            request_retry(&conn, "dep_1").expect("retry"),
            retries,
            "{status} retry"
        );
        assert_eq!(
            get(&conn, "dep_1")
                .expect("get")
                .expect("there")
                .retry_requested,
            retries
        );

        let conn = database();
        add(&conn, "dep_1", status);
        assert_eq!(
            request_redeploy(&conn, "dep_1").expect("redeploy"),
            redeploys,
            "{status} redeploy"
        );
    }
    let conn = database();
    for request in [request_cleanup, request_retry, request_redeploy, remove] {
        assert!(!request(&conn, "dep_nope").expect("request"));
    }
}

#[test]
fn reports_are_written_as_decided() {
    let conn = database();
    add(&conn, "dep_1", DeploymentStatus::Updating);
    set(&conn, "dep_1", "desired_release_id = ?2", "rel_2");
    set(&conn, "dep_1", "locked_by = ?2", "s-1");
    let state: DeploymentState = serde_json::from_value(json!({
        "status": "running", "platform": "aws", "protocolVersion": 1,
        "currentRelease": {"releaseId": "rel_2", "stack": {}},
        "stackState": {"platform": "aws", "resources": {}, "resourcePrefix": "p"},
        "runtimeMetadata": {"k": 1},
    }))
    .expect("state");
    let recorded = reconcile::Recorded {
        status: DeploymentStatus::Updating,
        retry_requested: false,
        current_release_id: None,
        desired_release_id: Some("rel_2"),
        locked_by: Some("s-1"),
        has_state: false,
    };
    let write = reconcile::write(&recorded, &state, "s-1", Some(60_000));
    apply_report(&conn, "dep_1", &state, &write).expect("apply");
    let (next_step_after, due_later): (String, bool) = conn
        .query_row(
            &format!("SELECT next_step_after, next_step_after > {NOW} FROM deployments WHERE id = 'dep_1'"),
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("schedule");
    assert!(due_later, "{next_step_after}");
    let d = get(&conn, "dep_1").expect("get").expect("there");
    assert_eq!(d.status(), DeploymentStatus::Running);
    assert_eq!(d.current_release_id.as_deref(), Some("rel_2"));
    assert_eq!(d.desired_release_id, None);
    assert_eq!(
        d.runtime_metadata.map(|m| m.get().to_owned()).as_deref(),
        Some(r#"{"k":1}"#)
    );
    assert_eq!(d.environment_info.map(|m| m.get().to_owned()), None);
    assert!(d.locked_at.is_some(), "the owner's report renews its lock");
    assert!(d.updated_at.is_some());
}

/// A deployment pulls from a release the manager assigned it (its desired one, and once a
/// report reaches that, the reached one), whatever its reports name as current.
#[test]
fn the_pull_release_is_one_the_manager_assigned() {
    let conn = database();
    add(&conn, "dep_1", DeploymentStatus::Pending);
    let report = |current: Option<&str>| {
        let d = get(&conn, "dep_1").expect("get").expect("there");
        let mut state = json!({"status": "running", "platform": "aws", "protocolVersion": 1});
        if let Some(id) = current {
            state["currentRelease"] = json!({"releaseId": id, "stack": {}});
        }
        let state: DeploymentState = serde_json::from_value(state).expect("state");
        let recorded = reconcile::Recorded {
            status: d.status(),
            retry_requested: d.retry_requested,
            current_release_id: d.current_release_id.as_deref(),
            desired_release_id: d.desired_release_id.as_deref(),
            locked_by: None,
            has_state: false,
        };
        let write = reconcile::write(&recorded, &state, "s", None);
        apply_report(&conn, "dep_1", &state, &write).expect("apply");
    };
    let pulls = || {
        pull_release_of(&conn, "dep_1")
            .expect("read")
            .expect("there")
    };
    assert_eq!(pulls(), None, "nothing assigned");
    report(Some("rel_other"));
    assert_eq!(pulls(), None, "a report assigns nothing");
    set(&conn, "dep_1", "desired_release_id = ?2", "rel_1");
    assert_eq!(pulls().as_deref(), Some("rel_1"), "desired");
    report(Some("rel_other"));
    assert_eq!(pulls().as_deref(), Some("rel_1"), "still desired");
    report(Some("rel_1"));
    let d = get(&conn, "dep_1").expect("get").expect("there");
    assert_eq!(d.desired_release_id, None, "reached");
    assert_eq!(pulls().as_deref(), Some("rel_1"), "reached");
    adopt_release(&conn, "rel_2").expect("adopt");
    assert_eq!(
        pulls().as_deref(),
        Some("rel_1"),
        "the reached one while it updates"
    );
    report(Some("rel_other"));
    report(None);
    assert_eq!(pulls().as_deref(), Some("rel_1"), "reports change nothing");
    report(Some("rel_2"));
    assert_eq!(pulls().as_deref(), Some("rel_2"), "the new one reached");
    report(Some("rel_other"));
    assert_eq!(pulls().as_deref(), Some("rel_2"));
    assert_eq!(
        get(&conn, "dep_1")
            .expect("get")
            .expect("there")
            .current_release_id
            .as_deref(),
        Some("rel_other"),
        "the report's current release is recorded as it is"
    );
}

#[test]
fn lists_filter_by_groups_and_name_newest_first() {
    let conn = database();
    crate::store::deployment_groups::insert(&conn, "dg_1", "acme", 10).expect("group");
    for id in ["dep_a", "dep_b", "dep_c"] {
        add(&conn, id, DeploymentStatus::Pending);
    }
    set(&conn, "dep_c", "deployment_group_id = ?2", "dg_2");
    let ids = |groups, name| -> Vec<(String, Option<String>)> {
        list(&conn, groups, name)
            .expect("list")
            .into_iter()
            .map(|d| (d.id, d.group_name))
            .collect()
    };
    let acme = Some("acme".to_owned());
    assert_eq!(
        ids(GroupFilter::All, None),
        [
            ("dep_c".to_owned(), None),
            ("dep_b".to_owned(), acme.clone()),
            ("dep_a".to_owned(), acme.clone())
        ]
    );
    let g1 = ["dg_1".to_owned()];
    assert_eq!(
        ids(GroupFilter::Groups(&g1), Some("dep_a")),
        [("dep_a".to_owned(), acme)]
    );
    assert!(ids(GroupFilter::Groups(&[]), None).is_empty());
    assert_eq!(
        newest(&conn).expect("newest").map(|d| d.id).as_deref(),
        Some("dep_c")
    );
}
