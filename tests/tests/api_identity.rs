//! Health, identity and tokens, build config and platforms, and the framework's answers to
//! unknown paths and methods (docs/compatibility.md, Conventions and Tokens).

use e2e::api::{Api, Auth, NewDeployment, Request, envelope_problem, is_lowercase_id, string};
use serde_json::{Value, json};

#[test]
fn health_answers_healthy_without_a_token() {
    let api = Api::start();
    let reply = api.send(&Request::get("/health"));
    assert_eq!(reply.status, 200, "{}", reply.summary());
    assert_eq!(reply.json(), json!({"status": "healthy"}));
}

#[test]
fn whoami_describes_each_kind_of_token() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let cases = [
        (
            api.admin_token().to_owned(),
            json!({"role": "workspace.admin", "scope": {"type": "workspace"}}),
        ),
        (
            group.token.clone(),
            json!({
                "role": "deployment-group.deployer",
                "scope": {"type": "deployment-group", "projectId": "default", "deploymentGroupId": group.id},
            }),
        ),
        (
            deployment.token.clone(),
            json!({
                "role": "deployment.manager",
                "scope": {"type": "deployment", "projectId": "default", "deploymentId": deployment.id},
            }),
        ),
    ];
    for (token, expected) in cases {
        let record = api.token_record(&token);
        let mut want = json!({
            "kind": "serviceAccount",
            "id": record["id"],
            "workspaceId": "default",
            "workspaceName": "default",
        });
        want.as_object_mut()
            .expect("object")
            .extend(expected.as_object().expect("object").clone());
        let got = api.expect(&Request::get("/v1/whoami").bearer(&token), 200);
        assert_eq!(got, want, "whoami of {}", &token[..12]);
    }
}

/// Basic auth carries the token as the password, or as the whole credential.
#[test]
fn basic_auth_carries_the_token() {
    let api = Api::start();
    let token = api.admin_token().to_owned();
    let bearer = api.expect(&Request::get("/v1/whoami").auth(api.admin()), 200);
    for credential in [
        format!("token:{token}"),
        format!("anyone:{token}"),
        token.clone(),
    ] {
        let got = api.expect(
            &Request::get("/v1/whoami").auth(Auth::basic(&credential)),
            200,
        );
        assert_eq!(got, bearer, "Basic {credential}");
    }
    // The password is what counts: a wrong one is an invalid token.
    let reply = api.send(&Request::get("/v1/whoami").auth(Auth::basic(&format!("{token}:x"))));
    assert_eq!(reply.status, 401, "{}", reply.summary());
    assert_eq!(reply.message().as_deref(), Some("Invalid token"));
}

/// Each unusable `Authorization` header and the 401 message it earns.
#[test]
fn unusable_authorization_headers_are_401_with_the_reason() {
    let api = Api::start();
    let cases: [(Auth, &str); 8] = [
        (Auth::None, "Authentication required"),
        (
            Auth::Header("Token abc".into()),
            "Authorization header must use Bearer or Basic scheme",
        ),
        (
            Auth::Header("Bearer".into()),
            "Authorization header must use Bearer or Basic scheme",
        ),
        // The scheme is case-sensitive.
        (
            Auth::Header(format!("bearer {}", api.admin_token())),
            "Authorization header must use Bearer or Basic scheme",
        ),
        (
            Auth::Header("Basic !!!".into()),
            "Invalid Basic auth encoding",
        ),
        (
            Auth::bearer("ax_admin_00000000000000000000000000000000"),
            "Invalid token",
        ),
        (Auth::bearer("x"), "Invalid token"),
        // Tokens are compared exactly.
        (
            Auth::bearer(&api.admin_token().to_uppercase()),
            "Invalid token",
        ),
    ];
    for (auth, message) in cases {
        let request = Request::get("/v1/whoami").auth(auth);
        let body = api.expect_error(&request, 401, "UNAUTHORIZED");
        assert_eq!(body["message"], message, "{request:?}: {body}");
        assert_eq!(
            body["context"],
            json!({"reason": message}),
            "{request:?}: {body}"
        );
        assert_eq!(body["retryable"], false);
        assert_eq!(body["internal"], false);
    }
}

#[test]
fn tokens_are_listed_newest_first_without_secrets() {
    let api = Api::start();
    let group = api.create_group();
    let second_group_token = api.group_token(&group.id);
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let reply = api.send(&Request::get("/v1/tokens").auth(api.admin()));
    assert_eq!(reply.status, 200, "{}", reply.summary());
    for secret in [
        api.admin_token(),
        &group.token,
        &second_group_token,
        &deployment.token,
    ] {
        assert!(
            !reply.body.contains(secret),
            "GET /v1/tokens shows a raw token: {}",
            reply.body
        );
    }
    let list = reply.json();
    assert_eq!(
        list.as_object().map(|o| o.keys().collect::<Vec<_>>()),
        Some(vec![&"items".to_owned()]),
        "{list}"
    );
    let items = list["items"].as_array().expect("items");
    let expected = [
        (&deployment.token, "deployment"),
        (&second_group_token, "deployment-group"),
        (&group.token, "deployment-group"),
    ];
    for (item, (raw, kind)) in items.iter().zip(expected) {
        assert_eq!(item["keyPrefix"], raw[..12], "newest first: {list}");
        assert_eq!(item["tokenType"], kind, "{item}");
    }
    assert_eq!(
        items.len(),
        4,
        "admin, two group tokens, one deployment token: {list}"
    );
    let admin = &items[3];
    assert_eq!(admin["tokenType"], "admin");
    assert_eq!(admin["keyPrefix"], api.admin_token()[..12]);
    for item in items {
        assert!(
            is_lowercase_id(item["id"].as_str().unwrap_or(""), "tok_"),
            "{item}"
        );
        assert!(item["createdAt"].is_string(), "{item}");
        let keys: Vec<&str> = item
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let want: &[&str] = match item["tokenType"].as_str() {
            Some("admin") => &["createdAt", "id", "keyPrefix", "tokenType"],
            Some("deployment-group") => &[
                "createdAt",
                "deploymentGroupId",
                "id",
                "keyPrefix",
                "tokenType",
            ],
            _ => &[
                "createdAt",
                "deploymentGroupId",
                "deploymentId",
                "id",
                "keyPrefix",
                "tokenType",
            ],
        };
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, want, "bindings are omitted when null: {item}");
    }
    assert_eq!(items[0]["deploymentGroupId"], group.id.as_str());
    assert_eq!(items[0]["deploymentId"], deployment.id.as_str());
    assert_eq!(items[1]["deploymentGroupId"], group.id.as_str());
}

