//! Compute resources on `local`: each version of a container, daemon or worker is a workload
//! of its own, started from the image's unpacked root in an OCI runtime (or as a plain
//! process where none can run), behind the resource's stable address. Containers and daemons
//! get a network namespace of their own; a worker's app shares the host's loopback with its
//! worker runtime, a process of its own per version (`worker.rs`).
//!
//! An update starts the new version beside the old one, waits until it answers, switches the
//! gateway to it and stops the old one once its requests in flight are answered. A version
//! that never answers is stopped and the old one keeps serving.
//!
//! What deployd must find again after a restart is in `compute/<id>/resource.json` under the
//! deployment's directory: the stable port and the active version, whose workloads the
//! launcher adopts from the version's directory (`v<n>/`).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use images::{Auth, Image, ImageStore};
use launcher::{Launcher, Mount, Network, Status, Workload, WorkloadSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::gateway::{Backend, Connector, Gateways};
use super::logs::{Shipper, Stream};
use super::netns::Namespace;
use super::worker;
use crate::platform::{Applied, ResourceContext, ResourceError};

/// How long a new version has to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an old version's requests in flight may take before it is stopped anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The grace period of a stop when the stack gives none.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Where a workload in its own network namespace reaches the manager: deployd listens there
/// inside the namespace and forwards to the manager's port.
const MANAGER_INSIDE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Where a workload in its own network reaches the agent's OTLP receiver.
const TELEMETRY_INSIDE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// Lines of a failed version's output quoted in the error.
const TAIL_LINES: usize = 20;
/// The workloads of a version, by directory: a worker's runtime, then every version's app.
const WORKLOAD_DIRS: [&str; 2] = [worker::RUNTIME_DIR, APP_DIR];
const APP_DIR: &str = "workload";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    stable_port: Option<u16>,
    active: Option<Version>,
    next_generation: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Version {
    generation: u64,
    /// Hash of everything the version was started with: the same key means nothing to do.
    key: String,
    pub(super) dir: PathBuf,
    /// The port the gateway connects to: the declared one inside the version's own network
    /// namespace, a worker runtime's transport port, or a port of its own on the host for a
    /// plain process (two versions of a plain process cannot share one). None for a daemon
    /// without endpoints.
    pub(super) port: Option<u16>,
    /// Whether the version has a network namespace of its own.
    #[serde(default)]
    private: bool,
}

impl Version {
    pub(super) fn app_dir(&self) -> PathBuf {
        self.dir.join(APP_DIR)
    }
}

/// What a compute resource asks for, read from its configuration.
pub(super) struct Wanted {
    image: String,
    command: Option<Vec<String>>,
    /// The declared port (container, daemon); none for a worker, whose app registers one.
    port: Option<u16>,
    health_path: Option<String>,
    grace: Duration,
    memory_bytes: Option<u64>,
    cpus: Option<f64>,
    persistent: Option<String>,
}

pub(super) fn platform_error(message: impl Into<String>) -> ResourceError {
    ResourceError::fatal("LOCAL_PLATFORM_ERROR", message)
}

fn config_error(message: impl Into<String>) -> ResourceError {
    ResourceError::fatal("RESOURCE_CONFIG_INVALID", message)
}

pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ResourceError> + Send + 'static,
) -> Result<T, ResourceError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(platform_error(format!("a blocking task stopped: {e}"))))
}

