//! Deployment groups, deployments and their lifecycle endpoints, and agent bootstrap
//! (docs/compatibility.md, Releases, groups and deployments).

use e2e::api::{
    Api, Auth, Deployment, NewDeployment, PROJECT_ID, Request, STATUSES, WORKSPACE_ID,
    is_lowercase_id, item_ids, keys, stack, state, string, unique,
};
use serde_json::{Value, json};

fn is_token(token: &str, prefix: &str) -> bool {
    token.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 40
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

const RUNNING: &str = "running";

// ---- deployment groups ----

#[test]
fn a_created_group_has_the_wire_shape() {
    let api = Api::start();
    let group = api.expect(
        &Request::post(
            "/v1/deployment-groups",
            json!({"name": "acme", "whatever": true}),
        )
        .auth(api.admin()),
        200,
    );
    assert!(is_lowercase_id(&string(&group, "id"), "dg_"), "{group}");
    assert_eq!(group["name"], "acme");
    assert_eq!(group["maxDeployments"], 100, "default maximum: {group}");
    assert_eq!(group["deploymentCount"], 0);
    assert_eq!(group["projectId"], PROJECT_ID);
    assert_eq!(group["workspaceId"], WORKSPACE_ID);
    assert!(group["createdAt"].is_string(), "{group}");
    assert_eq!(
        keys(&group),
        [
            "createdAt",
            "deploymentCount",
            "id",
            "maxDeployments",
            "name",
            "projectId",
            "workspaceId"
        ]
    );
    let small = api.expect(
        &Request::post(
            "/v1/deployment-groups",
            json!({"name": "small", "maxDeployments": 5}),
        )
        .auth(api.admin()),
        200,
    );
    assert_eq!(small["maxDeployments"], 5);
}

#[test]
fn group_lists_are_newest_first_and_filtered_by_caller() {
    let api = Api::start();
    let first = api.create_group();
    let second = api.create_group();
    let deployment = api.create_deployment(&first, NewDeployment::pull());
    api.create_deployment(&first, NewDeployment::pull());
    let cases = [
        (api.admin(), vec![second.id.clone(), first.id.clone()]),
        (Auth::bearer(&first.token), vec![first.id.clone()]),
        (Auth::bearer(&second.token), vec![second.id.clone()]),
        (Auth::bearer(&deployment.token), vec![]),
    ];
    for (auth, want) in cases {
        let list = api.expect(
            &Request::get("/v1/deployment-groups?workspace=x").auth(auth.clone()),
            200,
        );
        assert_eq!(list["nextCursor"], Value::Null, "{list}");
        assert!(
            list.get("nextCursor").is_some(),
            "nextCursor is present: {list}"
        );
        assert_eq!(item_ids(&list), want, "{auth:?}");
    }
    let list = api.expect(
        &Request::get("/v1/deployment-groups").auth(api.admin()),
        200,
    );
    assert_eq!(
        list["items"][1]["deploymentCount"], 2,
        "counted live: {list}"
    );
    let one = api.expect(
        &Request::get(format!("/v1/deployment-groups/{}", first.id)).auth(api.admin()),
        200,
    );
    assert_eq!(one, list["items"][1]);
}

#[test]
fn unknown_groups_are_404_before_authorization() {
    let api = Api::start();
    let group = api.create_group();
    for auth in [api.admin(), Auth::bearer(&group.token)] {
        let body = api.expect_error(
            &Request::get("/v1/deployment-groups/dg_nope").auth(auth.clone()),
            404,
            "DEPLOYMENT_GROUP_NOT_FOUND",
        );
        assert_eq!(body["message"], "Deployment group 'dg_nope' not found");
        api.expect_error(
            &Request::post_empty("/v1/deployment-groups/dg_nope/tokens").auth(auth),
            404,
            "DEPLOYMENT_GROUP_NOT_FOUND",
        );
    }
}

#[test]
fn each_group_token_request_mints_a_new_token() {
    let api = Api::start();
    let group = api.create_group();
    let path = format!("/v1/deployment-groups/{}/tokens", group.id);
    let one = api.expect(&Request::post_empty(&path).auth(api.admin()), 200);
    let two = api.expect(&Request::post_empty(&path).auth(api.admin()), 200);
    for minted in [&one, &two] {
        assert_eq!(
            keys(minted),
            ["deploymentGroupId", "installCommand", "token"]
        );
        assert_eq!(minted["deploymentGroupId"], group.id.as_str());
        let token = string(minted, "token");
        assert!(is_token(&token, "ax_dg_"), "{minted}");
        // Ours: how to install the agent with it (tests/tests/agent_install.rs runs it).
        assert_eq!(
            string(minted, "installCommand"),
            format!(
                "curl -fsSL http://localhost:{}/install | sh -s -- --token {token}",
                api.server().port()
            )
        );
    }
    assert_ne!(one["token"], two["token"]);
    for minted in [one, two] {
        let me = api.expect(
            &Request::get("/v1/whoami").bearer(&string(&minted, "token")),
            200,
        );
        assert_eq!(me["scope"]["deploymentGroupId"], group.id.as_str());
    }
}

// ---- creating deployments ----

#[test]
fn a_created_deployment_has_the_wire_shape_and_a_token() {
    let api = Api::start();
    let group = api.create_group();
    let created = api.expect(
        &Request::post(
            "/v1/deployments",
            json!({
                "name": "customer-a",
                "platform": "local",
                "deploymentGroupId": group.id,
                "environmentVariables": [{"name": "K", "value": "V", "type": "plain", "targetResources": ["api*"]}],
                "unknownField": 1,
            }),
        )
        .auth(api.admin()),
        201,
    );
    assert_eq!(keys(&created), ["deployment", "deploymentModel", "token"]);
    assert_eq!(created["deploymentModel"], "push");
    let token = string(&created, "token");
    assert!(is_token(&token, "ax_deploy_"), "{created}");
    let deployment = &created["deployment"];
    let id = string(deployment, "id");
    assert!(is_lowercase_id(&id, "dep_"), "{deployment}");
    for (key, want) in [
        ("name", json!("customer-a")),
        ("platform", json!("local")),
        ("status", json!("pending")),
        ("deploymentGroupId", json!(group.id)),
        ("deploymentProtocolVersion", json!(1)),
        ("projectId", json!(PROJECT_ID)),
        ("workspaceId", json!(WORKSPACE_ID)),
        ("retryRequested", json!(false)),
    ] {
        assert_eq!(deployment[key], want, "{key}: {deployment}");
    }
    assert!(deployment["createdAt"].is_string(), "{deployment}");
    assert_eq!(
        deployment["updatedAt"], deployment["createdAt"],
        "updatedAt falls back to createdAt"
    );
    for absent in [
        "deploymentGroup",
        "stackState",
        "environmentInfo",
        "runtimeMetadata",
        "currentReleaseId",
        "desiredReleaseId",
        "importSource",
        "error",
        "deploymentToken",
        "managementConfig",
        "inputValues",
        "lockedBy",
        "token",
    ] {
        assert!(deployment.get(absent).is_none(), "{absent}: {deployment}");
    }
    let got = api.deployment(&id);
    assert_eq!(&got, deployment, "GET returns what POST did");
    let me = api.expect(&Request::get("/v1/whoami").bearer(&token), 200);
    assert_eq!(me["scope"]["deploymentId"], id.as_str());
}

#[test]
fn the_admin_creates_in_the_newest_group_unless_told() {
    let api = Api::start();
    let body = api.expect_error(
        &Request::post("/v1/deployments", json!({"name": "x", "platform": "local"}))
            .auth(api.admin()),
        400,
        "BAD_REQUEST",
    );
    assert_eq!(
        body["message"],
        "No deployment groups exist. Create one first."
    );
    let older = api.create_group();
    let newer = api.create_group();
    let created = api.expect(
        &Request::post("/v1/deployments", json!({"name": "x", "platform": "local"}))
            .auth(api.admin()),
        201,
    );
    assert_eq!(
        created["deployment"]["deploymentGroupId"],
        newer.id.as_str()
    );
    let created = api.expect(
        &Request::post(
            "/v1/deployments",
            json!({"name": "x", "platform": "local", "deploymentGroupId": older.id}),
        )
        .auth(api.admin()),
        201,
    );
    assert_eq!(
        created["deployment"]["deploymentGroupId"],
        older.id.as_str()
    );
    api.expect_error(
        &Request::post(
            "/v1/deployments",
            json!({"name": "x", "platform": "local", "deploymentGroupId": "dg_nope"}),
        )
        .auth(api.admin()),
        404,
        "DEPLOYMENT_GROUP_NOT_FOUND",
    );
}

#[test]
fn a_group_token_always_creates_in_its_own_group() {
    let api = Api::start();
    let own = api.create_group();
    let other = api.create_group();
    for named in [json!(other.id), json!("dg_nope"), Value::Null] {
        let created = api.expect(
            &Request::post(
                "/v1/deployments",
                json!({"name": unique("d"), "platform": "local", "deploymentGroupId": named}),
            )
            .bearer(&own.token),
            201,
        );
        assert_eq!(
            created["deployment"]["deploymentGroupId"],
            own.id.as_str(),
            "asked for {named}"
        );
    }
}

#[test]
fn a_full_group_refuses_new_deployments_before_checking_names() {
    let api = Api::start();
    let group = api.create_group_with(json!({"name": "tiny", "maxDeployments": 1}));
    let create = |name: &str| {
        Request::post(
            "/v1/deployments",
            json!({"name": name, "platform": "local", "deploymentGroupId": group.id}),
        )
        .auth(api.admin())
    };
    api.expect(&create("first"), 201);
    for name in ["second", "first"] {
        let body = api.expect_error(&create(name), 400, "MAX_DEPLOYMENTS_REACHED");
        assert_eq!(
            body["context"],
            json!({"deployment_group_id": group.id, "max_deployments": 1}),
            "{body}"
        );
    }
}

#[test]
fn names_are_unique_within_a_group() {
    let api = Api::start();
    let group = api.create_group();
    let other = api.create_group();
    let create = |group_id: &str| {
        Request::post(
            "/v1/deployments",
            json!({"name": "customer-a", "platform": "local", "deploymentGroupId": group_id}),
        )
        .auth(api.admin())
    };
    api.expect(&create(&group.id), 201);
    let body = api.expect_error(&create(&group.id), 409, "DEPLOYMENT_NAME_CONFLICT");
    assert_eq!(
        body["message"],
        format!(
            "Deployment name 'customer-a' already exists in deployment group '{}'",
            group.id
        )
    );
    assert_eq!(
        body["context"],
        json!({"name": "customer-a", "deployment_group_id": group.id})
    );
    api.expect(&create(&other.id), 201);
}

#[test]
fn a_new_deployment_desires_the_latest_release() {
    let api = Api::start();
    let group = api.create_group();
    let before = api.create_deployment(&group, NewDeployment::pull());
    assert!(api.deployment(&before.id).get("desiredReleaseId").is_none());
    api.create_release(&["local"]);
    let latest = string(&api.create_release(&["local"]), "id");
    let after = api.create_deployment(&group, NewDeployment::pull());
    assert_eq!(
        api.deployment(&after.id)["desiredReleaseId"],
        latest.as_str()
    );
    // Pending deployments created before any release are not given one later.
    assert!(api.deployment(&before.id).get("desiredReleaseId").is_none());
}

#[test]
fn resource_prefixes_are_validated() {
    let api = Api::start();
    let group = api.create_group();
    let message = "resourcePrefix must be 3-40 characters: lowercase letters, numbers, and hyphens; start with a letter; end with a letter or number; and not contain consecutive hyphens";
    let forty = format!("a{}", "b".repeat(39));
    let forty_one = format!("a{}", "b".repeat(40));
    let cases: [(&str, bool); 12] = [
        ("acme-prod", true),
        ("a1b", true),
        (&forty, true),
        ("ab", false),
        (&forty_one, false),
        ("Acme", false),
        ("1abc", false),
        ("-abc", false),
        ("abc-", false),
        ("a--b", false),
        ("ab_c", false),
        ("", false),
    ];
    for (prefix, valid) in cases {
        let request = Request::post(
            "/v1/deployments",
            json!({"name": unique("p"), "platform": "local", "deploymentGroupId": group.id, "resourcePrefix": prefix}),
        )
        .auth(api.admin());
        if valid {
            let created = api.expect(&request, 201);
            assert_eq!(
                created["deployment"]["stackState"],
                json!({"platform": "local", "resources": {}, "resourcePrefix": prefix}),
                "{prefix:?}"
            );
        } else {
            let body = api.expect_error(&request, 400, "BAD_REQUEST");
            assert_eq!(body["message"], message, "{prefix:?}");
        }
    }
}

/// Cloud platforms are push only, kubernetes is always pull, local as asked.
#[test]
fn the_deployment_model_follows_the_platform() {
    let api = Api::start();
    let group = api.create_group();
    // (platform, requested model, resulting model or the 400 message)
    let cases: [(&str, Option<&str>, Result<&str, String>); 14] = [
        ("local", None, Ok("push")),
        ("local", Some("push"), Ok("push")),
        ("local", Some("pull"), Ok("pull")),
        ("kubernetes", None, Ok("pull")),
        ("kubernetes", Some("push"), Ok("pull")),
        ("kubernetes", Some("pull"), Ok("pull")),
        ("aws", None, Ok("push")),
        ("gcp", Some("push"), Ok("push")),
        ("aws", Some("pull"), Err(pull_refused("aws"))),
        ("gcp", Some("pull"), Err(pull_refused("gcp"))),
        ("azure", Some("pull"), Err(pull_refused("azure"))),
        ("machines", Some("pull"), Err(pull_refused("machines"))),
        ("test", Some("pull"), Err(pull_refused("test"))),
        ("test", None, Ok("push")),
    ];
    for (platform, requested, want) in cases {
        let mut body =
            json!({"name": unique("m"), "platform": platform, "deploymentGroupId": group.id});
        if let Some(model) = requested {
            body["stackSettings"] = json!({"deploymentModel": model});
        }
        let request = Request::post("/v1/deployments", body).auth(api.admin());
        match want {
            Ok(model) => {
                let created = api.expect(&request, 201);
                assert_eq!(created["deploymentModel"], model, "{request}");
                let settings = &created["deployment"]["stackSettings"];
                if model == "pull" {
                    assert_eq!(settings["deploymentModel"], "pull", "{request}: {created}");
                }
            }
            Err(message) => {
                let body = api.expect_error(&request, 400, "BAD_REQUEST");
                assert_eq!(body["message"], message.as_str(), "{request}");
            }
        }
    }
}

/// Settings at their defaults are stored, and answered, as absent; others as given.
#[test]
fn default_valued_stack_settings_are_omitted() {
    let api = Api::start();
    let group = api.create_group();
    let cases = [
        (
            json!({"updates": "auto", "telemetry": "auto", "heartbeats": "on", "deploymentModel": "push"}),
            json!({}),
        ),
        (
            json!({"updates": "approval-required", "telemetry": "off", "heartbeats": "off"}),
            json!({"updates": "approval-required", "telemetry": "off", "heartbeats": "off"}),
        ),
        (
            json!({"telemetry": "approval-required", "heartbeats": "on"}),
            json!({"telemetry": "approval-required"}),
        ),
    ];
    for (settings, want) in cases {
        let body = json!({"name": unique("s"), "platform": "local", "deploymentGroupId": group.id,
                          "stackSettings": settings});
        let request = Request::post("/v1/deployments", body).auth(api.admin());
        let created = api.expect(&request, 201);
        assert_eq!(created["deployment"]["stackSettings"], want, "{request}");
        let id = string(&created["deployment"], "id");
        let got = api.deployment(&id);
        assert_eq!(got["stackSettings"], want, "{request}: read back");
    }
}

fn pull_refused(platform: &str) -> String {
    format!("{platform} deployments must use deploymentModel 'push', received 'pull'")
}

// ---- listing and reading deployments ----

#[test]
fn deployment_lists_are_newest_first_and_filtered() {
    let api = Api::start();
    let group = api.create_group();
    let other = api.create_group();
    let a = api.create_deployment(&group, NewDeployment::pull());
    let b = api.create_deployment(&group, NewDeployment::pull());
    let c = api.create_deployment(&other, NewDeployment::pull());
    let ids = |ds: &[&Deployment]| ds.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
    // (query, caller, expected ids)
    let cases = [
        ("", api.admin(), ids(&[&c, &b, &a])),
        ("?cursor=x&limit=1", api.admin(), ids(&[&c, &b, &a])),
        (
            &format!("?deploymentGroupId={}", group.id),
            api.admin(),
            ids(&[&b, &a]),
        ),
        // Our fix: a group's name is accepted where its id is.
        (
            &format!("?deploymentGroupId={}", group.name),
            api.admin(),
            ids(&[&b, &a]),
        ),
        (
            &format!("?deploymentGroupId={}", other.name),
            api.admin(),
            ids(&[&c]),
        ),
        ("?deploymentGroupId=nope", api.admin(), vec![]),
        (
            &format!("?deploymentGroupId={}&name={}", group.id, a.name),
            api.admin(),
            ids(&[&a]),
        ),
        (
            &format!("?deploymentGroupId={}&name={}", group.name, b.name),
            api.admin(),
            ids(&[&b]),
        ),
        (
            &format!("?deploymentGroupId={}&name={}", other.id, a.name),
            api.admin(),
            vec![],
        ),
        ("", Auth::bearer(&group.token), ids(&[&b, &a])),
        // A group token's own group is forced.
        (
            &format!("?deploymentGroupId={}", other.id),
            Auth::bearer(&group.token),
            ids(&[&b, &a]),
        ),
        (
            &format!("?name={}", a.name),
            Auth::bearer(&group.token),
            ids(&[&a]),
        ),
        (
            &format!("?name={}", c.name),
            Auth::bearer(&group.token),
            vec![],
        ),
        (
            &format!("?name={}", c.name),
            Auth::bearer(&other.token),
            ids(&[&c]),
        ),
    ];
    for (query, auth, want) in cases {
        let request = Request::get(format!("/v1/deployments{query}")).auth(auth);
        let list = api.expect(&request, 200);
        assert_eq!(item_ids(&list), want, "{request}");
        assert_eq!(keys(&list), ["items", "nextCursor"], "{request}");
        assert_eq!(list["nextCursor"], Value::Null);
        for item in list["items"].as_array().expect("items") {
            assert!(item.get("deploymentGroup").is_none(), "{request}: {item}");
        }
    }
    let body = api.expect_error(
        &Request::get(format!("/v1/deployments?name={}", a.name)).auth(api.admin()),
        400,
        "BAD_REQUEST",
    );
    assert_eq!(
        body["message"],
        "name filter requires deploymentGroupId unless the token is scoped to a deployment group"
    );
}

#[test]
fn include_deployment_group_adds_the_group() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    for query in [
        "include=deploymentGroup",
        "include[]=deploymentGroup",
        "include%5B%5D=deploymentGroup",
        "include=other&include=deploymentGroup",
    ] {
        let list = api.expect(
            &Request::get(format!("/v1/deployments?{query}")).auth(api.admin()),
            200,
        );
        assert_eq!(
            list["items"][0]["deploymentGroup"],
            json!({"id": group.id, "name": group.name}),
            "{query}: {list}"
        );
    }
    // Never on a single deployment.
    let one = api.expect(
        &Request::get(format!(
            "/v1/deployments/{}?include=deploymentGroup",
            deployment.id
        ))
        .auth(api.admin()),
        200,
    );
    assert!(one.get("deploymentGroup").is_none(), "{one}");
}

