//! Client mistakes in request bodies, paths and queries: each is refused with the public
//! manager's status and a message naming the offending field (docs/compatibility.md, Input
//! errors), and none is ever answered with a 500.

use e2e::api::{
    Api, Auth, Body, Deployment, Group, NewDeployment, Request, envelope_problem, release_body,
    state,
};
use serde_json::{Value, json};

/// axum's default body limit, kept by the public manager.
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// What the routes below act on.
struct World {
    group: Group,
    deployment: Deployment,
}

/// A field, and a value of the wrong type for it (or outside its enum).
type WrongValue = (&'static str, fn() -> Value);

/// A route that takes a JSON body, and the mistakes to make in it.
struct Route {
    path: fn(&World) -> String,
    /// A body the route accepts.
    valid: fn(&World) -> Value,
    /// Required fields: each one removed must be refused naming it.
    required: &'static [&'static str],
    wrong: &'static [WrongValue],
    /// Unknown fields are refused (`deny_unknown_fields`), not ignored.
    denies_unknown: bool,
    /// The body is read as bytes and parsed by the handler (stack import): shape errors are
    /// 400, and no content type is required.
    raw: bool,
}

impl Route {
    /// The status a body of the wrong shape gets.
    fn shape_status(&self) -> u16 {
        if self.raw { 400 } else { 422 }
    }

    /// A caller the route authorizes: the admin, except for stack import, which takes group
    /// tokens only (so that a refusal is about the body whatever the order of checks).
    fn caller(&self, api: &Api, world: &World) -> Auth {
        if self.raw {
            Auth::bearer(&world.group.token)
        } else {
            api.admin()
        }
    }
}

fn routes() -> Vec<Route> {
    vec![
        Route {
            path: |_| "/v1/releases".into(),
            valid: |_| release_body(&["local"]),
            required: &["stack", "projectId"],
            wrong: &[("stack", || json!(5)), ("projectId", || json!(["default"]))],
            denies_unknown: true,
            raw: false,
        },
        Route {
            path: |_| "/v1/deployment-groups".into(),
            valid: |_| json!({"name": "g"}),
            required: &["name"],
            wrong: &[("name", || json!(5)), ("maxDeployments", || json!("many"))],
            denies_unknown: false,
            raw: false,
        },
        Route {
            path: |_| "/v1/deployments".into(),
            valid: |w| json!({"name": "d", "platform": "local", "deploymentGroupId": w.group.id}),
            required: &["name", "platform"],
            wrong: &[
                ("platform", || json!("mars")),
                ("name", || json!(5)),
                ("stackSettings", || json!({"deploymentModel": "sideways"})),
                ("environmentVariables", || json!([{"name": "K"}])),
            ],
            denies_unknown: false,
            raw: false,
        },
        Route {
            path: |w| format!("/v1/deployments/{}/delete", w.deployment.id),
            valid: |_| json!({"action": "cleanup"}),
            required: &["action"],
            wrong: &[("action", || json!("nuke"))],
            denies_unknown: false,
            raw: false,
        },
        Route {
            path: |_| "/v1/initialize".into(),
            valid: |_| json!({"initialDesiredRelease": "none"}),
            required: &["initialDesiredRelease"],
            wrong: &[
                ("initialDesiredRelease", || json!("sometimes")),
                ("platform", || json!("mars")),
            ],
            denies_unknown: false,
            raw: false,
        },
        Route {
            path: |_| "/v1/sync/acquire".into(),
            valid: |w| json!({"session": "s", "deploymentModel": "pull", "deploymentIds": [w.deployment.id]}),
            required: &["session", "deploymentModel"],
            wrong: &[
                ("deploymentModel", || json!("both")),
                ("limit", || json!("ten")),
                ("deploymentIds", || json!("dep_x")),
            ],
            denies_unknown: false,
            raw: false,
        },
        Route {
            path: |_| "/v1/sync/reconcile".into(),
            valid: |w| json!({"deploymentId": w.deployment.id, "session": "s", "state": state("pending", "local")}),
            required: &["deploymentId", "session", "state"],
            wrong: &[
                ("session", || json!(5)),
                ("updateHeartbeat", || json!("yes")),
                ("suggestedDelayMs", || json!("soon")),
            ],
            denies_unknown: false,
            raw: false,
        },
        Route {
            path: |_| "/v1/sync/renew".into(),
            valid: |w| json!({"deploymentId": w.deployment.id, "session": "s"}),
            required: &["deploymentId", "session"],
            wrong: &[("deploymentId", || json!(5))],
            denies_unknown: false,
            raw: false,
        },
        Route {
            path: |_| "/v1/sync/release".into(),
            valid: |w| json!({"deploymentId": w.deployment.id, "session": "s"}),
            required: &["deploymentId", "session"],
            wrong: &[("session", || json!(null))],
            denies_unknown: false,
            raw: false,
        },
        Route {
            path: |_| "/v1/sync".into(),
            valid: |w| json!({"deploymentId": w.deployment.id}),
            required: &["deploymentId"],
            wrong: &[("deploymentId", || json!({"id": 1}))],
            denies_unknown: false,
            raw: false,
        },
        Route {
            path: |_| "/v1/stack/import".into(),
            valid: |w| {
                json!({
                    "setupImportFormatVersion": 1,
                    "deploymentGroupToken": w.group.token,
                    "deploymentName": "imported",
                    "resourcePrefix": "acme-prod",
                    "platform": "aws",
                    "region": "us-east-1",
                    "setupTarget": "cloudformation:acme",
                    "setupFingerprint": "fp-1",
                    "setupFingerprintVersion": 1,
                    "stackSettings": {},
                    "resources": [{"id": "api", "type": "worker", "importData": {}}],
                })
            },
            required: &["deploymentName", "resourcePrefix", "platform", "resources"],
            wrong: &[
                ("platform", || json!("mars")),
                ("resources", || json!({"api": {}})),
                ("setupFingerprintVersion", || json!("one")),
            ],
            denies_unknown: false,
            raw: true,
        },
        Route {
            path: |_| "/v1/credentials/mint".into(),
            valid: |w| json!({"deploymentId": w.deployment.id, "resourceId": "api", "bindingName": "api-sa"}),
            required: &["deploymentId", "resourceId", "bindingName"],
            wrong: &[("durationSeconds", || json!("an hour"))],
            denies_unknown: true,
            raw: false,
        },
        Route {
            path: |_| "/v1/bindings/resolve".into(),
            valid: |w| json!({"deploymentId": w.deployment.id, "resourceId": "api"}),
            required: &["deploymentId"],
            wrong: &[("kind", || json!("bogus")), ("resourceId", || json!(7))],
            denies_unknown: true,
            raw: false,
        },
    ]
}