fn wanted(ctx: &ResourceContext) -> Result<Wanted, ResourceError> {
    let config = &ctx.config;
    let image = match config.pointer("/code/type").and_then(Value::as_str) {
        Some("image") => config
            .pointer("/code/image")
            .and_then(Value::as_str)
            .ok_or_else(|| config_error(format!("Resource '{}' names no image", ctx.resource_id)))?
            .to_owned(),
        _ => {
            return Err(config_error(format!(
                "Resource '{}' has source code, not an image: run 'alien build' first",
                ctx.resource_id
            )));
        }
    };
    let first_port = |pointer: &str| {
        config
            .pointer(pointer)
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
    };
    let port = if ctx.kind == "worker" {
        None
    } else {
        first_port("/publicEndpoints/0/port").or_else(|| first_port("/ports/0/port"))
    };
    let health_path = config.get("healthCheck").map(|check| {
        check
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("/health")
            .to_owned()
    });
    let grace = config
        .get("stopGracePeriodSeconds")
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_GRACE);
    Ok(Wanted {
        image,
        command: config
            .get("command")
            .and_then(|c| serde_json::from_value(c.clone()).ok()),
        port,
        health_path,
        grace,
        memory_bytes: config
            .pointer("/memory/desired")
            .and_then(Value::as_str)
            .and_then(parse_quantity),
        cpus: config
            .pointer("/cpu/desired")
            .and_then(Value::as_str)
            .and_then(|c| c.parse::<f64>().ok())
            .filter(|c| *c > 0.0),
        persistent: config
            .pointer("/persistentStorage/mountPath")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// `512Mi`, `1Gi`, `1000000`: bytes.
fn parse_quantity(text: &str) -> Option<u64> {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
    ];
    for (suffix, factor) in units {
        if let Some(number) = text.strip_suffix(suffix) {
            return number
                .trim()
                .parse::<f64>()
                .ok()
                .map(|n| (n * factor as f64) as u64);
        }
    }
    text.trim().parse().ok()
}

/// The compute side of the local driver.
pub struct Compute {
    root: PathBuf,
    images: Arc<ImageStore>,
    /// Starts the workloads: an OCI runtime, or plain processes; set once deployd has detected
    /// which ([`Compute::use_launcher`]). Detecting runs a probe container, which can take
    /// seconds, and recovery after a restart must not wait for it.
    launcher: OnceLock<Launcher>,
    /// Runs worker runtimes, which are host processes in every case. Also adopts, checks and
    /// stops every workload: those follow the backend each one recorded at its start, so they
    /// need no detection.
    host: Launcher,
    /// The `alien` executable, which runs worker runtimes.
    program: PathBuf,
    gateways: Arc<Gateways>,
    shipper: Arc<Shipper>,
    /// Where this machine reaches the manager's HTTP port: image pulls and the workloads'
    /// bridge go there.
    manager: SocketAddr,
    /// Where workloads send their own telemetry when not to the manager (the agent's OTLP
    /// receiver on this host).
    telemetry: Option<SocketAddr>,
    /// The bridges to host services this process serves for each workload in its own
    /// network.
    bridges: Mutex<HashMap<String, Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compute")
            .field("root", &self.root)
            .field("launcher", &self.launcher)
            .finish_non_exhaustive()
    }
}

/// What the compute side needs from deployd.
#[derive(Debug)]
pub struct ComputeParts {
    pub images: Arc<ImageStore>,
    pub program: PathBuf,
    pub gateways: Arc<Gateways>,
    pub shipper: Arc<Shipper>,
    /// Where this machine reaches the manager's HTTP port (deployd: its own host; an agent:
    /// the manager's address).
    pub manager: SocketAddr,
    /// The agent's OTLP receiver on this host, when workloads send their telemetry there.
    pub telemetry: Option<SocketAddr>,
}

impl Compute {
    pub fn new(root: PathBuf, parts: ComputeParts) -> Compute {
        Compute {
            root,
            images: parts.images,
            launcher: OnceLock::new(),
            host: Launcher::process("worker runtimes are host processes"),
            program: parts.program,
            gateways: parts.gateways,
            shipper: parts.shipper,
            manager: parts.manager,
            telemetry: parts.telemetry,
            bridges: Mutex::new(HashMap::new()),
        }
    }

    /// The backend new workloads start in, from now on; only the first call counts.
    pub fn use_launcher(&self, launcher: Launcher) {
        let _ = self.launcher.set(launcher);
    }

    /// The launcher that starts workloads; an error until it is known.
    pub(super) fn launcher(&self) -> Result<&Launcher, ResourceError> {
        self.launcher.get().ok_or_else(|| {
            ResourceError::retryable(
                "LOCAL_RUNTIME_UNKNOWN",
                "The container runtime is still being detected",
            )
        })
    }

    pub(super) fn host_launcher(&self) -> &Launcher {
        &self.host
    }

    pub(super) fn program(&self) -> &Path {
        &self.program
    }

    /// Where a compute resource keeps its versions and what outlives them.
    pub(super) fn resource_dir(&self, deployment_id: &str, id: &str) -> PathBuf {
        self.root.join(deployment_id).join("compute").join(id)
    }

    /// The directory of one of the deployment's storage, kv, vault or queue resources.
    pub(super) fn data_dir(&self, deployment_id: &str, kind: &str, id: &str) -> Option<PathBuf> {
        super::data_dir(&self.root, deployment_id, kind, id)
    }

    fn key(deployment_id: &str, id: &str) -> String {
        format!("{deployment_id}/{id}")
    }

