//! A worker's version: its runtime (`alien worker-runtime`, a host process of its own, which
//! speaks the worker runtime protocol with the app and takes pushed commands on its transport
//! port) and its app, started once the runtime's ports are bound, in the OCI runtime like any
//! workload but on the host's network, so that the protocol's loopback addresses hold. The
//! two are detached from deployd and from each other: a crash of one leaves the other to be
//! adopted or replaced.

use std::path::{Path, PathBuf};
use std::time::Duration;

use images::Image;
use launcher::{Network, Status, WorkloadSpec};
use serde_json::{Value, json};
use stack::Trigger;
use worker_runtime::config::TriggerSource;
use worker_runtime::{App, RuntimeConfig, RuntimeState};

use super::compute::{Compute, Version, blocking, free_port, platform_error, workload_id};
use crate::platform::{ResourceContext, ResourceError};

/// The runtime's workload directory inside a version's.
pub(super) const RUNTIME_DIR: &str = "runtime";
/// The runtime's own log, beside the app's output.
pub(super) const RUNTIME_LOG: &str = "runtime.log";
const RUNTIME_CONFIG: &str = "runtime.json";
const RUNTIME_STATE: &str = "runtime-state.json";
/// How long the runtime has to bind its ports.
const BIND_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the runtime, then the app, and waits until the app answers through the runtime.
pub(super) async fn start(
    compute: &Compute,
    ctx: &ResourceContext,
    image: &Image,
    version: &Version,
) -> Result<(), ResourceError> {
    let transport_port = version
        .port
        .ok_or_else(|| platform_error("a worker version needs a transport port"))?;
    let grpc_port = free_port().await?;
    // Where a plain image that never registers listens (`PORT`).
    let plain_port = free_port().await?;
    let timeout_seconds = ctx
        .config
        .get("timeoutSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(180);
    let config = RuntimeConfig {
        worker_id: ctx.resource_id.clone(),
        deployment_id: ctx.deployment_id.clone(),
        timeout_seconds,
        grpc_port,
        transport_port,
        plain_port: Some(plain_port),
        commands_token: ctx.secrets.get("ALIEN_COMMANDS_TOKEN").cloned(),
        app: App::External,
        stdout: version.dir.join("stdout.log"),
        stderr: version.dir.join("stderr.log"),
        state_file: version.dir.join(RUNTIME_STATE),
        triggers: trigger_sources(compute, ctx)?,
    };
    // What the runtime would refuse (a cron expression it cannot read) fails the step here,
    // for good: retrying cannot fix the release.
    config.check().map_err(|error| {
        ResourceError::fatal(
            "RESOURCE_CONFIG_INVALID",
            format!("Worker '{}': {error}", ctx.resource_id),
        )
    })?;
    let config_path = version.dir.join(RUNTIME_CONFIG);
    write_config(&config_path, &config).await?;
    let runtime = WorkloadSpec {
        id: workload_id(ctx, version, "runtime"),
        rootfs: PathBuf::from("/"),
        args: vec![
            compute.program().display().to_string(),
            "worker-runtime".into(),
            "--config".into(),
            config_path.display().to_string(),
        ],
        cwd: "/".into(),
        env: Vec::new(),
        mounts: Vec::new(),
        memory_limit_bytes: None,
        cpus: None,
        network: Network::Host,
        hostname: ctx.resource_id.clone(),
        hosts_entries: Vec::new(),
        stdout: version.dir.join(RUNTIME_LOG),
        stderr: version.dir.join(RUNTIME_LOG),
        state_dir: version.dir.join(RUNTIME_DIR),
    };
    let runtime = compute
        .launch(compute.host_launcher(), runtime)
        .await
        .map_err(|e| compute.failed(ctx, version, &format!("has no runtime: {}", e.message)))?;
    wait_bound(compute, ctx, version, &runtime).await?;

    let mut mounts = Vec::new();
    let mut given = compute.environment(ctx, image, false, &mut mounts);
    given.insert("ALIEN_TRANSPORT".into(), "local".into());
    given.insert("ALIEN_RUNTIME_SEND_OTLP".into(), "true".into());
    given.insert(
        "ALIEN_CURRENT_WORKER_BINDING_NAME".into(),
        ctx.resource_id.clone(),
    );
    given.insert(
        "ALIEN_WORKER_TIMEOUT_SECONDS".into(),
        timeout_seconds.to_string(),
    );
    let env = worker_runtime::app_env(&given, grpc_port, Some(plain_port));
    let app = WorkloadSpec {
        id: workload_id(ctx, version, "app"),
        rootfs: image.rootfs.clone(),
        args: Compute::command(ctx, None, image)?,
        cwd: image.config.working_dir.clone(),
        env: env.into_iter().collect(),
        mounts,
        memory_limit_bytes: ctx
            .config
            .get("memoryMb")
            .and_then(Value::as_u64)
            .map(|mb| mb << 20)
            .filter(|_| compute.isolated()),
        cpus: None,
        network: Network::Host,
        hostname: ctx.resource_id.clone(),
        hosts_entries: Vec::new(),
        stdout: version.dir.join("stdout.log"),
        stderr: version.dir.join("stderr.log"),
        state_dir: version.app_dir(),
    };
    let app = compute
        .launch(compute.launcher()?, app)
        .await
        .map_err(|e| compute.failed(ctx, version, &e.message))?;
    compute.wait_healthy(ctx, version, &app, None).await
}

/// The worker's triggers with where their queue and storage live; the cron record sits
/// beside the versions, so that every version shares it.
fn trigger_sources(
    compute: &Compute,
    ctx: &ResourceContext,
) -> Result<Vec<TriggerSource>, ResourceError> {
    let triggers: Vec<Trigger> = match ctx.config.get("triggers") {
        Some(triggers) => serde_json::from_value(triggers.clone())
            .map_err(|e| platform_error(format!("the worker's triggers are unreadable: {e}")))?,
        None => Vec::new(),
    };
    let dir = |kind: &str, id: &str| {
        compute
            .data_dir(&ctx.deployment_id, kind, id)
            .ok_or_else(|| platform_error(format!("a {kind} has no directory")))
    };
    triggers
        .into_iter()
        .map(|trigger| {
            Ok(match trigger {
                Trigger::Queue { queue } => TriggerSource::Queue {
                    dir: dir("queue", &queue.id)?,
                    queue: queue.id,
                },
                Trigger::Storage { storage, events } => TriggerSource::Storage {
                    dir: dir("storage", &storage.id)?,
                    storage: storage.id,
                    events,
                },
                Trigger::Schedule { cron } => TriggerSource::Schedule {
                    cron,
                    state_dir: compute
                        .resource_dir(&ctx.deployment_id, &ctx.resource_id)
                        .join("schedules"),
                },
            })
        })
        .collect()
}

/// The runtime's configuration holds the deployment's token: private to the service user.
async fn write_config(path: &Path, config: &RuntimeConfig) -> Result<(), ResourceError> {
    let bytes = serde_json::to_vec(config)
        .map_err(|e| platform_error(format!("cannot encode the runtime's configuration: {e}")))?;
    let path = path.to_path_buf();
    blocking(move || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| platform_error(format!("cannot create {}: {e}", dir.display())))?;
        }
        // 0600, as every file the durable write makes.
        plumbing::durable::replace(&path, &bytes)
            .map_err(|e| platform_error(format!("cannot write {}: {e}", path.display())))
    })
    .await
}

