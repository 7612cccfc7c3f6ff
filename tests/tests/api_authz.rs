//! The authorization matrix (`manager::authz`, docs/compatibility.md, Who may call what),
//! route by route: every route in scope called by each kind of caller, with the status (and
//! for refusals the error) the public manager gives.
//!
//! Callers: the admin; a deployment-group token of the target's group and one of another
//! group; the target deployment's own token and the token of another deployment *of the same
//! group* (so that an implementation checking the group instead of the deployment is caught);
//! a revoked token; no header; and three malformed headers.
//!
//! Each cell runs against a fresh [`World`], so that a caller that succeeds (a delete, a lease)
//! cannot change what the next one sees.

use e2e::api::{
    Api, Auth, Deployment, Group, NewDeployment, Reply, Request, envelope_problem, state, string,
    unique,
};
use serde_json::json;

#[derive(Debug, Clone, Copy)]
enum Caller {
    Admin,
    Group,
    OtherGroup,
    Deployment,
    /// Another deployment in the target's group.
    OtherDeployment,
    /// A deployment-group token of the target's group, revoked.
    Revoked,
    NoToken,
    /// This `Authorization` header.
    Malformed(&'static str),
}

const CALLERS: [Caller; 10] = [
    Caller::Admin,
    Caller::Group,
    Caller::OtherGroup,
    Caller::Deployment,
    Caller::OtherDeployment,
    Caller::Revoked,
    Caller::NoToken,
    Caller::Malformed("Token abc"),
    Caller::Malformed("Bearer"),
    Caller::Malformed("Basic !!!"),
];

/// What a caller gets.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Success with this status.
    Allowed(u16),
    /// 403 `FORBIDDEN` whose message contains this.
    Forbidden(&'static str),
    /// 401 `UNAUTHORIZED` with exactly this message.
    Unauthorized(&'static str),
    /// Past authorization, refused by validation with this status and an error envelope that
    /// is neither 401 nor 403: the route's success needs what a test machine lacks (a cloud
    /// account, setup artifacts).
    Refused(u16),
}

use Want::{Allowed, Forbidden, Refused};

/// The target of every request and the tokens of every caller.
struct World {
    group: Group,
    other_group: Group,
    /// The target deployment, in `group`.
    deployment: Deployment,
    /// Another deployment in `group`.
    sibling: Deployment,
    revoked: String,
    release: String,
}

impl World {
    fn new(api: &Api) -> World {
        let group = api.create_group();
        let other_group = api.create_group();
        let deployment = api.create_deployment(&group, NewDeployment::pull());
        let sibling = api.create_deployment(&group, NewDeployment::pull());
        let revoked = api.group_token(&group.id);
        api.revoke(&revoked);
        let release = string(&api.create_release(&["local"]), "id");
        World {
            group,
            other_group,
            deployment,
            sibling,
            revoked,
            release,
        }
    }

    fn auth(&self, api: &Api, caller: Caller) -> Auth {
        match caller {
            Caller::Admin => api.admin(),
            Caller::Group => Auth::bearer(&self.group.token),
            Caller::OtherGroup => Auth::bearer(&self.other_group.token),
            Caller::Deployment => Auth::bearer(&self.deployment.token),
            Caller::OtherDeployment => Auth::bearer(&self.sibling.token),
            Caller::Revoked => Auth::bearer(&self.revoked),
            Caller::NoToken => Auth::None,
            Caller::Malformed(header) => Auth::Header(header.to_owned()),
        }
    }
}

/// One route: how to call it against a world (setting the world up first where the call
/// needs it), and what each authenticated caller gets, in the order admin, group token,
/// other group's token, deployment token, other deployment's token.
struct Route {
    request: fn(&Api, &World) -> Request,
    want: [Want; 5],
}

/// What callers without a valid token get from every `/v1` route.
fn unauthenticated(caller: Caller) -> Option<Want> {
    Some(match caller {
        Caller::Revoked => Want::Unauthorized("Invalid token"),
        Caller::NoToken => Want::Unauthorized("Authentication required"),
        Caller::Malformed("Basic !!!") => Want::Unauthorized("Invalid Basic auth encoding"),
        Caller::Malformed(_) => {
            Want::Unauthorized("Authorization header must use Bearer or Basic scheme")
        }
        _ => return None,
    })
}

fn mismatch(want: Want, reply: &Reply) -> Option<String> {
    let envelope = |status: u16| envelope_problem(&reply.json(), status);
    let problem = match want {
        Want::Allowed(status) if reply.status == status => None,
        Want::Allowed(status) => Some(format!("want {status}")),
        Want::Forbidden(fragment) => {
            if reply.status != 403 {
                Some(format!("want 403 FORBIDDEN {fragment:?}"))
            } else if let Some(problem) = envelope(403) {
                Some(problem)
            } else if reply.code().as_deref() != Some("FORBIDDEN")
                || !reply.message().unwrap_or_default().contains(fragment)
            {
                Some(format!("want code FORBIDDEN, message with {fragment:?}"))
            } else {
                None
            }
        }
        Want::Unauthorized(message) => {
            if reply.status != 401 {
                Some(format!("want 401 {message:?}"))
            } else if let Some(problem) = envelope(401) {
                Some(problem)
            } else if reply.code().as_deref() != Some("UNAUTHORIZED")
                || reply.message().as_deref() != Some(message)
            {
                Some(format!("want code UNAUTHORIZED, message {message:?}"))
            } else {
                None
            }
        }
        Want::Refused(status) => {
            if reply.status != status {
                Some(format!("want {status} (past authorization)"))
            } else {
                envelope(status)
            }
        }
    };
    problem.map(|p| format!("{p}; got {}", reply.summary()))
}

fn check(route: Route) {
    let api = Api::start();
    let mut failures = Vec::new();
    for caller in CALLERS {
        let world = World::new(&api);
        let want = unauthenticated(caller).unwrap_or(match caller {
            Caller::Admin => route.want[0],
            Caller::Group => route.want[1],
            Caller::OtherGroup => route.want[2],
            Caller::Deployment => route.want[3],
            _ => route.want[4],
        });
        let request = (route.request)(&api, &world).auth(world.auth(&api, caller));
        let reply = api.send(&request);
        if let Some(problem) = mismatch(want, &reply) {
            failures.push(format!("{request}\n  as {caller:?}: {problem}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} callers got the wrong answer:\n{}",
        failures.len(),
        CALLERS.len(),
        failures.join("\n")
    );
}

macro_rules! matrix {
    ($($test:ident: $request:expr => $want:expr;)*) => {
        $(
            #[test]
            fn $test() {
                check(Route { request: $request, want: $want });
            }
        )*
    };
}

const ALL_OK: [Want; 5] = [Allowed(200); 5];

/// Only the admin gets `status`; everyone else 403 with `message`.
const fn admin_only(status: u16, message: &'static str) -> [Want; 5] {
    [
        Allowed(status),
        Forbidden(message),
        Forbidden(message),
        Forbidden(message),
        Forbidden(message),
    ]
}

/// The admin, the deployment's group and the deployment itself get `outcome`; the other
/// group and the other deployment 403 with `message`.
const fn group_or_self(outcome: Want, message: &'static str) -> [Want; 5] {
    [
        outcome,
        outcome,
        Forbidden(message),
        outcome,
        Forbidden(message),
    ]
}

fn deployment_path(world: &World, suffix: &str) -> String {
    format!("/v1/deployments/{}{suffix}", world.deployment.id)
}

fn lease_body(world: &World, session: &str) -> serde_json::Value {
    json!({"deploymentId": world.deployment.id, "session": session})
}

#[test]
fn health_needs_no_token() {
    let api = Api::start();
    let world = World::new(&api);
    for caller in CALLERS {
        let request = Request::get("/health").auth(world.auth(&api, caller));
        let reply = api.send(&request);
        assert_eq!(
            reply.status,
            200,
            "{request} as {caller:?}: {}",
            reply.summary()
        );
        assert_eq!(reply.json(), json!({"status": "healthy"}));
    }
}

matrix! {
    whoami: |_, _| Request::get("/v1/whoami") => ALL_OK;

    list_tokens: |_, _| Request::get("/v1/tokens") => admin_only(200, "Admin access required");

    delete_token: |api, w| {
        let victim = api.group_token(&w.other_group.id);
        let id = string(&api.token_record(&victim), "id");
        Request::delete(format!("/v1/tokens/{id}"))
    } => admin_only(204, "Admin access required");

    create_release: |_, _| Request::post("/v1/releases", e2e::api::release_body(&["local"]))
        => admin_only(201, "");

    list_releases: |_, _| Request::get("/v1/releases") => ALL_OK;

    latest_release: |_, _| Request::get("/v1/releases/latest") => ALL_OK;

    get_release: |_, w| Request::get(format!("/v1/releases/{}", w.release)) => ALL_OK;

    build_config: |_, _| Request::get("/v1/build-config?platform=local")
        => admin_only(200, "Build config requires write access");

    platforms: |_, _| Request::get("/v1/platforms")
        => admin_only(200, "Platforms list requires write access");

    create_deployment_group: |_, _| Request::post(
        "/v1/deployment-groups",
        json!({"name": unique("matrix-group")}),
    ) => admin_only(200, "");

    list_deployment_groups: |_, _| Request::get("/v1/deployment-groups") => ALL_OK;

    get_deployment_group: |_, w| Request::get(format!("/v1/deployment-groups/{}", w.group.id))
        => [
            Allowed(200),
            Allowed(200),
            Forbidden("Cannot read deployment group"),
            Forbidden("Cannot read deployment group"),
            Forbidden("Cannot read deployment group"),
        ];

    create_deployment_group_token: |_, w| {
        Request::post_empty(format!("/v1/deployment-groups/{}/tokens", w.group.id))
    } => admin_only(200, "Cannot mint tokens for this deployment group");

    // A group token creates in its own group whatever the body names.
    create_deployment: |_, w| Request::post(
        "/v1/deployments",
        json!({
            "name": unique("matrix"),
            "platform": "local",
            "deploymentGroupId": w.group.id,
            "stackSettings": {"deploymentModel": "pull"},
        }),
    ) => [
        Allowed(201),
        Allowed(201),
        Allowed(201),
        Forbidden("Deployment tokens cannot create deployments"),
        Forbidden("Deployment tokens cannot create deployments"),
    ];

    list_deployments: |_, _| Request::get("/v1/deployments") => [
        Allowed(200),
        Allowed(200),
        Allowed(200),
        Forbidden("Deployment tokens cannot list deployments"),
        Forbidden("Deployment tokens cannot list deployments"),
    ];

    get_deployment: |_, w| Request::get(deployment_path(w, ""))
        => group_or_self(Allowed(200), "Access denied");

    deployment_info: |_, w| Request::get(deployment_path(w, "/info"))
        => group_or_self(Allowed(200), "Access denied");

    delete_deployment: |_, w| Request::post(deployment_path(w, "/delete"), json!({"action": "cleanup"}))
        => admin_only(202, "Cannot delete deployment");

    retry_deployment: |api, w| {
        api.set_status(&w.deployment, "update-failed");
        Request::post_empty(deployment_path(w, "/retry"))
    } => group_or_self(Allowed(200), "Cannot retry deployment");

    redeploy_deployment: |_, w| Request::post_empty(deployment_path(w, "/redeploy"))
        => group_or_self(Allowed(200), "Cannot redeploy");

    // A group token registers (201), the admin gets the newest deployment and a deployment
    // token its own deployment (200).
    initialize: |_, _| Request::post(
        "/v1/initialize",
        json!({
            "name": unique("agent"),
            "platform": "local",
            "stackSettings": {"deploymentModel": "pull"},
            "initialDesiredRelease": "none",
        }),
    ) => [Allowed(200), Allowed(201), Allowed(201), Allowed(200), Allowed(200)];

    acquire_by_id: |_, w| Request::post(
        "/v1/sync/acquire",
        json!({"session": unique("s"), "deploymentModel": "pull", "deploymentIds": [w.deployment.id]}),
    ) => group_or_self(Allowed(200), "Access denied: cannot acquire these deployments");

    acquire_without_ids: |_, _| Request::post(
        "/v1/sync/acquire",
        json!({"session": unique("s"), "deploymentModel": "pull"}),
    ) => admin_only(200, "only workspace-scoped tokens can acquire without an id filter");

    reconcile: |_, w| Request::post(
        "/v1/sync/reconcile",
        json!({
            "deploymentId": w.deployment.id,
            "session": unique("s"),
            "state": state("pending", "local"),
        }),
    ) => group_or_self(Allowed(200), "Access denied");

    renew: |api, w| {
        let session = unique("lease");
        assert_eq!(api.acquire(&session, &w.deployment, "pull"), [w.deployment.id.as_str()]);
        Request::post("/v1/sync/renew", lease_body(w, &session))
    } => group_or_self(Allowed(200), "");

    release_lease: |api, w| {
        let session = unique("lease");
        assert_eq!(api.acquire(&session, &w.deployment, "pull"), [w.deployment.id.as_str()]);
        Request::post("/v1/sync/release", lease_body(w, &session))
    } => group_or_self(Allowed(200), "");

    agent_sync: |_, w| Request::post("/v1/sync", json!({"deploymentId": w.deployment.id}))
        => group_or_self(Allowed(200), "");

    // Group tokens only; past authorization the import is refused because the latest
    // release has no `aws` stack.
    stack_import: |_, w| Request::post("/v1/stack/import", stack_import_body(w))
        => [
            Forbidden("Stack import requires a deployment-group-scoped token"),
            Refused(400),
            Refused(400),
            Forbidden("Stack import requires a deployment-group-scoped token"),
            Forbidden("Stack import requires a deployment-group-scoped token"),
        ];

    // Past authorization: the deployment has no current release to mint for.
    mint_credentials: |_, w| Request::post(
        "/v1/credentials/mint",
        json!({"deploymentId": w.deployment.id, "resourceId": "api", "bindingName": "api-sa"}),
    ) => group_or_self(Refused(400), "");

    // Past authorization: remote bindings are for cloud platforms only.
    resolve_binding: |_, w| Request::post(
        "/v1/bindings/resolve",
        json!({"deploymentId": w.deployment.id, "resourceId": "api"}),
    ) => group_or_self(Refused(400), "");
}

fn stack_import_body(world: &World) -> serde_json::Value {
    json!({
        "setupImportFormatVersion": 1,
        "deploymentGroupToken": world.group.token,
        "deploymentName": unique("imported"),
        "resourcePrefix": "acme-prod",
        "platform": "aws",
        "region": "us-east-1",
        "setupTarget": "cloudformation:acme",
        "setupFingerprint": "fp-1",
        "setupFingerprintVersion": 1,
        "stackSettings": {},
        "resources": [{"id": "api", "type": "worker", "importData": {}}],
    })
}