#[test]
fn unknown_deployments_are_404_for_every_caller() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let requests = [
        Request::get("/v1/deployments/dep_nope"),
        Request::get("/v1/deployments/dep_nope/info"),
        Request::post_empty("/v1/deployments/dep_nope/retry"),
        Request::post_empty("/v1/deployments/dep_nope/redeploy"),
        Request::post(
            "/v1/deployments/dep_nope/delete",
            json!({"action": "cleanup"}),
        ),
        Request::post(
            "/v1/deployments/dep_nope/delete",
            json!({"action": "forget"}),
        ),
    ];
    for request in requests {
        for auth in [
            api.admin(),
            Auth::bearer(&group.token),
            Auth::bearer(&deployment.token),
        ] {
            let request = request.clone().auth(auth);
            let body = api.expect_error(&request, 404, "DEPLOYMENT_NOT_FOUND");
            assert_eq!(
                body["message"], "Deployment 'dep_nope' not found",
                "{request}"
            );
            assert_eq!(body["context"], json!({"deployment_id": "dep_nope"}));
        }
    }
}

#[test]
fn info_lists_resources_and_their_public_endpoints() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let path = format!("/v1/deployments/{}/info", deployment.id);
    let base_url = format!("http://localhost:{}", api.server().port());
    let info = api.expect(&Request::get(&path).auth(api.admin()), 200);
    assert_eq!(
        info,
        json!({
            "commands": {"url": base_url, "deploymentId": deployment.id},
            "resources": {},
            "status": "pending",
            "platform": "local",
        })
    );
    let endpoint = |name: &str| json!({"url": format!("https://{name}.example"), "host": format!("{name}.example"), "protocol": "http", "port": 443});
    let resource = |kind: &str, endpoints: Option<Value>| {
        let mut outputs = json!({"type": kind});
        if let Some(endpoints) = endpoints {
            outputs["publicEndpoints"] = endpoints;
        }
        json!({"type": kind, "status": "running", "config": {"type": kind, "id": "x"}, "outputs": outputs})
    };
    let mut running = state("update-failed", "local");
    running["stackState"] = json!({
        "platform": "local",
        "resourcePrefix": "acme",
        "resources": {
            "api": resource("worker", Some(json!({"web": endpoint("web"), "api": endpoint("api")}))),
            "web": resource("container", Some(json!({"zeta": endpoint("zeta"), "beta": endpoint("beta")}))),
            "jobs": resource("daemon", None),
            "files": resource("storage", None),
        },
    });
    running["error"] =
        json!({"code": "BOOM", "message": "it broke", "retryable": false, "internal": false});
    api.reconcile_as("agent", &deployment, running);
    let info = api.expect(&Request::get(&path).auth(api.admin()), 200);
    assert_eq!(info["status"], "update-failed");
    assert_eq!(info["error"]["code"], "BOOM", "{info}");
    assert_eq!(
        info["resources"],
        json!({
            "api": {
                "resourceType": "worker",
                "publicUrl": "https://api.example",
                "publicEndpoints": {"web": endpoint("web"), "api": endpoint("api")},
            },
            "web": {
                "resourceType": "container",
                "publicUrl": "https://beta.example",
                "publicEndpoints": {"zeta": endpoint("zeta"), "beta": endpoint("beta")},
            },
            "jobs": {"resourceType": "daemon"},
            "files": {"resourceType": "storage"},
        })
    );
}