    async fn load(&self, dir: &Path) -> Result<Record, ResourceError> {
        let path = dir.join("resource.json");
        blocking(move || match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| platform_error(format!("{} is unreadable: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Record::default()),
            Err(e) => Err(platform_error(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        })
        .await
    }

    async fn save(&self, dir: &Path, record: &Record) -> Result<(), ResourceError> {
        let path = dir.join("resource.json");
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| platform_error(format!("cannot encode {}: {e}", path.display())))?;
        blocking(move || {
            plumbing::durable::replace(&path, &bytes)
                .map_err(|e| platform_error(format!("cannot write {}: {e}", path.display())))
        })
        .await
    }

    /// The image, pulled from the manager's registry with the deployment's token.
    async fn pull(&self, ctx: &ResourceContext, reference: &str) -> Result<Image, ResourceError> {
        let token =
            ctx.deployment.deployment_token.clone().ok_or_else(|| {
                config_error("The deployment has no token to pull its images with")
            })?;
        let reference = self.local_reference(ctx, reference);
        let images = self.images.clone();
        blocking(move || {
            images
                .pull(&reference, &Auth::basic("deployment", token))
                .map_err(|e| {
                    let message = format!("Cannot pull {reference}: {e}");
                    // The registry is the manager's own: it restarts, and the step is retried.
                    if e.is_transient() {
                        ResourceError::retryable("IMAGE_PULL_FAILED", message)
                    } else {
                        platform_error(message)
                    }
                })
        })
        .await
    }

    /// A reference to the manager's own registry, by the address deployd reaches it at:
    /// releases name it by the manager's public URL, which may be a proxy's.
    fn local_reference(&self, ctx: &ResourceContext, reference: &str) -> String {
        let manager_host = ctx
            .deployment
            .manager_url
            .as_deref()
            .and_then(|url| url.split_once("://"))
            .map(|(_, rest)| rest.split('/').next().unwrap_or(rest).to_owned());
        let Some((host, rest)) = reference.split_once('/') else {
            return reference.to_owned();
        };
        let port = self.manager.port();
        let ours = Some(host) == manager_host.as_deref()
            || host == format!("localhost:{port}")
            || host == format!("127.0.0.1:{port}");
        if ours {
            format!("{}/{rest}", self.manager)
        } else {
            reference.to_owned()
        }
    }

    /// Makes a container, daemon or worker run as configured, behind its stable address.
    pub async fn apply(&self, ctx: &ResourceContext) -> Result<Applied, ResourceError> {
        let wanted = wanted(ctx)?;
        let dir = self.resource_dir(&ctx.deployment_id, &ctx.resource_id);
        {
            let dir = dir.clone();
            blocking(move || {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| platform_error(format!("cannot create {}: {e}", dir.display())))
            })
            .await?;
        }
        let mut record = self.load(&dir).await?;
        let image = self.pull(ctx, &wanted.image).await?;
        let key = version_key(ctx, &image);
        let serves_http = ctx.kind == "worker" || wanted.port.is_some();
        let stable_port = if serves_http {
            let opened = self
                .gateways
                .open(
                    &Self::key(&ctx.deployment_id, &ctx.resource_id),
                    record.stable_port,
                )
                .await
                .map_err(|e| platform_error(format!("cannot open the stable address: {e}")))?;
            Some(opened)
        } else {
            None
        };
        record.stable_port = stable_port;
        if let Some(active) = record.active.clone()
            && active.key == key
            && self.running(&active).await
        {
            // Already there: the step is redone (after a crash, say), or nothing changed.
            self.serve(ctx, &active).await?;
            self.save(&dir, &record).await?;
            return Ok(self.applied(ctx, stable_port, &active));
        }
        let generation = record.next_generation;
        record.next_generation += 1;
        self.save(&dir, &record).await?;
        let private = ctx.kind != "worker" && self.isolated();
        let port = match (ctx.kind.as_str(), wanted.port, private) {
            ("worker", _, _) => Some(free_port().await?),
            (_, Some(port), true) => Some(port),
            (_, Some(_), false) => Some(free_port().await?),
            (_, None, _) => None,
        };
        let version = Version {
            generation,
            key,
            dir: dir.join(format!("v{generation}")),
            port,
            private,
        };
        let started = if ctx.kind == "worker" {
            worker::start(self, ctx, &image, &version).await
        } else {
            self.start(ctx, &wanted, &image, &version).await
        };
        if let Err(error) = started {
            self.stop_version(&version, Duration::ZERO).await;
            return Err(error);
        }
        let previous = record.active.replace(version.clone());
        let replaced = self.serve(ctx, &version).await?;
        self.save(&dir, &record).await?;
        info!(deployment_id = %ctx.deployment_id, resource = %ctx.resource_id, generation, "version serving");
        if let Some(old) = previous {
            if let Some(backend) = replaced {
                backend.drained(DRAIN_TIMEOUT).await;
            }
            self.stop_version(&old, wanted.grace).await;
        }
        Ok(self.applied(ctx, stable_port, &version))
    }

    /// Whether every workload of the version runs.
    async fn running(&self, version: &Version) -> bool {
        let launcher = self.host.clone();
        let dir = version.dir.clone();
        blocking(move || {
            let mut any = false;
            for name in WORKLOAD_DIRS {
                let path = dir.join(name);
                if !path.exists() {
                    continue;
                }
                let workload = launcher
                    .adopt(&path)
                    .map_err(|e| platform_error(e.to_string()))?;
                if !matches!(launcher.status(&workload), Ok(Status::Running { .. })) {
                    return Ok(false);
                }
                any = true;
            }
            Ok(any)
        })
        .await
        .unwrap_or(false)
    }

    /// Points the gateway and the output shipper at `version` and bridges it to the manager;
    /// returns the backend the gateway served before.
    async fn serve(
        &self,
        ctx: &ResourceContext,
        version: &Version,
    ) -> Result<Option<Backend>, ResourceError> {
        self.follow_output(&ctx.deployment_id, &ctx.resource_id, version);
        let app = self.adopt(&version.app_dir()).await?;
        self.bridge(&app).await;
        match version.port {
            Some(port) => {
                let key = Self::key(&ctx.deployment_id, &ctx.resource_id);
                Ok(self.gateways.switch(&key, backend(&app, version, port)?))
            }
            None => Ok(None),
        }
    }

    fn follow_output(&self, deployment_id: &str, resource_id: &str, version: &Version) {
        for (file, stream) in [
            ("stdout.log", Stream::Stdout),
            ("stderr.log", Stream::Stderr),
        ] {
            self.shipper
                .follow(version.dir.join(file), deployment_id, resource_id, stream);
        }
    }

    pub(super) async fn adopt(&self, dir: &Path) -> Result<Workload, ResourceError> {
        let launcher = self.host.clone();
        let dir = dir.to_path_buf();
        blocking(move || {
            launcher
                .adopt(&dir)
                .map_err(|e| platform_error(e.to_string()))
        })
        .await
    }

    /// What a workload in its own namespace reaches on this host, and where inside: the
    /// manager at [`MANAGER_INSIDE`], and the agent's OTLP receiver at [`TELEMETRY_INSIDE`].
    fn routes(&self) -> Vec<(SocketAddr, SocketAddr)> {
        let mut routes = vec![(
            SocketAddr::from((MANAGER_INSIDE, self.manager.port())),
            self.manager,
        )];
        if let Some(telemetry) = self.telemetry {
            routes.push((
                SocketAddr::from((TELEMETRY_INSIDE, telemetry.port())),
                telemetry,
            ));
        }
        routes
    }

    /// Lets a workload in its own namespace reach the host's services of [`Compute::routes`].
    async fn bridge(&self, workload: &Workload) {
        if workload.network != Network::Private || workload.root_mode().is_none() {
            return;
        }
        if self.lock_bridges().contains_key(&workload.id) {
            return;
        }
        let mut tasks = Vec::new();
        for (inside, outside) in self.routes() {
            let opened = {
                let workload = workload.clone();
                tokio::task::spawn_blocking(move || launcher::listen_in(&workload, inside)).await
            };
            let listener = match opened {
                Ok(Ok(listener)) => listener,
                Ok(Err(error)) => {
                    warn!(workload = %workload.id, %error, %outside, "cannot bridge the workload to a host service");
                    continue;
                }
                Err(_) => continue,
            };
            let Ok(listener) = listener
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(listener))
            else {
                continue;
            };
            tasks.push(tokio::spawn(async move {
                while let Ok((mut inside, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        if let Ok(mut outside) = TcpStream::connect(outside).await {
                            let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
                        }
                    });
                }
            }));
        }
        self.lock_bridges().insert(workload.id.clone(), tasks);
    }

    fn lock_bridges(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<JoinHandle<()>>>> {
        self.bridges.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a container's or daemon's version and waits until it answers.
    async fn start(
        &self,
        ctx: &ResourceContext,
        wanted: &Wanted,
        image: &Image,
        version: &Version,
    ) -> Result<(), ResourceError> {
        let spec = self.spec(ctx, wanted, image, version)?;
        let workload = self
            .launch(self.launcher()?, spec)
            .await
            .map_err(|e| self.failed(ctx, version, &e.message))?;
        self.wait_healthy(ctx, version, &workload, wanted.health_path.as_deref())
            .await
    }

    /// Creates the spec's mount sources and starts it.
    pub(super) async fn launch(
        &self,
        launcher: &Launcher,
        spec: WorkloadSpec,
    ) -> Result<Workload, ResourceError> {
        let launcher = launcher.clone();
        blocking(move || {
            for dir in spec.mounts.iter().map(|m| m.host.clone()) {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| platform_error(format!("cannot create {}: {e}", dir.display())))?;
            }
            launcher
                .start(&spec)
                .map_err(|e| platform_error(format!("cannot start: {e}")))
        })
        .await
    }

    /// The image's command, or the stack's.
    pub(super) fn command(
        ctx: &ResourceContext,
        wanted_command: Option<&Vec<String>>,
        image: &Image,
    ) -> Result<Vec<String>, ResourceError> {
        let args: Vec<String> = match wanted_command {
            Some(command) => command.clone(),
            None => image
                .config
                .entrypoint
                .iter()
                .chain(image.config.cmd.iter())
                .cloned()
                .collect(),
        };
        if args.is_empty() {
            return Err(config_error(format!(
                "Resource '{}': the image has no command and the stack gives none",
                ctx.resource_id
            )));
        }
        Ok(args)
    }

    /// The environment every workload of the resource starts with: the image's, the
    /// resource's, its bindings and its secrets.
    pub(super) fn environment(
        &self,
        ctx: &ResourceContext,
        image: &Image,
        private: bool,
        mounts: &mut Vec<Mount>,
    ) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for pair in &image.config.env {
            if let Some((name, value)) = pair.split_once('=') {
                env.insert(name.to_owned(), value.to_owned());
            }
        }
        if let Some(environment) = ctx.config.get("environment").and_then(Value::as_object) {
            for (name, value) in environment {
                if let Some(value) = value.as_str() {
                    env.insert(name.clone(), value.to_owned());
                }
            }
        }
        env.insert("ALIEN_DEPLOYMENT_TYPE".into(), "local".into());
        let deployment_dir = self.root.join(&ctx.deployment_id);
        for (name, binding) in &ctx.bindings {
            let Ok(value) = serde_json::from_str::<Value>(binding) else {
                continue;
            };
            let value = if self.isolated() {
                mount_binding(value, &deployment_dir, private, mounts)
            } else {
                value
            };
            env.insert(name.clone(), value.to_string());
        }
        for (name, value) in &ctx.secrets {
            env.insert(name.clone(), value.clone());
        }
        if private {
            // The host's services, as the workload reaches them from inside its namespace.
            let mut rewrites = Vec::new();
            if let Some(manager) = ctx.deployment.manager_for_workloads() {
                rewrites.push((
                    manager.to_owned(),
                    format!("http://{MANAGER_INSIDE}:{}", self.manager.port()),
                ));
            }
            if let Some(telemetry) = self.telemetry {
                rewrites.push((
                    format!("http://{telemetry}"),
                    format!("http://{TELEMETRY_INSIDE}:{}", telemetry.port()),
                ));
            }
            for value in env.values_mut() {
                for (outside, inside) in &rewrites {
                    if let Some(rest) = value.strip_prefix(outside.as_str()) {
                        *value = format!("{inside}{rest}");
                        break;
                    }
                }
            }
        }
        env
    }

    /// The launch of one container or daemon version.
    fn spec(
        &self,
        ctx: &ResourceContext,
        wanted: &Wanted,
        image: &Image,
        version: &Version,
    ) -> Result<WorkloadSpec, ResourceError> {
        let args = Self::command(ctx, wanted.command.as_ref(), image)?;
        let mut mounts = Vec::new();
        let mut env = self.environment(ctx, image, version.private, &mut mounts);
        // The names a worker's runtime loads from the vault; a container or daemon has its
        // secrets' values already. It stays in the configuration, so a new value is an update.
        env.remove("ALIEN_SECRETS");
        if ctx.kind == "container" {
            env.insert(
                "ALIEN_CURRENT_CONTAINER_BINDING_NAME".into(),
                ctx.resource_id.clone(),
            );
        }
        if let Some(port) = version.port {
            env.insert("PORT".into(), port.to_string());
        }
        if let Some(mount_path) = &wanted.persistent {
            mounts.push(Mount {
                host: self
                    .root
                    .join(&ctx.deployment_id)
                    .join("container-volumes")
                    .join(&ctx.resource_id),
                target: mount_path.clone(),
                read_only: false,
            });
        }
        Ok(WorkloadSpec {
            id: workload_id(ctx, version, "app"),
            rootfs: image.rootfs.clone(),
            args,
            cwd: image.config.working_dir.clone(),
            env: env.into_iter().collect(),
            mounts,
            memory_limit_bytes: wanted.memory_bytes,
            cpus: wanted.cpus,
            network: if version.private {
                Network::Private
            } else {
                Network::Host
            },
            hostname: ctx.resource_id.clone(),
            hosts_entries: Vec::new(),
            stdout: version.dir.join("stdout.log"),
            stderr: version.dir.join("stderr.log"),
            state_dir: version.app_dir(),
        })
    }

    /// Whether workloads run in the OCI runtime (with namespaces and the image's root).
    pub(super) fn isolated(&self) -> bool {
        self.launcher
            .get()
            .is_some_and(|l| matches!(l.backend(), launcher::Backend::Oci { .. }))
    }

    /// Waits until the version answers on its port (an HTTP answer below 500, or a 2xx or
    /// 3xx from the stack's health check path), or, without a port, stays up for a second.
    pub(super) async fn wait_healthy(
        &self,
        ctx: &ResourceContext,
        version: &Version,
        app: &Workload,
        health_path: Option<&str>,
    ) -> Result<(), ResourceError> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let settle = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            if !self.running(version).await {
                let code = self.exit_code(app).await;
                let why = match code {
                    Some(code) => format!("exited with code {code} before it answered"),
                    None => "exited before it answered".to_owned(),
                };
                return Err(self.failed(ctx, version, &why));
            }
            let healthy = match version.port {
                Some(port) => {
                    probe(
                        app,
                        version,
                        port,
                        health_path.unwrap_or("/"),
                        health_path.is_some(),
                    )
                    .await
                }
                None => tokio::time::Instant::now() >= settle,
            };
            if healthy {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.failed(
                    ctx,
                    version,
                    &format!("did not answer within {}s", START_TIMEOUT.as_secs()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn exit_code(&self, workload: &Workload) -> Option<i32> {
        let launcher = self.host.clone();
        let workload = workload.clone();
        match tokio::task::spawn_blocking(move || launcher.status(&workload)).await {
            Ok(Ok(Status::Exited { code })) => code,
            _ => None,
        }
    }

    /// The error of a version that did not come up, with the end of its output.
    pub(super) fn failed(
        &self,
        ctx: &ResourceContext,
        version: &Version,
        why: &str,
    ) -> ResourceError {
        let mut tail = Vec::new();
        for file in ["stdout.log", "stderr.log", worker::RUNTIME_LOG] {
            if let Ok(text) = std::fs::read_to_string(version.dir.join(file)) {
                tail.extend(text.lines().map(str::to_owned));
            }
        }
        let start = tail.len().saturating_sub(TAIL_LINES);
        let output = tail[start..].join("\n");
        platform_error(format!(
            "{} '{}' (version {}) {why}. Last output:\n{output}",
            ctx.kind, ctx.resource_id, version.generation
        ))
    }

    /// Stops every workload of a version, a worker's runtime first (it drains its commands),
    /// and removes the version's directory.
    pub(super) async fn stop_version(&self, version: &Version, grace: Duration) {
        self.shipper.forget_under(&version.dir);
        let launcher = self.host.clone();
        let dir = version.dir.clone();
        let stopped = tokio::task::spawn_blocking(move || {
            let ids = stop_workloads(&launcher, &dir, grace)?;
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(ids),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ids),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        match stopped {
            Ok(Ok(ids)) => {
                let mut bridges = self.lock_bridges();
                for id in ids {
                    for task in bridges.remove(&id).into_iter().flatten() {
                        task.abort();
                    }
                }
            }
            Ok(Err(error)) => {
                warn!(dir = %version.dir.display(), %error, "cannot stop a version");
            }
            Err(_) => {}
        }
    }

    fn applied(
        &self,
        ctx: &ResourceContext,
        stable_port: Option<u16>,
        version: &Version,
    ) -> Applied {
        let endpoint = stable_port.map(|port| {
            json!({
                "url": format!("http://localhost:{port}"),
                "host": "localhost",
                "protocol": "http",
                "port": port,
            })
        });
        let outputs = match ctx.kind.as_str() {
            "worker" => worker::outputs(ctx, endpoint),
            "container" => {
                let mut outputs = json!({
                    "type": "container",
                    "name": ctx.resource_id,
                    "status": "running",
                    "currentReplicas": 1,
                    "desiredReplicas": 1,
                    "internalDns": format!("{}.svc", ctx.resource_id),
                    "replicas": [],
                });
                if let Some(endpoint) = &endpoint {
                    let map: serde_json::Map<String, Value> = ctx
                        .config
                        .get("publicEndpoints")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e.get("name")?.as_str())
                        .map(|name| (name.to_owned(), endpoint.clone()))
                        .collect();
                    if !map.is_empty() {
                        outputs["publicEndpoints"] = Value::Object(map);
                    }
                }
                outputs
            }
            _ => {
                let mut outputs =
                    json!({"type": "daemon", "daemonName": ctx.resource_id, "running": true});
                if let Some(endpoint) = endpoint {
                    outputs["publicEndpoints"] = json!({"default": endpoint});
                }
                outputs
            }
        };
        Applied {
            outputs: Some(outputs),
            internal: Some(json!({
                "stablePort": stable_port,
                "version": version.generation,
                "backend": if self.isolated() { "oci" } else { "process" },
            })),
        }
    }

    /// Stops every version of a resource and closes its stable address.
    pub async fn delete(&self, ctx: &ResourceContext) -> Result<(), ResourceError> {
        let dir = self.resource_dir(&ctx.deployment_id, &ctx.resource_id);
        let record = self.load(&dir).await?;
        self.gateways
            .close(&Self::key(&ctx.deployment_id, &ctx.resource_id));
        let grace = wanted(ctx).map(|w| w.grace).unwrap_or(DEFAULT_GRACE);
        if let Some(active) = record.active {
            self.stop_version(&active, grace).await;
        }
        self.sweep(&dir, None).await;
        blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(platform_error(format!(
                "cannot remove {}: {e}",
                dir.display()
            ))),
        })
        .await
    }

    /// Checks the active version and starts a fresh one when it died or stopped answering.
    pub async fn heal(&self, ctx: &ResourceContext) -> Result<Applied, ResourceError> {
        let dir = self.resource_dir(&ctx.deployment_id, &ctx.resource_id);
        let mut record = self.load(&dir).await?;
        if let Some(active) = record.active.clone()
            && self.running(&active).await
        {
            let healthy = match active.port {
                Some(port) => match self.adopt(&active.app_dir()).await {
                    Ok(app) => probe(&app, &active, port, "/", false).await,
                    Err(_) => false,
                },
                None => true,
            };
            if healthy {
                self.serve(ctx, &active).await?;
                return Ok(self.applied(ctx, record.stable_port, &active));
            }
        }
        warn!(deployment_id = %ctx.deployment_id, resource = %ctx.resource_id, "not running or not answering; starting it again");
        if let Some(active) = record.active.as_mut() {
            // A fresh version replaces it, as an update would.
            active.key.clear();
        }
        self.save(&dir, &record).await?;
        self.apply(ctx).await
    }

    /// Stops every version directory under `dir` but `keep`: what a step interrupted by a
    /// crash started and never switched to.
    async fn sweep(&self, dir: &Path, keep: Option<&Path>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_version = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix('v'))
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if is_version && Some(path.as_path()) != keep {
                let version = Version {
                    generation: 0,
                    key: String::new(),
                    dir: path,
                    port: None,
                    private: false,
                };
                self.stop_version(&version, Duration::ZERO).await;
            }
        }
    }

    /// Stops every version of every deployment, `grace` each (they are unreachable without
    /// deployd's gateways anyway); their records stay, so the next start brings them back.
    pub async fn stop_all(&self, grace: Duration) {
        let mut versions = Vec::new();
        for (_, _, resource) in self.resource_dirs() {
            let Ok(record) = self.load(&resource).await else {
                continue;
            };
            versions.extend(record.active);
        }
        futures_util::future::join_all(versions.iter().map(|version| async move {
            self.shipper.forget_under(&version.dir);
            let launcher = self.host.clone();
            let dir = version.dir.clone();
            let stopped =
                tokio::task::spawn_blocking(move || stop_workloads(&launcher, &dir, grace)).await;
            if let Ok(Err(error)) = stopped {
                warn!(dir = %version.dir.display(), %error, "cannot stop a version");
            }
        }))
        .await;
    }

    /// Every `<deployment>/compute/<resource>` directory: the deployment's id, the
    /// resource's id, the directory.
    fn resource_dirs(&self) -> Vec<(String, String, PathBuf)> {
        let Ok(deployments) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for deployment in deployments.flatten() {
            let deployment_id = deployment.file_name().to_string_lossy().into_owned();
            let Ok(resources) = std::fs::read_dir(deployment.path().join("compute")) else {
                continue;
            };
            for resource in resources.flatten() {
                let id = resource.file_name().to_string_lossy().into_owned();
                found.push((deployment_id.clone(), id, resource.path()));
            }
        }
        found
    }

    /// After a restart of deployd: every active version behind its stable address again, and
    /// whatever an interrupted step started and never switched to, stopped.
    pub async fn recover(&self) {
        for (deployment_id, id, dir) in self.resource_dirs() {
            let Ok(record) = self.load(&dir).await else {
                continue;
            };
            let keep = record.active.as_ref().map(|a| a.dir.clone());
            self.sweep(&dir, keep.as_deref()).await;
            let Some(active) = record.active else {
                continue;
            };
            self.follow_output(&deployment_id, &id, &active);
            let Ok(app) = self.adopt(&active.app_dir()).await else {
                continue;
            };
            self.bridge(&app).await;
            if let Some(port) = active.port {
                let key = Self::key(&deployment_id, &id);
                match self.gateways.open(&key, record.stable_port).await {
                    Ok(_) => {
                        if let Ok(backend) = backend(&app, &active, port) {
                            self.gateways.switch(&key, backend);
                        }
                    }
                    Err(error) => warn!(%key, %error, "cannot reopen the stable address"),
                }
            }
        }
    }
}