#[test]
fn a_deleted_token_stops_working_and_cannot_be_deleted_again() {
    let api = Api::start();
    let group = api.create_group();
    let keep = api.group_token(&group.id);
    let id = string(&api.token_record(&group.token), "id");
    let reply = api.send(&Request::delete(format!("/v1/tokens/{id}")).auth(api.admin()));
    assert_eq!(reply.status, 204, "{}", reply.summary());
    assert_eq!(reply.body, "", "204 has no body");
    let body = api.expect_error(
        &Request::get("/v1/whoami").bearer(&group.token),
        401,
        "UNAUTHORIZED",
    );
    assert_eq!(body["message"], "Invalid token");
    // Only that token: the group and its other token are untouched.
    api.expect(&Request::get("/v1/whoami").bearer(&keep), 200);
    let tokens = api.expect(&Request::get("/v1/tokens").auth(api.admin()), 200);
    assert!(
        !tokens.to_string().contains(&id),
        "deleted token still listed: {tokens}"
    );
    // Our fix over the public manager's 500: an unknown id is not found.
    for unknown in [id.as_str(), "tok_doesnotexist0000000000000000", "nope"] {
        let request = Request::delete(format!("/v1/tokens/{unknown}")).auth(api.admin());
        let reply = api.send(&request);
        assert_eq!(reply.status, 404, "{request}: {}", reply.summary());
        assert_eq!(envelope_problem(&reply.json(), 404), None, "{}", reply.body);
    }
}

/// No self-deletion protection, as in the public manager: the admin can revoke its own token.
#[test]
fn the_admin_can_delete_its_own_token() {
    let api = Api::start();
    let id = string(&api.token_record(api.admin_token()), "id");
    api.expect(
        &Request::delete(format!("/v1/tokens/{id}")).auth(api.admin()),
        204,
    );
    api.expect_error(
        &Request::get("/v1/whoami").auth(api.admin()),
        401,
        "UNAUTHORIZED",
    );
}

#[test]
fn build_config_names_the_local_repository() {
    let api = Api::start();
    // (query, status, JSON body or text fragment)
    let cases: [(&str, u16, Result<Value, &str>); 6] = [
        (
            "?platform=local",
            200,
            Ok(json!({"repositoryName": "artifacts/default"})),
        ),
        (
            "?platform=LOCAL",
            200,
            Ok(json!({"repositoryName": "artifacts/default"})),
        ),
        ("?platform=mars", 400, Err("Unknown platform: mars")),
        ("?platform=", 400, Err("Unknown platform")),
        (
            "?platform=aws",
            404,
            Err("No artifact registry configured for platform 'aws'"),
        ),
        (
            "",
            400,
            Err("Multiple registries configured. Specify ?platform=aws|gcp|azure|local"),
        ),
    ];
    for (query, status, want) in cases {
        let request = Request::get(format!("/v1/build-config{query}")).auth(api.admin());
        let reply = api.send(&request);
        assert_eq!(reply.status, status, "{request}: {}", reply.summary());
        match want {
            Ok(json) => assert_eq!(reply.json(), json, "{request}"),
            Err(text) => assert!(
                reply.body.contains(text),
                "{request}: want {text:?} in {}",
                reply.summary()
            ),
        }
    }
}

#[test]
fn platforms_lists_no_cloud_registry_by_default() {
    let api = Api::start();
    let body = api.expect(&Request::get("/v1/platforms").auth(api.admin()), 200);
    assert_eq!(body, json!({"platforms": []}));
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405_with_empty_bodies() {
    let api = Api::start();
    let cases = [
        (Request::get("/v1/nope"), 404),
        (Request::get("/nope"), 404),
        (Request::get("/v1/deployments/dep_x/nope"), 404),
        (Request::delete("/v1/whoami"), 405),
        (Request::delete("/v1/releases"), 405),
        (Request::post("/v1/whoami", json!({})), 405),
        (Request::get("/v1/sync/acquire"), 405),
        (Request::get("/v1/deployments/dep_x/retry"), 405),
    ];
    for (request, status) in cases {
        let request = request.auth(api.admin());
        let reply = api.send(&request);
        assert_eq!(reply.status, status, "{request}: {}", reply.summary());
        assert_eq!(reply.body, "", "{request}");
    }
}
