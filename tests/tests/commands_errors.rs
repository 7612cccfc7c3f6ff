//! Every error of the commands API, its states and who may call it (docs/compatibility.md,
//! Commands; `manager::authz`), each a row: the request, the status and the code.

use e2e::api::{Api, Auth, NewDeployment, Request, string};
use e2e::commands::{Receiver, Target, create_body, http};
use serde_json::json;

#[test]
fn creation_and_target_resolution_errors() {
    let api = Api::start();
    let one = Target::new(&api, NewDeployment::pull(), &[("jobs", "container", true)]);
    let two = Target::new(
        &api,
        NewDeployment::pull(),
        &[
            ("api", "worker", true),
            ("files", "storage", true),
            ("jobs", "container", true),
        ],
    );
    let none = Target::new(&api, NewDeployment::pull(), &[("api", "worker", false)]);
    let updating = Target::with_state(
        &api,
        NewDeployment::pull(),
        &[("jobs", "container", true)],
        "updating",
        None,
    );
    for target in [&one, &two, &none, &updating] {
        target.report(&api);
    }
    let other_group = api.create_group();
    let past = "2020-01-01T00:00:00Z";
    // (target, body, auth, status, code)
    let cases = vec![
        (
            &one,
            json!({"command": ""}),
            api.admin(),
            400,
            "INVALID_COMMAND",
        ),
        (
            &one,
            json!({"command": "a:b"}),
            api.admin(),
            400,
            "INVALID_COMMAND",
        ),
        (
            &one,
            json!({"deadline": past}),
            api.admin(),
            400,
            "INVALID_COMMAND",
        ),
        (
            &one,
            json!({"deadline": "tomorrow"}),
            api.admin(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            &one,
            json!({"deploymentId": "dep_nope"}),
            api.admin(),
            404,
            "DEPLOYMENT_NOT_FOUND",
        ),
        (&none, json!({}), api.admin(), 422, "NO_COMMAND_TARGETS"),
        (
            &two,
            json!({}),
            api.admin(),
            409,
            "COMMAND_TARGET_AMBIGUOUS",
        ),
        (
            &two,
            json!({"targetResourceId": "files"}),
            api.admin(),
            404,
            "COMMAND_TARGET_NOT_FOUND",
        ),
        (
            &two,
            json!({"targetResourceId": ""}),
            api.admin(),
            404,
            "COMMAND_TARGET_NOT_FOUND",
        ),
        (
            &two,
            json!({"targetResourceId": "a:b"}),
            api.admin(),
            400,
            "COMMAND_TARGET_ID_INVALID",
        ),
        (
            &two,
            json!({"targetResourceId": "operator"}),
            api.admin(),
            403,
            "FORBIDDEN",
        ),
        (&updating, json!({}), api.admin(), 400, "INVALID_COMMAND"),
        (&one, json!({}), Auth::None, 401, "UNAUTHORIZED"),
        (
            &one,
            json!({}),
            Auth::bearer("ax_admin_nope"),
            401,
            "UNAUTHORIZED",
        ),
        (
            &one,
            json!({}),
            Auth::bearer(&one.deployment.token),
            403,
            "FORBIDDEN",
        ),
        (
            &one,
            json!({}),
            Auth::bearer(&other_group.token),
            403,
            "FORBIDDEN",
        ),
        (
            &one,
            json!({"params": {"mode": "nope"}}),
            api.admin(),
            422,
            "VALIDATION_ERROR",
        ),
    ];
    for (target, body, auth, status, code) in cases {
        let request = Request::post("/v1/commands", create_body(target, body)).auth(auth);
        api.expect_error(&request, status, code);
    }
    let reply = api.expect_error(
        &Request::post("/v1/commands", create_body(&updating, json!({}))).auth(api.admin()),
        400,
        "INVALID_COMMAND",
    );
    assert!(
        reply["message"].as_str().is_some_and(|m| m.contains(
            "is 'updating' and cannot receive commands yet. Wait until status is 'running'."
        )),
        "{reply}"
    );
    // The group's own token may create, and an explicit target is addressed.
    let created = api.expect(
        &Request::post(
            "/v1/commands",
            create_body(&two, json!({"targetResourceId": "jobs"})),
        )
        .bearer(&two.group.token),
        200,
    );
    let status = api.expect(
        &Request::get(format!("/v1/commands/{}", string(&created, "commandId"))).auth(api.admin()),
        200,
    );
    assert_eq!(
        status["target"],
        json!({"resourceId": "jobs", "resourceType": "container"})
    );
}

#[test]
fn lifecycle_and_access_errors() {
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &[("jobs", "container", true)]);
    let other = Target::new(&api, NewDeployment::pull(), &[("jobs", "container", true)]);
    target.report(&api);
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    let created = api.expect(
        &Request::post("/v1/commands", create_body(&target, json!({}))).auth(api.admin()),
        200,
    );
    let id = string(&created, "commandId");
    let respond = |id: &str| {
        Request::new(
            "PUT",
            format!("/v1/commands/{id}/response"),
            e2e::api::Body::Json(
                json!({"status": "success", "response": {"mode": "inline", "inlineBase64": "e30="}}),
            ),
        )
    };
    let lease_body = |dep: &str| json!({"deploymentId": dep, "target": {"resourceId": "jobs", "resourceType": "container"}});
    let own = Auth::bearer(&target.deployment.token);
    let stranger = Auth::bearer(&other.deployment.token);
    // (request, status, code)
    let cases = vec![
        (
            Request::get("/v1/commands/cmd_nope").auth(api.admin()),
            404,
            "COMMAND_NOT_FOUND",
        ),
        (
            Request::get(format!("/v1/commands/{id}")),
            401,
            "UNAUTHORIZED",
        ),
        (
            Request::get(format!("/v1/commands/{id}")).auth(stranger.clone()),
            403,
            "FORBIDDEN",
        ),
        (
            Request::get(format!("/v1/commands/{id}/payload")).auth(stranger.clone()),
            403,
            "FORBIDDEN",
        ),
        (
            Request::get("/v1/commands/cmd_nope/payload").auth(own.clone()),
            403,
            "FORBIDDEN",
        ),
        (
            Request::get("/v1/commands/cmd_nope/payload").auth(api.admin()),
            404,
            "COMMAND_NOT_FOUND",
        ),
        (
            Request::new(
                "PUT",
                format!("/v1/commands/{id}/payload"),
                e2e::api::Body::Json(json!({})),
            )
            .auth(own.clone()),
            403,
            "FORBIDDEN",
        ),
        // A response to a command nobody leased: not DISPATCHED.
        (
            respond(&id).auth(api.admin()),
            400,
            "INVALID_STATE_TRANSITION",
        ),
        (respond(&id).auth(stranger.clone()), 403, "FORBIDDEN"),
        (respond(&id), 401, "UNAUTHORIZED"),
        (
            respond("cmd_nope").auth(api.admin()),
            404,
            "COMMAND_NOT_FOUND",
        ),
        (
            Request::post(
                format!("/v1/commands/{id}/upload-complete"),
                json!({"size": 1}),
            )
            .auth(api.admin()),
            400,
            "INVALID_STATE_TRANSITION",
        ),
        (
            Request::post(
                format!("/v1/commands/{id}/upload-complete"),
                json!({"size": 1}),
            )
            .auth(own.clone()),
            403,
            "FORBIDDEN",
        ),
        (
            Request::post("/v1/commands/cmd_nope/upload-complete", json!({"size": 1}))
                .auth(api.admin()),
            404,
            "COMMAND_NOT_FOUND",
        ),
        (
            Request::post("/v1/commands/leases", lease_body(&target.deployment.id))
                .auth(stranger.clone()),
            403,
            "FORBIDDEN",
        ),
        (
            Request::post("/v1/commands/leases", lease_body("dep_nope")).auth(api.admin()),
            404,
            "DEPLOYMENT_NOT_FOUND",
        ),
        (
            Request::post(
                "/v1/commands/leases",
                json!({"deploymentId": target.deployment.id}),
            )
            .auth(own.clone()),
            422,
            "VALIDATION_ERROR",
        ),
        // A lease so long its expiry would not fit a date (3e11 s) never ran out.
        (
            Request::post("/v1/commands/leases", {
                let mut body = lease_body(&target.deployment.id);
                body["leaseSeconds"] = json!(300_000_000_000u64);
                body
            })
            .auth(own.clone()),
            400,
            "BAD_REQUEST",
        ),
        (
            Request::post("/v1/commands/leases", {
                let mut body = lease_body(&target.deployment.id);
                body["leaseSeconds"] = json!(86_401);
                body
            })
            .auth(own.clone()),
            400,
            "BAD_REQUEST",
        ),
        (
            Request::post_empty("/v1/commands/leases/lease_nope/release").auth(own.clone()),
            404,
            "LEASE_NOT_FOUND",
        ),
    ];
    for (request, status, code) in cases {
        api.expect_error(&request, status, code);
    }
    // The longest lease allowed is taken, and runs out a day from now.
    let longest = receiver.lease(1, 86_400, None).remove(0);
    let expires = time::OffsetDateTime::parse(
        &longest.expires_at,
        &time::format_description::well_known::Rfc3339,
    )
    .expect("leaseExpiresAt is RFC 3339");
    let ahead = expires - time::OffsetDateTime::now_utc();
    assert!(
        (ahead.whole_seconds() - 86_400).abs() < 600,
        "a lease of 86400 s expires at {}",
        longest.expires_at
    );
    api.expect(
        &Request::post_empty(format!("/v1/commands/leases/{}/release", longest.lease_id))
            .auth(own.clone()),
        200,
    );
    // Another deployment's token cannot release this deployment's lease.
    let lease = receiver.lease(1, 60, None).remove(0);
    api.expect_error(
        &Request::post_empty(format!("/v1/commands/leases/{}/release", lease.lease_id))
            .auth(stranger),
        403,
        "FORBIDDEN",
    );
    // Tampered, expired, missing and far-future response tokens.
    let url = lease.submit_url();
    let (path, query) = url.split_once('?').expect("query");
    let token: String = query
        .split('&')
        .find_map(|p| p.strip_prefix("response_token="))
        .expect("token")
        .to_owned();
    let expires: i64 = query
        .split('&')
        .find_map(|p| p.strip_prefix("expires="))
        .expect("expires")
        .parse()
        .expect("number");
    let mut tampered = token.clone().into_bytes();
    tampered[10] = if tampered[10] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let body = json!({"status": "success", "response": {"mode": "inline", "inlineBase64": "e30="}})
        .to_string()
        .into_bytes();
    for bad in [
        format!("{path}?response_token={tampered}&expires={expires}"),
        format!("{path}?response_token={token}&expires={}", expires + 1),
        format!("{path}?response_token={token}&expires=100"),
        format!("{path}?response_token={token}"),
        path.to_owned(),
    ] {
        let (status, reply) = http("PUT", &bad, None, Some("application/json"), body.clone());
        let reply: serde_json::Value = serde_json::from_slice(&reply).expect("JSON");
        assert_eq!(
            (status, reply["code"].as_str()),
            (401, Some("UNAUTHORIZED")),
            "{bad}: {reply}"
        );
    }
    // An expired token: signed in the past, so it verifies but is out of date.
    // The right token, and the deployment's own bearer, both work.
    assert_eq!(receiver.respond(&lease, b"ok"), 200);
    let (status, _) = http(
        "PUT",
        &format!("{}/v1/commands/{id}/response", api.base_url()),
        Some(&target.deployment.token),
        Some("application/json"),
        body,
    );
    assert_eq!(status, 200, "a duplicate with the bearer is a 200 too");
    // Storage URLs need their signature.
    let (status, _) = http(
        "GET",
        &format!(
            "{}/v1/commands/storage/{id}/params?expires=1&signature=00",
            api.base_url()
        ),
        None,
        None,
        Vec::new(),
    );
    assert_eq!(status, 401);
}
