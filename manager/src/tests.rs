//! [`run`] over real sockets: the listener handed over, the sidecars' health, the data
//! directory's lock, and the wire of the routes this crate serves.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use plumbing::{Config, DataDir};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;

/// One request with the blocking client, off the runtime; returns the status and the body.
async fn request(
    method: &'static str,
    url: String,
    authorization: Option<String>,
) -> (u16, String) {
    send(method, url, authorization, None).await
}

/// [`request`] with an optional JSON body.
async fn send(
    method: &'static str,
    url: String,
    authorization: Option<String>,
    body: Option<Value>,
) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        if let Some(value) = authorization {
            builder = builder.header("authorization", value);
        }
        let bytes = match body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                body.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let mut response = agent
            .run(builder.body(bytes).expect("request"))
            .expect("response");
        let body = response.body_mut().read_to_string().expect("body");
        (response.status().as_u16(), body)
    })
    .await
    .expect("joined")
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).expect("JSON body")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_manager_serves_its_routes_and_stops_when_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.database.state_dir = Some(dir.path().to_path_buf());
    let ctx = DaemonContext {
        config: Arc::new(config),
        data: DataDir::new(dir.path()),
        shutdown: CancellationToken::new(),
    };

    // Bootstrapped beforehand, so that the run below finds the token and prints nothing.
    let token = {
        let store = store::Store::open(ctx.config.database_path())
            .await
            .expect("open");
        bootstrap::admin_token(&store, dir.path(), ctx.config.base_url(), std::io::sink())
            .await
            .expect("bootstrap")
            .expect("new token")
    };

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let manager = tokio::spawn(run(ctx.clone(), Some(listener)));

    let (status, body) = request("GET", format!("{base}/health"), None).await;
    assert_eq!(status, 503, "{body}");
    let body = json(&body);
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["daemons"]["manager"], "ready");
    for daemon in Daemon::SIDECARS {
        let state = body["daemons"][daemon.name()].as_str().expect("a status");
        assert!(state.starts_with("unavailable: "), "{daemon}: {state}");
        assert!(
            !state.contains(dir.path().to_str().expect("utf-8")),
            "{state}"
        );
    }

    for daemon in Daemon::SIDECARS {
        let ctx = ctx.clone();
        tokio::spawn(
            async move { plumbing::uds::serve_sidecar(&ctx, daemon, Router::new()).await },
        );
    }
    let mut healthy = None;
    for _ in 0..100 {
        let answer = request("GET", format!("{base}/health"), None).await;
        if answer.0 == 200 {
            healthy = Some(answer.1);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(healthy.as_deref(), Some(r#"{"status":"healthy"}"#));

    assert_eq!(
        request("GET", format!("{base}/nope"), None).await,
        (404, String::new())
    );
    assert_eq!(
        request("POST", format!("{base}/v1/whoami"), None).await,
        (405, String::new())
    );

    let (status, body) = request("GET", format!("{base}/v1/whoami"), None).await;
    assert_eq!(status, 401);
    assert_eq!(
        json(&body),
        json!({
            "code": "UNAUTHORIZED",
            "message": "Authentication required",
            "context": {"reason": "Authentication required"},
            "retryable": false,
            "internal": false,
            "httpStatusCode": 401
        })
    );
    let (status, body) = request(
        "GET",
        format!("{base}/v1/whoami"),
        Some("Bearer ax_admin_00000000000000000000000000000000".into()),
    )
    .await;
    assert_eq!(
        (status, json(&body)["message"].clone()),
        (401, json!("Invalid token"))
    );

    let (status, body) = request(
        "GET",
        format!("{base}/v1/whoami"),
        Some(format!("Bearer {}", token.expose())),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let body = json(&body);
    assert_eq!(body["kind"], "serviceAccount");
    assert_eq!(body["role"], "workspace.admin");
    assert_eq!(body["scope"], json!({"type": "workspace"}));

    // A deployment's read looks its token up in the same read as the deployment; a path that
    // is not UTF-8 must still be reported only to a caller with a valid token.
    let bad_path = format!("{base}/v1/deployments/%FF");
    let message = |(status, body): (u16, String)| (status, json(&body)["message"].clone());
    assert_eq!(
        message(request("GET", bad_path.clone(), None).await),
        (401, json!("Authentication required"))
    );
    assert_eq!(
        message(request("GET", bad_path.clone(), Some("Bearer nope".into())).await),
        (401, json!("Invalid token"))
    );
    let admin = Some(format!("Bearer {}", token.expose()));
    assert_eq!(
        message(request("GET", bad_path, admin.clone()).await),
        (400, json!("Invalid URL: Invalid UTF-8 in `id`"))
    );
    assert_eq!(
        message(request("GET", format!("{base}/v1/deployments/dep_x"), admin).await),
        (404, json!("Deployment 'dep_x' not found"))
    );

    let second = run(ctx.clone(), None).await;
    assert!(matches!(second, Err(StartError::Lock(_))), "{second:?}");

    ctx.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), manager)
        .await
        .expect("stopped in time")
        .expect("joined")
        .expect("clean stop");
}

/// An agent's life over the socket: onboarded with a group token, registered by
/// `initialize`, reporting through `sync`, and given a new release as its target.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_registers_reports_and_receives_a_release() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.database.state_dir = Some(dir.path().to_path_buf());
    let ctx = DaemonContext {
        config: Arc::new(config),
        data: DataDir::new(dir.path()),
        shutdown: CancellationToken::new(),
    };
    let admin = {
        let store = store::Store::open(ctx.config.database_path())
            .await
            .expect("open");
        let token =
            bootstrap::admin_token(&store, dir.path(), ctx.config.base_url(), std::io::sink())
                .await
                .expect("bootstrap")
                .expect("new token");
        Some(format!("Bearer {}", token.expose()))
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let manager = tokio::spawn(run(ctx.clone(), Some(listener)));
    let call = |method, path: &str, auth: &Option<String>, body: Value| {
        send(method, format!("{base}{path}"), auth.clone(), Some(body))
    };

    let (status, group) = call(
        "POST",
        "/v1/deployment-groups",
        &admin,
        json!({"name": "fleet"}),
    )
    .await;
    assert_eq!(status, 200, "{group}");
    let group = json(&group);
    let group_id = group["id"].as_str().expect("id");
    let (status, minted) = send(
        "POST",
        format!("{base}/v1/deployment-groups/{group_id}/tokens"),
        admin.clone(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{minted}");
    let group_token = Some(format!(
        "Bearer {}",
        json(&minted)["token"].as_str().expect("token")
    ));

    let register = json!({"name": "edge-1", "initialDesiredRelease": "active"});
    let (status, first) = call("POST", "/v1/initialize", &group_token, register.clone()).await;
    assert_eq!(status, 201, "{first}");
    let first = json(&first);
    assert_eq!(first["deploymentModel"], "pull", "kubernetes by default");
    let (status, again) = call("POST", "/v1/initialize", &group_token, register).await;
    assert_eq!(status, 200, "{again}");
    let again = json(&again);
    assert_eq!(again["deploymentId"], first["deploymentId"]);
    assert_ne!(again["token"], first["token"], "a fresh token each time");
    let id = first["deploymentId"].as_str().expect("id").to_owned();
    let agent = Some(format!(
        "Bearer {}",
        again["token"].as_str().expect("token")
    ));

    let running = json!({"status": "running", "platform": "kubernetes", "protocolVersion": 1,
                         "stackState": {"platform": "kubernetes", "resources": {}, "resourcePrefix": "e"}});
    let (status, synced) = call(
        "POST",
        "/v1/sync",
        &agent,
        json!({"deploymentId": id, "currentState": running}),
    )
    .await;
    assert_eq!(status, 200, "{synced}");
    assert_eq!(
        json(&synced),
        json!({"commandsUrl": format!("{}/v1", ctx.config.base_url())})
    );

    let release = json!({"projectId": "default", "stack": {"kubernetes": {"id": "app", "resources": {
        "api": {"config": {"type": "container", "id": "api", "permissions": "execution",
                           "code": {"type": "image", "image": "localhost/artifacts/default:api"},
                           "links": [], "ports": [{"port": 8080}],
                           "cpu": {"min": "0.1", "desired": "0.1"},
                           "memory": {"min": "64Mi", "desired": "64Mi"}},
                "lifecycle": "live", "dependencies": []}}}}});
    let (status, created) = call("POST", "/v1/releases", &admin, release).await;
    assert_eq!(status, 201, "{created}");
    let release_id = json(&created)["id"].as_str().expect("id").to_owned();

    let (status, synced) = call("POST", "/v1/sync", &agent, json!({"deploymentId": id})).await;
    assert_eq!(status, 200, "{synced}");
    let target = &json(&synced)["target"];
    assert_eq!(
        target["releaseInfo"]["releaseId"],
        release_id.as_str(),
        "{synced}"
    );
    assert_eq!(target["releaseInfo"]["stack"]["id"], "app");
    assert_eq!(target["config"]["deploymentName"], "edge-1");
    assert_eq!(
        target["config"]["managerUrl"],
        ctx.config.base_url().as_str()
    );
    assert_eq!(
        target["config"]["deploymentToken"]
            .as_str()
            .map(|t| format!("Bearer {t}")),
        agent,
        "the caller's own bearer"
    );

    ctx.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), manager)
        .await
        .expect("stopped in time")
        .expect("joined")
        .expect("clean stop");
}

#[tokio::test]
async fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let config = plumbing::config::ServerConfig {
        host: "127.0.0.1".into(),
        port: taken.local_addr().expect("addr").port(),
        ..Default::default()
    };
    let error = server::listen(&config, None).await.expect_err("in use");
    assert!(matches!(error, StartError::PortInUse { .. }), "{error:?}");
}