/// Stops the workloads of the version in `dir`, a worker's runtime first (it drains its
/// commands); returns their ids. Blocking.
fn stop_workloads(launcher: &Launcher, dir: &Path, grace: Duration) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    for name in WORKLOAD_DIRS {
        if let Ok(workload) = launcher.adopt(&dir.join(name)) {
            launcher.stop(&workload, grace).map_err(|e| e.to_string())?;
            ids.push(workload.id);
        }
    }
    Ok(ids)
}

/// A host-wide unique name for one workload of a version (`app` or `runtime`).
pub(super) fn workload_id(ctx: &ResourceContext, version: &Version, role: &str) -> String {
    format!(
        "{}-{}-v{}-{role}",
        ctx.deployment_id, ctx.resource_id, version.generation
    )
}

/// A binding as the workload sees it. In its own namespace (containers, daemons) a linked
/// directory is mounted at `/mnt/<kind>/<id>` and the binding says so; a worker's app shares
/// the host's paths, so each directory is mounted where it is.
fn mount_binding(
    mut binding: Value,
    deployment_dir: &Path,
    private: bool,
    mounts: &mut Vec<Mount>,
) -> Value {
    for field in ["storagePath", "dataDir", "queuePath"] {
        let Some(path) = binding
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            continue;
        };
        let host = PathBuf::from(path.trim_start_matches("file://").trim_end_matches('/'));
        if !host.starts_with(deployment_dir) {
            continue;
        }
        let target = if private {
            let kind = host
                .parent()
                .and_then(Path::file_name)
                .map(|k| k.to_string_lossy().into_owned())
                .unwrap_or_default();
            let id = host
                .file_name()
                .map(|i| i.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("/mnt/{kind}/{id}")
        } else {
            host.display().to_string()
        };
        mounts.push(Mount {
            host,
            target: target.clone(),
            read_only: false,
        });
        binding[field] = Value::String(if field == "storagePath" {
            format!("file://{target}/")
        } else {
            target
        });
    }
    binding
}

