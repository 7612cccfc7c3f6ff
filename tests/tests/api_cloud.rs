//! The routes that need a cloud account or setup artifacts (stack import, credential minting,
//! binding resolution; docs/compatibility.md, Calls that need a cloud): every error the public
//! manager gives before the provider-specific part, and past it a 400 naming the unsupported
//! platform, with an error envelope and never a 500.

use e2e::api::{
    Api, Deployment, Group, NewDeployment, Reply, Request, envelope_problem, state, string, unique,
};
use serde_json::{Value, json};

/// A stack whose worker `api` runs as the service account `api-sa`, beside a frozen, remotely
/// accessible bucket `files`.
fn cloud_stack() -> Value {
    json!({
        "id": "my-app",
        "resources": {
            "api": {
                "config": {
                    "type": "worker",
                    "id": "api",
                    "permissions": "execution",
                    "code": {"type": "image", "image": "localhost:8080/artifacts/default:api-1"},
                    "links": [],
                    "triggers": []
                },
                "lifecycle": "live",
                "dependencies": [{"type": "service-account", "id": "api-sa"}]
            },
            "api-sa": {
                "config": {"type": "service-account", "id": "api-sa", "stackPermissionSets": []},
                "lifecycle": "frozen",
                "dependencies": []
            },
            "files": {
                "config": {"type": "storage", "id": "files"},
                "lifecycle": "frozen",
                "dependencies": [],
                "remoteAccess": true
            }
        },
        "permissions": {"profiles": {}}
    })
}

/// A release of [`cloud_stack`] for `platforms`; returns its id.
fn cloud_release(api: &Api, platforms: &[&str]) -> String {
    let stacks: serde_json::Map<String, Value> = platforms
        .iter()
        .map(|p| ((*p).to_owned(), cloud_stack()))
        .collect();
    let release = api.expect(
        &Request::post(
            "/v1/releases",
            json!({"projectId": "default", "stack": stacks}),
        )
        .auth(api.admin()),
        201,
    );
    string(&release, "id")
}

/// A deployment on `new`'s platform that runs `release` (reported by reconcile).
fn running_on(api: &Api, group: &Group, new: NewDeployment, release: &str) -> Deployment {
    let deployment = api.create_deployment(group, new);
    let mut running = state("running", &deployment.platform);
    running["currentRelease"] = json!({"releaseId": release, "stack": cloud_stack()});
    api.reconcile_as("agent", &deployment, running);
    deployment
}

/// `None` when `reply` is a client error other than 401/403 with an error envelope.
fn not_a_client_refusal(reply: &Reply) -> Option<String> {
    if !(400..500).contains(&reply.status) || reply.status == 401 || reply.status == 403 {
        return Some(format!(
            "want a 4xx refusal past authorization, got {}",
            reply.summary()
        ));
    }
    envelope_problem(&reply.json(), reply.status).map(|p| format!("{p}: {}", reply.body))
}

fn mint(deployment_id: &str, resource: &str, binding: &str) -> Value {
    json!({"deploymentId": deployment_id, "resourceId": resource, "bindingName": binding})
}

#[test]
fn minting_checks_the_deployment_and_its_release_first() {
    let api = Api::start();
    let group = api.create_group();
    let release = cloud_release(&api, &["local", "aws"]);
    let local = running_on(&api, &group, NewDeployment::pull(), &release);
    let fresh = api.create_deployment(&group, NewDeployment::pull());
    // (body, status, start of the message)
    let cases: [(Value, u16, &str); 7] = [
        (
            mint("dep_nope", "api", "api-sa"),
            404,
            "Deployment 'dep_nope' not found",
        ),
        (mint(&local.id, "api", "api sa!"), 400, ""),
        (mint(&local.id, "a/b", "api-sa"), 400, ""),
        (mint(&fresh.id, "api", "api-sa"), 400, ""),
        (
            mint(&local.id, "ghost", "api-sa"),
            400,
            "Resource 'ghost' is not part of the deployment's current release",
        ),
        (mint(&local.id, "files", "api-sa"), 400, ""),
        (mint(&local.id, "api", "other-sa"), 400, ""),
    ];
    for (body, status, message) in cases {
        let request = Request::post("/v1/credentials/mint", body).auth(api.admin());
        let reply = api.expect(&request, status);
        assert_eq!(envelope_problem(&reply, status), None, "{request}: {reply}");
        assert!(
            reply["message"].as_str().unwrap_or("").starts_with(message),
            "{request}: want {message:?}, got {reply}"
        );
    }
}

/// Past its checks, minting needs the platform's credentials: the local platform may answer
/// with the local client config or refuse; a cloud platform without a configured provider
/// refuses with a 4xx, never a 500.
#[test]
fn minting_for_a_platform_without_credentials_is_refused() {
    let api = Api::start();
    let group = api.create_group();
    let release = cloud_release(&api, &["local", "aws"]);
    let local = running_on(&api, &group, NewDeployment::pull(), &release);
    let reply = api.send(
        &Request::post("/v1/credentials/mint", mint(&local.id, "api", "api-sa"))
            .bearer(&local.token),
    );
    if reply.status == 200 {
        let body = reply.json();
        assert_eq!(body["clientConfig"]["platform"], "local", "{body}");
        assert!(body["expiresAt"].is_string() && body["principal"].is_string());
        assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
    } else if let Some(problem) = not_a_client_refusal(&reply) {
        panic!("local mint: {problem}");
    }
    let aws = running_on(&api, &group, NewDeployment::on("aws"), &release);
    let request =
        Request::post("/v1/credentials/mint", mint(&aws.id, "api", "api-sa")).auth(api.admin());
    if let Some(problem) = not_a_client_refusal(&api.send(&request)) {
        panic!("{request}: {problem}");
    }
}