/// Waits until the runtime has bound its ports (it writes its state file then), so that the
/// app's first call finds the server.
async fn wait_bound(
    compute: &Compute,
    ctx: &ResourceContext,
    version: &Version,
    runtime: &launcher::Workload,
) -> Result<(), ResourceError> {
    let state = version.dir.join(RUNTIME_STATE);
    let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
    loop {
        if RuntimeState::read(&state).is_ok() {
            return Ok(());
        }
        let status = {
            let launcher = compute.host_launcher().clone();
            let runtime = runtime.clone();
            tokio::task::spawn_blocking(move || launcher.status(&runtime)).await
        };
        if !matches!(status, Ok(Ok(Status::Running { .. }))) {
            return Err(compute.failed(ctx, version, "lost its runtime before the app started"));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(compute.failed(ctx, version, "has a runtime that did not bind its ports"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A worker's outputs: its stable URL, and where commands are pushed when it takes them.
pub(super) fn outputs(ctx: &ResourceContext, endpoint: Option<Value>) -> Value {
    let mut outputs = json!({"type": "worker", "workerName": ""});
    if let Some(endpoint) = endpoint {
        let url = endpoint["url"].as_str().unwrap_or_default().to_owned();
        outputs["publicEndpoints"] = json!({"default": endpoint});
        if ctx
            .config
            .get("commandsEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            outputs["commandsPushTarget"] = json!(format!("{url}/_alien/commands"));
        }
    }
    outputs
}