/// Everything a version runs with, hashed: the same key means the running version is right.
fn version_key(ctx: &ResourceContext, image: &Image) -> String {
    let mut hash = Sha256::new();
    hash.update(image.digest.as_bytes());
    hash.update(ctx.config.to_string().as_bytes());
    for (name, value) in ctx.bindings.iter().chain(ctx.secrets.iter()) {
        hash.update(format!("{name}={value}\n").as_bytes());
    }
    hex::encode(hash.finalize())
}

/// A free port on 127.0.0.1.
pub(super) async fn free_port() -> Result<u16, ResourceError> {
    let no_port =
        |e: std::io::Error| ResourceError::retryable("NO_FREE_PORTS", format!("no free port: {e}"));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(no_port)?;
    listener.local_addr().map(|a| a.port()).map_err(no_port)
}

/// How the gateway reaches `port` of a version: on the host, or inside its namespace.
fn backend(app: &Workload, version: &Version, port: u16) -> Result<Backend, ResourceError> {
    if !version.private {
        return Ok(Backend::at(SocketAddr::from((Ipv4Addr::LOCALHOST, port))));
    }
    let namespace = Arc::new(
        Namespace::of(app.pid)
            .map_err(|e| platform_error(format!("cannot enter {}'s network: {e}", app.id)))?,
    );
    let connect: Connector = Arc::new(move || {
        let namespace = namespace.clone();
        Box::pin(async move { namespace.connect(port).await })
    });
    Ok(Backend::new(connect))
}

/// One HTTP request to the version: healthy when it answers (below 500; 2xx or 3xx when
/// `strict`, for the stack's own health check).
pub(super) async fn probe(
    app: &Workload,
    version: &Version,
    port: u16,
    path: &str,
    strict: bool,
) -> bool {
    let connected = if version.private {
        match Namespace::of(app.pid) {
            Ok(namespace) => namespace.connect(port).await,
            Err(e) => Err(e),
        }
    } else {
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await
    };
    let Ok(mut stream) = connected else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    match tokio::time::timeout(Duration::from_secs(2), exchange).await {
        Ok(Ok(head)) => {
            let status = std::str::from_utf8(&head[9..12])
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .unwrap_or(0);
            if strict {
                (200..400).contains(&status)
            } else {
                (100..500).contains(&status) && status != 503
            }
        }
        _ => false,
    }
}