// ---- lifecycle ----

/// Retry: allowed from the six retryable failures only.
#[test]
fn retry_is_allowed_from_the_failed_statuses_only() {
    let api = Api::start();
    let group = api.create_group();
    let retryable = [
        "preflights-failed",
        "initial-setup-failed",
        "provisioning-failed",
        "refresh-failed",
        "update-failed",
        "delete-failed",
    ];
    let mut wrong = Vec::new();
    for status in STATUSES {
        let deployment = api.create_deployment(&group, NewDeployment::pull());
        api.set_status(&deployment, status);
        let request = Request::post_empty(format!("/v1/deployments/{}/retry", deployment.id))
            .auth(api.admin());
        let reply = api.send(&request);
        let got = api.deployment(&deployment.id);
        if retryable.contains(&status) {
            if reply.status != 200
                || reply.json() != json!({"success": true})
                || got["retryRequested"] != true
                || got["status"] != status
            {
                wrong.push(format!(
                    "{status}: want 200 and retryRequested, got {} / {got}",
                    reply.summary()
                ));
            }
        } else {
            let message = format!(
                "Deployment '{}' is in status '{status}' and cannot be retried",
                deployment.id
            );
            if reply.status != 400
                || reply.code().as_deref() != Some("BAD_REQUEST")
                || reply.message() != Some(message.clone())
                || got["retryRequested"] != false
            {
                wrong.push(format!(
                    "{status}: want 400 {message:?}, got {}",
                    reply.summary()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Redeploy sets `update-pending` whatever the status (a quirk kept for compatibility).
#[test]
fn redeploy_sets_update_pending_from_any_status() {
    let api = Api::start();
    let group = api.create_group();
    for status in ["pending", RUNNING, "update-failed", "provisioning-failed"] {
        let deployment = api.create_deployment(&group, NewDeployment::pull());
        api.set_status(&deployment, status);
        let body = api.expect(
            &Request::post_empty(format!("/v1/deployments/{}/redeploy", deployment.id))
                .auth(Auth::bearer(&deployment.token)),
            200,
        );
        assert_eq!(body, json!({"success": true}));
        assert_eq!(
            api.status_of(&deployment.id),
            "update-pending",
            "from {status}"
        );
    }
}

/// Delete with `cleanup`, status by status.
#[test]
fn cleanup_marks_delete_pending_except_while_deleting_or_tearing_down() {
    let api = Api::start();
    let group = api.create_group();
    let mut wrong = Vec::new();
    for status in STATUSES {
        let deployment = api.create_deployment(&group, NewDeployment::pull());
        api.set_status(&deployment, status);
        let request = Request::post(
            format!("/v1/deployments/{}/delete", deployment.id),
            json!({"action": "cleanup"}),
        )
        .auth(api.admin());
        let reply = api.send(&request);
        let after = api.status_of(&deployment.id);
        let (want_status, want_body, want_after) = match status {
            "delete-pending" | "deleting" | "deleted" => (409, None, status),
            "teardown-required" => (
                202,
                Some("Runtime cleanup complete; setup teardown required"),
                status,
            ),
            "teardown-failed" => (
                202,
                Some("Setup teardown failed; retry setup teardown with setup credentials"),
                status,
            ),
            _ => (202, Some("Deployment deletion accepted"), "delete-pending"),
        };
        let body_ok = match want_body {
            Some(message) => reply.json() == json!({"action": "cleanup", "message": message}),
            None => {
                reply.code().as_deref() == Some("DEPLOYMENT_ALREADY_DELETING")
                    && reply.json()["context"]
                        == json!({"deployment_id": deployment.id, "status": status})
            }
        };
        if reply.status != want_status || !body_ok || after != want_after {
            wrong.push(format!(
                "{status}: want {want_status} {want_body:?} then {want_after}, got {} then {after}",
                reply.summary()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn detach_and_forget_remove_the_deployment_but_not_its_tokens() {
    let api = Api::start();
    let group = api.create_group();
    for action in ["detach", "forget"] {
        let deployment = api.create_deployment(&group, NewDeployment::pull());
        api.set_status(&deployment, "deleting");
        let body = api.expect(
            &Request::post(
                format!("/v1/deployments/{}/delete", deployment.id),
                json!({"action": action}),
            )
            .auth(api.admin()),
            202,
        );
        assert_eq!(body["action"], action, "{body}");
        assert!(body["message"].is_string(), "{body}");
        api.expect_error(
            &Request::get(format!("/v1/deployments/{}", deployment.id)).auth(api.admin()),
            404,
            "DEPLOYMENT_NOT_FOUND",
        );
        let record = api.token_record(&deployment.token);
        assert_eq!(record["deploymentId"], deployment.id.as_str());
    }
    let group_now = api.expect(
        &Request::get(format!("/v1/deployment-groups/{}", group.id)).auth(api.admin()),
        200,
    );
    assert_eq!(group_now["deploymentCount"], 0, "{group_now}");
}

// ---- /v1/initialize ----

fn initialize(body: Value) -> Request {
    Request::post("/v1/initialize", body)
}

#[test]
fn a_group_token_registers_a_deployment_once_per_name() {
    let api = Api::start();
    let group = api.create_group();
    let release = string(&api.create_release(&["kubernetes"]), "id");
    let body = json!({"name": "prod", "platform": "kubernetes", "initialDesiredRelease": "active"});
    let first = api.expect(&initialize(body.clone()).bearer(&group.token), 201);
    assert_eq!(keys(&first), ["deploymentId", "deploymentModel", "token"]);
    assert_eq!(first["deploymentModel"], "pull");
    let id = string(&first, "deploymentId");
    let second = api.expect(&initialize(body).bearer(&group.token), 200);
    assert_eq!(
        second["deploymentId"],
        id.as_str(),
        "same name, same deployment"
    );
    assert_ne!(second["token"], first["token"], "a fresh token every call");
    for reply in [&first, &second] {
        let token = string(reply, "token");
        assert!(is_token(&token, "ax_deploy_"), "{reply}");
        let me = api.expect(&Request::get("/v1/whoami").bearer(&token), 200);
        assert_eq!(me["scope"]["deploymentId"], id.as_str());
    }
    let deployment = api.deployment(&id);
    assert_eq!(deployment["name"], "prod");
    assert_eq!(deployment["status"], "pending");
    assert_eq!(deployment["deploymentGroupId"], group.id.as_str());
    assert_eq!(deployment["desiredReleaseId"], release.as_str(), "active");
}

#[test]
fn initialize_defaults_to_an_agent_on_kubernetes_without_a_release() {
    let api = Api::start();
    let group = api.create_group();
    api.create_release(&["kubernetes"]);
    let reply = api.expect(
        &initialize(json!({"initialDesiredRelease": "none"})).bearer(&group.token),
        201,
    );
    let deployment = api.deployment(&string(&reply, "deploymentId"));
    assert_eq!(deployment["platform"], "kubernetes");
    assert!(
        deployment["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("agent-")),
        "{deployment}"
    );
    assert!(
        deployment.get("desiredReleaseId").is_none(),
        "none: {deployment}"
    );
}

#[test]
fn initialize_validates_the_platforms() {
    let api = Api::start();
    let group = api.create_group();
    let cases: [(Value, Result<u16, &str>); 6] = [
        (
            json!({"platform": "local", "basePlatform": "aws"}),
            Err("basePlatform is only supported when platform is kubernetes"),
        ),
        (
            json!({"platform": "kubernetes", "basePlatform": "local"}),
            Err("basePlatform for kubernetes must be one of aws, gcp, or azure"),
        ),
        (
            json!({"platform": "kubernetes", "basePlatform": "kubernetes"}),
            Err("basePlatform for kubernetes must be one of aws, gcp, or azure"),
        ),
        (
            json!({"platform": "kubernetes", "basePlatform": "gcp"}),
            Ok(201),
        ),
        (
            json!({"platform": "aws", "stackSettings": {"deploymentModel": "pull"}}),
            Err("aws deployments must use deploymentModel 'push', received 'pull'"),
        ),
        (
            json!({"platform": "local", "stackSettings": {"deploymentModel": "pull"}}),
            Ok(201),
        ),
    ];
    for (mut body, want) in cases {
        body["name"] = json!(unique("init"));
        body["initialDesiredRelease"] = json!("none");
        let request = initialize(body).bearer(&group.token);
        match want {
            Ok(status) => {
                api.expect(&request, status);
            }
            Err(message) => {
                let body = api.expect_error(&request, 400, "BAD_REQUEST");
                assert_eq!(body["message"], message, "{request}");
            }
        }
    }
}

#[test]
fn initialize_with_a_deployment_or_admin_token_finds_an_existing_deployment() {
    let api = Api::start();
    let body = json!({"initialDesiredRelease": "none"});
    let refused = api.expect_error(
        &initialize(body.clone()).auth(api.admin()),
        400,
        "BAD_REQUEST",
    );
    assert_eq!(
        refused["message"],
        "No deployments found. Create a deployment before initializing an agent."
    );
    let group = api.create_group();
    let older = api.create_deployment(&group, NewDeployment::pull());
    let newer = api.create_deployment(&group, NewDeployment::pull());
    let own = api.expect(&initialize(body.clone()).bearer(&older.token), 200);
    assert_eq!(
        own,
        json!({"deploymentId": older.id, "deploymentModel": "pull"})
    );
    let admin = api.expect(&initialize(body).auth(api.admin()), 200);
    assert_eq!(
        admin,
        json!({"deploymentId": newer.id, "deploymentModel": "pull"})
    );
}

/// A deployment token outlives its deployment (detach keeps tokens), but initialize then
/// finds nothing.
#[test]
fn initialize_with_the_token_of_a_removed_deployment_is_404() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    api.expect(
        &Request::post(
            format!("/v1/deployments/{}/delete", deployment.id),
            json!({"action": "forget"}),
        )
        .auth(api.admin()),
        202,
    );
    api.expect_error(
        &initialize(json!({"initialDesiredRelease": "none"})).bearer(&deployment.token),
        404,
        "DEPLOYMENT_NOT_FOUND",
    );
}

/// The release used by the tests of sync and info is a plain one; this checks that a stack
/// is carried over unchanged where a deployment reads it (`/v1/sync` target).
#[test]
fn the_stack_of_a_release_reaches_the_deployment() {
    let api = Api::start();
    let group = api.create_group();
    let release = string(&api.create_release(&["local"]), "id");
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let sync = api.expect(
        &Request::post("/v1/sync", json!({"deploymentId": deployment.id}))
            .bearer(&deployment.token),
        200,
    );
    assert_eq!(
        sync["target"]["releaseInfo"]["releaseId"],
        release.as_str(),
        "{sync}"
    );
    assert_eq!(
        sync["target"]["releaseInfo"]["stack"]["id"],
        stack()["id"],
        "{sync}"
    );
}