fn world(api: &Api) -> World {
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    World { group, deployment }
}

/// Runs `case` for every route and fails listing every route that answered wrongly.
fn for_every_route(case: impl Fn(&Api, &World, &Route) -> Vec<String>) {
    let api = Api::start();
    let world = world(&api);
    let wrong: Vec<String> = routes()
        .iter()
        .flat_map(|route| case(&api, &world, route))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn raw(path: String, content_type: Option<&str>, bytes: Vec<u8>) -> Request {
    Request::new(
        "POST",
        path,
        Body::Raw {
            content_type: content_type.map(str::to_owned),
            bytes,
        },
    )
}

/// Checks a refusal: `status`, and every one of `names` somewhere in the body.
fn refused(api: &Api, request: &Request, status: u16, names: &[&str]) -> Option<String> {
    let reply = api.send(request);
    let missing: Vec<&&str> = names.iter().filter(|n| !reply.body.contains(**n)).collect();
    if reply.status != status || !missing.is_empty() {
        Some(format!(
            "{request}\n  want {status} naming {names:?}, got {}",
            reply.summary()
        ))
    } else {
        None
    }
}

#[test]
fn bodies_over_two_mebibytes_are_413_with_an_error_envelope() {
    for_every_route(|api, world, route| {
        let mut bytes = br#"{"pad":""#.to_vec();
        bytes.resize(BODY_LIMIT + 1024, b'x');
        bytes.extend_from_slice(b"\"}");
        let request = raw((route.path)(world), Some("application/json"), bytes)
            .auth(route.caller(api, world));
        let reply = api.send(&request);
        if reply.status != 413 {
            return vec![format!("{request}: want 413, got {}", reply.summary())];
        }
        match envelope_problem(&reply.json(), 413) {
            Some(problem) => vec![format!(
                "{request}: 413 without an envelope ({problem}): {}",
                reply.body
            )],
            None => vec![],
        }
    });
}

/// Just under the limit is read (and refused for what it says, not for its size).
#[test]
fn bodies_just_under_the_limit_are_read() {
    let api = Api::start();
    let mut body = json!({"name": "padded"});
    body["pad"] = json!("x".repeat(BODY_LIMIT - 1024));
    let request = Request::post("/v1/deployment-groups", body).auth(api.admin());
    api.expect(&request, 200);
}

#[test]
fn bodies_need_the_json_content_type() {
    for_every_route(|api, world, route| {
        if route.raw {
            return vec![];
        }
        let body = (route.valid)(world).to_string().into_bytes();
        [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ]
        .into_iter()
        .filter_map(|content_type| {
            let request =
                raw((route.path)(world), content_type, body.clone()).auth(route.caller(api, world));
            refused(api, &request, 415, &[])
        })
        .collect()
    });
}

#[test]
fn malformed_json_is_400() {
    for_every_route(|api, world, route| {
        [&b"{\"name\":"[..], b"{,}", b"", b"\xff\xfe", b"{\"a\":1}}"]
            .into_iter()
            .filter_map(|bytes| {
                let request = raw(
                    (route.path)(world),
                    Some("application/json"),
                    bytes.to_vec(),
                )
                .auth(route.caller(api, world));
                refused(api, &request, 400, &[])
            })
            .collect()
    });
}

#[test]
fn bodies_that_are_not_objects_are_refused() {
    for_every_route(|api, world, route| {
        [json!([]), json!(null), json!("text"), json!(5), json!(true)]
            .into_iter()
            .filter_map(|body| {
                let request =
                    Request::post((route.path)(world), body).auth(route.caller(api, world));
                refused(api, &request, route.shape_status(), &[])
            })
            .collect()
    });
}

#[test]
fn a_missing_required_field_is_refused_by_name() {
    for_every_route(|api, world, route| {
        route
            .required
            .iter()
            .filter_map(|field| {
                let mut body = (route.valid)(world);
                body.as_object_mut().expect("object").remove(*field);
                let request =
                    Request::post((route.path)(world), body).auth(route.caller(api, world));
                refused(api, &request, route.shape_status(), &[field])
            })
            .collect()
    });
}

#[test]
fn a_field_of_the_wrong_type_is_refused_by_name() {
    for_every_route(|api, world, route| {
        route
            .wrong
            .iter()
            .filter_map(|(field, value)| {
                let mut body = (route.valid)(world);
                body[*field] = value();
                let request =
                    Request::post((route.path)(world), body).auth(route.caller(api, world));
                refused(api, &request, route.shape_status(), &[field])
            })
            .collect()
    });
}

#[test]
fn unknown_fields_are_refused_by_name_where_the_public_manager_denies_them() {
    for_every_route(|api, world, route| {
        if !route.denies_unknown {
            return vec![];
        }
        let mut body = (route.valid)(world);
        body["surpriseField"] = json!(1);
        let request = Request::post((route.path)(world), body).auth(route.caller(api, world));
        refused(api, &request, 422, &["surpriseField"])
            .into_iter()
            .collect()
    });
}

/// `[[…]]` nested `depth` deep.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// JSON nested deeper than the manager reads is the client's mistake, named with the limit,
/// wherever in the body it is and whichever part of the body the route parses again later.
#[test]
fn deeply_nested_bodies_are_400_naming_the_limit() {
    for_every_route(|api, world, route| {
        let valid = (route.valid)(world).to_string();
        let deep = format!("{{\"deep\":{},{}", nested(150), &valid[1..]);
        let request = raw(
            (route.path)(world),
            Some("application/json"),
            deep.into_bytes(),
        )
        .auth(route.caller(api, world));
        refused(api, &request, 400, &["100 levels"])
            .into_iter()
            .collect()
    });
    // Inside a stack, just under the JSON parser's own limit of 128, which the stack's
    // second reading hit: it was a 500.
    let api = Api::start();
    for depth in [120, 127, 128] {
        let mut body = release_body(&["local"]);
        body["stack"]["local"]["extra"] = json!("DEEP");
        let text = body
            .to_string()
            .replace("\"DEEP\"", &nested(depth))
            .into_bytes();
        let request = raw("/v1/releases".into(), Some("application/json"), text).auth(api.admin());
        if let Some(wrong) = refused(&api, &request, 400, &["100 levels"]) {
            panic!("a stack nested {depth} deep: {wrong}");
        }
    }
}

/// Extraction precedes authentication: a bad body without a token is a body error.
#[test]
fn body_errors_come_before_authentication() {
    for_every_route(|api, world, route| {
        let mut wrong = Vec::new();
        for auth in [Auth::None, Auth::Header("Token abc".into())] {
            let request = raw(
                (route.path)(world),
                Some("application/json"),
                b"{,}".to_vec(),
            )
            .auth(auth);
            wrong.extend(refused(api, &request, 400, &[]));
        }
        wrong
    });
}

/// Stack import checks its format version first, before authentication, so that a setup
/// package from an incompatible CLI is told so whoever runs it.
#[test]
fn stack_import_checks_its_format_version_first() {
    let api = Api::start();
    let world = world(&api);
    let valid = (routes()
        .into_iter()
        .find(|r| r.raw)
        .expect("stack import route")
        .valid)(&world);
    for version in [
        json!(0),
        json!(2),
        json!(-1),
        json!("1"),
        json!(1.5),
        Value::Null,
    ] {
        let mut body = valid.clone();
        body["setupImportFormatVersion"] = version.clone();
        let request = Request::post("/v1/stack/import", body);
        let reply = api.expect_error(&request, 400, "INCOMPATIBLE_SETUP_IMPORT");
        assert!(reply["context"].is_object(), "{version}: {reply}");
    }
    let mut body = valid;
    body.as_object_mut()
        .expect("object")
        .remove("setupImportFormatVersion");
    api.expect_error(
        &Request::post("/v1/stack/import", body),
        400,
        "INCOMPATIBLE_SETUP_IMPORT",
    );
}

/// Odd ids and queries are a 4xx, never a 500.
#[test]
fn odd_paths_and_queries_are_never_a_server_error() {
    let api = Api::start();
    let world = world(&api);
    let long = "x".repeat(8 * 1024);
    let weird_ids = [
        "%00",
        "a%2Fb",
        "%E2%9C%93",
        "..",
        "dep_%20",
        long.as_str(),
        "'%3B--",
    ];
    let mut requests = Vec::new();
    for id in weird_ids {
        requests.extend([
            (Request::get(format!("/v1/deployments/{id}")), Some(404)),
            (
                Request::get(format!("/v1/deployments/{id}/info")),
                Some(404),
            ),
            (
                Request::post_empty(format!("/v1/deployments/{id}/retry")),
                Some(404),
            ),
            (
                Request::post_empty(format!("/v1/deployments/{id}/redeploy")),
                Some(404),
            ),
            (
                Request::post(
                    format!("/v1/deployments/{id}/delete"),
                    json!({"action": "forget"}),
                ),
                Some(404),
            ),
            (Request::get(format!("/v1/releases/{id}")), Some(404)),
            (
                Request::get(format!("/v1/deployment-groups/{id}")),
                Some(404),
            ),
            (
                Request::post_empty(format!("/v1/deployment-groups/{id}/tokens")),
                Some(404),
            ),
            (Request::delete(format!("/v1/tokens/{id}")), Some(404)),
            (
                Request::get(format!("/v1/deployments?deploymentGroupId={id}")),
                None,
            ),
            (
                Request::get(format!(
                    "/v1/deployments?deploymentGroupId={}&name={id}",
                    world.group.id
                )),
                None,
            ),
            (
                Request::get(format!("/v1/build-config?platform={id}")),
                Some(400),
            ),
        ]);
    }
    requests.extend([
        (Request::get("/v1/deployments?name=%zz"), None),
        (Request::get("/v1/deployments?include=%zz"), None),
        (Request::get("/v1/deployments?include=nothing"), Some(200)),
        (Request::get("/v1/build-config?platform=%zz"), None),
    ]);
    let mut wrong = Vec::new();
    for (request, status) in requests {
        let request = request.auth(api.admin());
        let reply = api.send(&request);
        let ok = match status {
            Some(status) => reply.status == status,
            None => reply.status < 500,
        };
        if !ok {
            wrong.push(format!(
                "{}: want {}, got {}",
                e2e::api::shorten(&request.to_string(), 120),
                status.map_or("a non-5xx".to_owned(), |s| s.to_string()),
                reply.summary()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Routes that take no body ignore one.
#[test]
fn routes_without_a_body_ignore_one() {
    let api = Api::start();
    let world = world(&api);
    api.set_status(&world.deployment, "update-failed");
    for path in [
        format!("/v1/deployments/{}/retry", world.deployment.id),
        format!("/v1/deployments/{}/redeploy", world.deployment.id),
        format!("/v1/deployment-groups/{}/tokens", world.group.id),
    ] {
        let request = Request::post(&path, json!({"unexpected": true})).auth(api.admin());
        api.expect(&request, 200);
    }
}
