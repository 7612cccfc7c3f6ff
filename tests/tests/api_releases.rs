//! Releases (docs/compatibility.md, Releases, groups and deployments): creation, reading, and
//! what a new release does to the deployments.

use e2e::api::{
    Api, Body, NewDeployment, Request, STATUSES, keys, release_body, stack, state, string,
};
use serde_json::{Value, json};

fn is_release_id(id: &str) -> bool {
    id.strip_prefix("rel_")
        .is_some_and(|rest| rest.len() == 28 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[test]
fn a_created_release_has_the_wire_shape() {
    let api = Api::start();
    let release = api.create_release(&["local"]);
    assert!(is_release_id(&string(&release, "id")), "{release}");
    assert_eq!(release["workspaceId"], "default");
    assert_eq!(release["projectId"], "default");
    assert_eq!(release["setupFingerprints"], json!({}));
    assert!(release["createdAt"].is_string(), "{release}");
    assert_eq!(
        keys(&release),
        [
            "createdAt",
            "id",
            "projectId",
            "setupFingerprints",
            "stack",
            "workspaceId"
        ],
        "gitMetadata is omitted when absent: {release}"
    );
    assert_eq!(keys(&release["stack"]), ["local"]);
    let local = &release["stack"]["local"];
    assert_eq!(local["id"], "my-app");
    assert_eq!(
        local["resources"]["api"]["config"]["code"]["image"],
        "localhost:8080/artifacts/default:api-1",
        "{local}"
    );
}

#[test]
fn a_release_holds_a_stack_per_platform() {
    let api = Api::start();
    let release = api.create_release(&["local", "kubernetes", "aws"]);
    assert_eq!(keys(&release["stack"]), ["aws", "kubernetes", "local"]);
}

/// A release body, and what the response says of it.
struct Case {
    name: &'static str,
    body: Value,
    project_id: &'static str,
    git_metadata: Option<Value>,
    platforms: &'static [&'static str],
}

#[test]
fn optional_and_aliased_fields_of_a_release() {
    let api = Api::start();
    let with = |extra: Value| {
        let mut body = release_body(&["local"]);
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        body
    };
    let cases = [
        Case {
            name: "all git metadata",
            body: with(
                json!({"gitMetadata": {"commitSha": "abc123", "commitRef": "main", "commitMessage": "ship it"}}),
            ),
            project_id: "default",
            git_metadata: Some(
                json!({"commitSha": "abc123", "commitRef": "main", "commitMessage": "ship it"}),
            ),
            platforms: &["local"],
        },
        Case {
            name: "inner nulls are omitted",
            body: with(json!({"gitMetadata": {"commitSha": "abc123", "commitRef": null}})),
            project_id: "default",
            git_metadata: Some(json!({"commitSha": "abc123"})),
            platforms: &["local"],
        },
        Case {
            name: "all-null git metadata is omitted",
            body: with(json!({"gitMetadata": {"commitSha": null}})),
            project_id: "default",
            git_metadata: None,
            platforms: &["local"],
        },
        Case {
            name: "the CLI's `project` alias",
            body: json!({"project": "default", "stack": {"local": stack()}}),
            project_id: "default",
            git_metadata: None,
            platforms: &["local"],
        },
        Case {
            name: "a null platform stack is absent",
            body: json!({"projectId": "default", "stack": {"local": stack(), "aws": null}}),
            project_id: "default",
            git_metadata: None,
            platforms: &["local"],
        },
        Case {
            name: "unknown platform keys are ignored; the project is stored as given",
            body: json!({"projectId": "other", "stack": {"local": stack(), "mars": {"id": "x"}}}),
            project_id: "other",
            git_metadata: None,
            platforms: &["local"],
        },
    ];
    for case in cases {
        let request = Request::post("/v1/releases", case.body).auth(api.admin());
        let release = api.expect(&request, 201);
        let name = case.name;
        assert_eq!(release["projectId"], case.project_id, "{name}: {release}");
        assert_eq!(
            release.get("gitMetadata").cloned(),
            case.git_metadata,
            "{name}: {release}"
        );
        assert_eq!(keys(&release["stack"]), case.platforms, "{name}: {release}");
    }
}

#[test]
fn invalid_stacks_are_400_bad_request() {
    let api = Api::start();
    let mut unknown_type = stack();
    unknown_type["resources"]["api"]["config"]["type"] = json!("frobnicator");
    let cases: [(Value, &str); 5] = [
        (json!({}), "No platform stack provided"),
        (json!({"aws": null}), "No platform stack provided"),
        (json!({"mars": stack()}), "No platform stack provided"),
        (
            json!({"local": "not a stack"}),
            "Invalid stack format for local",
        ),
        (json!({"gcp": unknown_type}), "Invalid stack format for gcp"),
    ];
    for (stacks, message) in cases {
        let request = Request::post(
            "/v1/releases",
            json!({"projectId": "default", "stack": stacks}),
        )
        .auth(api.admin());
        let body = api.expect_error(&request, 400, "BAD_REQUEST");
        assert!(
            body["message"].as_str().unwrap_or("").starts_with(message),
            "{request}: want {message:?}, got {body}"
        );
    }
    let list = api.expect(&Request::get("/v1/releases").auth(api.admin()), 200);
    assert_eq!(
        list,
        json!({"items": []}),
        "a refused release is not stored"
    );
}

/// A stack the engine could not deploy is refused as the public manager refuses it: 400 and
/// `Invalid stack format for {platform}: {reason}`, and nothing is stored.
#[test]
fn a_stack_the_engine_could_not_deploy_is_400_with_the_reason() {
    let api = Api::start();
    let config = |change: fn(&mut Value)| {
        let mut stack = stack();
        change(&mut stack["resources"]["api"]["config"]);
        stack
    };
    let entry = |change: fn(&mut Value)| {
        let mut stack = stack();
        change(&mut stack["resources"]["api"]);
        stack
    };
    let cases = [
        (
            config(|c| remove(c, "links")),
            "Invalid stack format for local: missing field `links`",
        ),
        (
            config(|c| remove(c, "triggers")),
            "Invalid stack format for local: missing field `triggers`",
        ),
        (
            entry(|e| remove(e, "dependencies")),
            "Invalid stack format for local: missing field `dependencies`",
        ),
        (
            config(|c| c["memoryMB"] = json!(256)),
            "Invalid stack format for local: unknown field `memoryMB`",
        ),
        (
            config(|c| c["timeoutSeconds"] = json!(3601)),
            "Invalid stack format for local: timeoutSeconds must be between 1 and 3600, got 3601",
        ),
        (
            entry(|e| e["lifecycle"] = json!("frozen")),
            "Invalid stack format for local: resource `api` of type `worker` must be `live`, found `frozen`",
        ),
    ];
    for (local, message) in cases {
        let request = Request::post(
            "/v1/releases",
            json!({"projectId": "default", "stack": {"local": local}}),
        )
        .auth(api.admin());
        let body = api.expect_error(&request, 400, "BAD_REQUEST");
        let got = body["message"].as_str().unwrap_or("");
        // serde goes on to list the expected fields after an unknown one.
        let exact = got == message || got.starts_with(&format!("{message}, expected one of"));
        assert!(exact, "{request}: want {message:?}, got {got:?}");
    }
    let list = api.expect(&Request::get("/v1/releases").auth(api.admin()), 200);
    assert_eq!(list, json!({"items": []}), "nothing is stored");
}

/// The stack is stored and answered as parsed: every default filled in, for each platform.
#[test]
fn a_release_answers_its_stack_with_the_defaults_filled_in() {
    let api = Api::start();
    let release = api.create_release(&["local", "aws"]);
    let mut want = stack();
    let config = &mut want["resources"]["api"]["config"];
    for (key, value) in [
        ("memoryMb", json!(512)),
        ("timeoutSeconds", json!(180)),
        ("environment", json!({})),
        ("commandsEnabled", json!(false)),
        ("concurrencyLimit", json!(null)),
        ("readinessProbe", json!(null)),
    ] {
        config[key] = value;
    }
    want["resources"]["api"]["remoteAccess"] = json!(false);
    want["permissions"]["management"] = json!("auto");
    assert_eq!(release["stack"], json!({"local": want, "aws": want}));
    let id = string(&release, "id");
    let got = api.expect(
        &Request::get(format!("/v1/releases/{id}")).auth(api.admin()),
        200,
    );
    assert_eq!(got, release, "read back as answered");
}

/// Resources come back in the order the client declared them, which decides command targets.
#[test]
fn a_release_keeps_the_declared_order_of_resources() {
    let api = Api::start();
    let resource = |id: &str| {
        format!(
            r#""{id}": {{"config": {{"type": "kv", "id": "{id}"}}, "lifecycle": "frozen", "dependencies": []}}"#
        )
    };
    let ids = ["zeta", "alpha", "mid"];
    let resources: Vec<String> = ids.iter().map(|id| resource(id)).collect();
    let body = format!(
        r#"{{"projectId": "default", "stack": {{"local": {{"id": "app", "resources": {{{}}}}}}}}}"#,
        resources.join(", ")
    );
    let request = Request::new(
        "POST",
        "/v1/releases",
        Body::Raw {
            content_type: Some("application/json".to_owned()),
            bytes: body.into_bytes(),
        },
    )
    .auth(api.admin());
    let reply = api.send(&request);
    assert_eq!(reply.status, 201, "{}", reply.body);
    let positions: Vec<usize> = ids
        .iter()
        .map(|id| reply.body.find(&format!("\"{id}\":")).unwrap_or(usize::MAX))
        .collect();
    assert!(positions.is_sorted(), "{}", reply.body);
}

fn remove(value: &mut Value, key: &str) {
    if let Some(object) = value.as_object_mut() {
        object.remove(key);
    }
}

#[test]
fn releases_are_listed_newest_first_and_read_back() {
    let api = Api::start();
    let empty = api.expect(&Request::get("/v1/releases").auth(api.admin()), 200);
    assert_eq!(empty, json!({"items": []}));
    let created: Vec<Value> = (0..3).map(|_| api.create_release(&["local"])).collect();
    let list = api.expect(
        &Request::get("/v1/releases?limit=1&project=x").auth(api.admin()),
        200,
    );
    assert_eq!(keys(&list), ["items"], "no pagination: {list}");
    let newest_first: Vec<Value> = created.iter().rev().cloned().collect();
    assert_eq!(
        list["items"],
        json!(newest_first),
        "query params are ignored"
    );
    for release in &created {
        let id = string(release, "id");
        let got = api.expect(
            &Request::get(format!("/v1/releases/{id}")).auth(api.admin()),
            200,
        );
        assert_eq!(&got, release);
    }
    let latest = api.expect(&Request::get("/v1/releases/latest").auth(api.admin()), 200);
    assert_eq!(&latest, created.last().expect("three releases"));
}

/// Releases made back to back, within the clock's resolution, still have a strict order.
#[test]
fn latest_is_the_last_created_even_in_quick_succession() {
    let api = Api::start();
    for _ in 0..20 {
        let id = string(&api.create_release(&["local"]), "id");
        let latest = api.expect(&Request::get("/v1/releases/latest").auth(api.admin()), 200);
        assert_eq!(latest["id"], id.as_str());
    }
}

#[test]
fn missing_releases_are_404_release_not_found() {
    let api = Api::start();
    let body = api.expect_error(
        &Request::get("/v1/releases/latest").auth(api.admin()),
        404,
        "RELEASE_NOT_FOUND",
    );
    assert_eq!(body["context"], json!({"release_id": "latest"}), "{body}");
    api.create_release(&["local"]);
    let body = api.expect_error(
        &Request::get("/v1/releases/rel_doesnotexist").auth(api.admin()),
        404,
        "RELEASE_NOT_FOUND",
    );
    assert_eq!(body["message"], "Release 'rel_doesnotexist' not found");
    assert_eq!(body["context"], json!({"release_id": "rel_doesnotexist"}));
}

/// What a new release does: every deployment `running`, `update-failed` or `refresh-failed`
/// (any platform) moves to `update-pending` with the new release desired; no other is touched.
#[test]
fn a_new_release_moves_running_and_failed_updates_to_update_pending() {
    let api = Api::start();
    let group = api.create_group();
    let moved = ["running", "update-failed", "refresh-failed"];
    let mut deployments = Vec::new();
    for status in STATUSES {
        let deployment = api.create_deployment(&group, NewDeployment::pull());
        api.set_status(&deployment, status);
        deployments.push((status, deployment));
    }
    // Another platform, in the pull model as kubernetes always is.
    let kubernetes = api.create_deployment(&group, NewDeployment::on("kubernetes"));
    api.set_status(&kubernetes, "running");
    deployments.push(("running", kubernetes));

    let release = string(&api.create_release(&["local"]), "id");
    let mut wrong = Vec::new();
    for (status, deployment) in &deployments {
        let got = api.deployment(&deployment.id);
        let (want_status, want_desired) = if moved.contains(status) {
            ("update-pending", Some(release.as_str()))
        } else {
            (*status, None)
        };
        if got["status"] != want_status || got["desiredReleaseId"].as_str() != want_desired {
            wrong.push(format!(
                "{} {status}: want {want_status} desiring {want_desired:?}, got {} desiring {}",
                deployment.platform, got["status"], got["desiredReleaseId"]
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A deployment that already desires an older release is moved on to the newest one.
#[test]
fn each_new_release_replaces_the_desired_release() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let first = string(&api.create_release(&["local"]), "id");
    api.set_status(&deployment, "running");
    let second = string(&api.create_release(&["local"]), "id");
    let got = api.deployment(&deployment.id);
    assert_eq!(got["desiredReleaseId"], second.as_str(), "{got}");
    assert_ne!(first, second);
    // The reconcile that reports `running` on the first release keeps the second desired.
    let mut running = state("running", "local");
    running["currentRelease"] = json!({"releaseId": first, "stack": stack()});
    api.reconcile_as("agent", &deployment, running);
    let got = api.deployment(&deployment.id);
    assert_eq!(got["currentReleaseId"], first.as_str(), "{got}");
    assert_eq!(got["desiredReleaseId"], second.as_str(), "{got}");
}
