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
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        if let Some(value) = authorization {
            builder = builder.header("authorization", value);
        }
        let mut response = agent
            .run(builder.body(Vec::new()).expect("request"))
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

    let second = run(ctx.clone(), None).await;
    assert!(matches!(second, Err(Error::Lock(_))), "{second:?}");

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
    assert!(matches!(error, Error::PortInUse { .. }), "{error:?}");
}