#[test]
fn resolving_a_binding_is_refused_with_a_4xx() {
    let api = Api::start();
    let group = api.create_group();
    let release = cloud_release(&api, &["local", "aws"]);
    let local = running_on(&api, &group, NewDeployment::pull(), &release);
    let aws = running_on(&api, &group, NewDeployment::on("aws"), &release);
    let body = |id: &str, extra: Value| {
        let mut body = json!({"deploymentId": id});
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        body
    };
    api.expect_error(
        &Request::post(
            "/v1/bindings/resolve",
            body("dep_nope", json!({"resourceId": "files"})),
        )
        .auth(api.admin()),
        404,
        "DEPLOYMENT_NOT_FOUND",
    );
    // Exactly one of resourceId and kind.
    for extra in [json!({}), json!({"resourceId": "files", "kind": "ai"})] {
        api.expect_error(
            &Request::post("/v1/bindings/resolve", body(&aws.id, extra)).auth(api.admin()),
            400,
            "BAD_REQUEST",
        );
    }
    // Cloud platforms only; and without a cloud account, refused.
    for (deployment, extra) in [
        (&local, json!({"resourceId": "files"})),
        (&aws, json!({"resourceId": "files"})),
        (&aws, json!({"kind": "ai"})),
        (&aws, json!({"resourceId": "ghost"})),
    ] {
        let request = Request::post("/v1/bindings/resolve", body(&deployment.id, extra))
            .bearer(&deployment.token);
        if let Some(problem) = not_a_client_refusal(&api.send(&request)) {
            panic!("{request}: {problem}");
        }
    }
}

fn import(group: &Group, platform: &str) -> Value {
    json!({
        "setupImportFormatVersion": 1,
        "deploymentGroupToken": group.token,
        "deploymentName": unique("imported"),
        "resourcePrefix": "acme-prod",
        "platform": platform,
        "region": "us-east-1",
        "setupTarget": "cloudformation:acme",
        "setupFingerprint": "fp-1",
        "setupFingerprintVersion": 1,
        "stackSettings": {},
        "sourceKind": "cloudformation",
        "resources": [
            {"id": "api-sa", "type": "service-account", "importData": {}},
            {"id": "files", "type": "storage", "importData": {}}
        ],
    })
}

/// Stack import's own checks, then the platform's importer, which this manager does not have.
#[test]
fn stack_import_is_validated_then_refused() {
    let api = Api::start();
    let group = api.create_group();
    let with = |platform: &str, change: fn(&mut Value)| {
        let mut body = import(&group, platform);
        change(&mut body);
        Request::post("/v1/stack/import", body).bearer(&group.token)
    };
    // No release yet.
    let reply = api.send(&with("aws", |_| {}));
    assert_eq!(reply.status, 400, "no release: {}", reply.summary());
    cloud_release(&api, &["aws", "local"]);
    // (case, request, the statuses allowed; any 4xx refusal when empty)
    let cases: [(&str, Request, &[u16]); 9] = [
        (
            "empty resources",
            with("aws", |b| b["resources"] = json!([])),
            &[400],
        ),
        (
            "blank name",
            with("aws", |b| b["deploymentName"] = json!("  ")),
            &[400],
        ),
        (
            "bad prefix",
            with("aws", |b| b["resourcePrefix"] = json!("A")),
            &[400],
        ),
        (
            "unknown release",
            with("aws", |b| b["releaseId"] = json!("rel_nope")),
            &[404, 400],
        ),
        ("no stack for the platform", with("gcp", |_| {}), &[400]),
        (
            "resource not in the stack",
            with("aws", |b| b["resources"][0]["id"] = json!("ghost")),
            &[400],
        ),
        (
            "type mismatch",
            with("aws", |b| b["resources"][1]["type"] = json!("queue")),
            &[400],
        ),
        (
            "duplicate ids",
            with("aws", |b| b["resources"][1]["id"] = json!("api-sa")),
            &[400],
        ),
        ("a complete aws import", with("aws", |_| {}), &[]),
    ];
    let mut wrong = Vec::new();
    for (case, request, statuses) in cases {
        let reply = api.send(&request);
        if !statuses.is_empty() && !statuses.contains(&reply.status) {
            wrong.push(format!(
                "{case}: want one of {statuses:?}, got {}",
                reply.summary()
            ));
        } else if let Some(problem) = not_a_client_refusal(&reply) {
            wrong.push(format!("{case}: {problem}"));
        }
    }
    for platform in ["local", "kubernetes"] {
        let reply = api.send(&with(platform, |_| {}));
        if let Some(problem) = not_a_client_refusal(&reply) {
            wrong.push(format!("a complete {platform} import: {problem}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
