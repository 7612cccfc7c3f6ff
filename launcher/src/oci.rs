//! The OCI backend: a bundle in the state directory run detached by `runc` or `crun`, with
//! the runtime's own state in the state directory too (`--root`), so a workload is found
//! from its state directory alone.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use serde_json::{Value, json};

use crate::error::{Error, IoContext, Result};
use crate::record::{RecordedBackend, RootMode, Workload, write_durably};
use crate::spec::{Network, WorkloadSpec};
use crate::{Status, files, rootpath};

const BUNDLE: &str = "bundle";
const UPPER: &str = "upper";
const WORK: &str = "work";
const RUNTIME_ROOT: &str = "runtime";
const RUNTIME_LOG: &str = "runtime.log";
const HOSTS: &str = "hosts";
const PID_FILE: &str = "pid";
/// Everything `start` creates besides the record, removed by `stop`.
const CREATED: [&str; 7] = [
    BUNDLE,
    UPPER,
    WORK,
    RUNTIME_ROOT,
    RUNTIME_LOG,
    HOSTS,
    PID_FILE,
];
/// Without these the runtime would create them (and device nodes) in the root, which a
/// read-only root shares with every workload of the image.
const REQUIRED_MOUNT_POINTS: [&str; 2] = ["/proc", "/dev"];
/// The CFS period the CPU quota is a share of.
const CPU_PERIOD_US: u64 = 100_000;

/// One OCI runtime binary and the state root it keeps containers in.
struct Runtime<'a> {
    binary: &'a Path,
    state_dir: &'a Path,
}

/// The OCI runtime, run with [`crate::RUNTIME_PATH`] and nothing else of the caller's
/// environment.
pub(crate) fn runtime_command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    command.env_clear().env("PATH", crate::RUNTIME_PATH);
    command
}

impl Runtime<'_> {
    fn command(&self) -> Command {
        let mut command = runtime_command(self.binary);
        command
            .arg("--root")
            .arg(self.state_dir.join(RUNTIME_ROOT))
            .arg("--log")
            .arg(self.state_dir.join(RUNTIME_LOG))
            .stdin(Stdio::null());
        command
    }

    fn name(&self) -> String {
        self.binary.display().to_string()
    }

    /// Runs a short runtime command and returns its output, failed or not.
    fn output(&self, args: &[&str]) -> Result<Output> {
        self.command()
            .args(args)
            .output()
            .map_err(|source| Error::Spawn {
                command: self.name(),
                source,
            })
    }

    fn failure(&self, action: &'static str, output: &Output) -> Error {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = match stderr.trim() {
            "" => last_lines(&self.state_dir.join(RUNTIME_LOG), 5),
            text => text.to_owned(),
        };
        Error::Runtime {
            runtime: self.name(),
            action,
            message,
        }
    }

    /// `None` when the runtime knows no such container.
    fn state(&self, id: &str) -> Result<Option<(String, u32)>> {
        let output = self.output(&["state", id])?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if stderr.contains("does not exist") || stderr.contains("not exist") {
                return Ok(None);
            }
            return Err(self.failure("state", &output));
        }
        let state: Value =
            serde_json::from_slice(&output.stdout).map_err(|error| Error::Runtime {
                runtime: self.name(),
                action: "state",
                message: format!("unreadable state: {error}"),
            })?;
        let status = state["status"].as_str().unwrap_or("unknown").to_owned();
        let pid = state["pid"].as_u64().unwrap_or(0) as u32;
        Ok(Some((status, pid)))
    }

    fn kill(&self, id: &str, signal: &str) {
        if let Ok(output) = self.output(&["kill", id, signal])
            && !output.status.success()
        {
            tracing::debug!(id, signal, stderr = %String::from_utf8_lossy(&output.stderr), "runtime kill refused");
        }
    }

    /// Removes the container, whatever its state; a missing one is fine.
    fn delete(&self, id: &str) -> Result<()> {
        let output = self.output(&["delete", "--force", id])?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || stderr.contains("not exist") {
            return Ok(());
        }
        Err(self.failure("delete", &output))
    }
}

pub(crate) fn start(binary: &Path, spec: &WorkloadSpec) -> Result<Workload> {
    let state_dir = files::prepare_state_dir(spec)?;
    let runtime = Runtime {
        binary,
        state_dir: &state_dir,
    };
    // A start that crashed half-way left no record but maybe a container and a mount.
    clean(&runtime, &spec.id)?;
    let root = mount_root(spec, &state_dir)?;
    let hosts = state_dir.join(HOSTS);
    write_durably(&hosts, hosts_file(spec).as_bytes())?;
    let config = config(spec, &state_dir, root)?;
    let bundle = state_dir.join(BUNDLE);
    fs::create_dir_all(&bundle).at(&bundle)?;
    let config_bytes = serde_json::to_vec_pretty(&config).map_err(|error| {
        Error::InvalidSpec(format!("cannot write the runtime configuration: {error}"))
    })?;
    write_durably(&bundle.join("config.json"), &config_bytes)?;

    // Recorded before it runs: a caller that dies from here on still finds and stops it.
    let mut workload = Workload {
        id: spec.id.clone(),
        pid: 0,
        state_dir: state_dir.clone(),
        network: spec.network,
        backend: RecordedBackend::Oci {
            runtime: binary.to_path_buf(),
            root,
        },
    };
    workload.write()?;

    let (stdout, stderr) = files::open_output(spec)?;
    // The container's stdout and stderr are these files, handed down by the runtime, which
    // exits once the workload runs: no pipe and no parent ties it to the caller.
    let output = runtime
        .command()
        .arg("run")
        .arg("--detach")
        // Written before the program starts: a program that exits at once still has a pid.
        .arg("--pid-file")
        .arg(state_dir.join(PID_FILE))
        .arg("--bundle")
        .arg(&bundle)
        .arg(&spec.id)
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .map_err(|source| Error::Spawn {
            command: runtime.name(),
            source,
        });
    let started = match output {
        Ok(status) if status.success() => read_pid(&state_dir.join(PID_FILE)),
        Ok(_) => Err(Error::Runtime {
            runtime: runtime.name(),
            action: "run",
            message: last_lines(&state_dir.join(RUNTIME_LOG), 5),
        }),
        Err(error) => Err(error),
    };
    match started {
        Ok(pid) => {
            workload.pid = pid;
            workload.write()?;
            Ok(workload)
        }
        Err(error) => {
            clean(&runtime, &spec.id)?;
            files::remove_state(&state_dir, &CREATED)?;
            Err(error)
        }
    }
}

fn read_pid(path: &Path) -> Result<u32> {
    let text = fs::read_to_string(path).at(path)?;
    text.trim().parse().map_err(|_| Error::BadRecord {
        path: path.to_path_buf(),
        reason: format!("not a pid: {text:?}"),
    })
}

pub(crate) fn status(binary: &Path, workload: &Workload) -> Result<Status> {
    let runtime = Runtime {
        binary,
        state_dir: &workload.state_dir,
    };
    Ok(match runtime.state(&workload.id)? {
        None => Status::Missing,
        Some((status, pid)) if status == "running" || status == "paused" => Status::Running { pid },
        // Stopped, or created but never started: the runtime keeps no exit code.
        Some(_) => Status::Exited { code: None },
    })
}

pub(crate) fn stop(binary: &Path, workload: &Workload, grace: Duration) -> Result<()> {
    let runtime = Runtime {
        binary,
        state_dir: &workload.state_dir,
    };
    if is_running(&runtime, &workload.id)? {
        runtime.kill(&workload.id, "TERM");
        if !wait_stopped(&runtime, &workload.id, grace)? {
            runtime.kill(&workload.id, "KILL");
            if !wait_stopped(&runtime, &workload.id, files::KILL_WAIT)? {
                return Err(Error::WontDie {
                    id: workload.id.clone(),
                });
            }
        }
    }
    clean(&runtime, &workload.id)?;
    files::remove_state(&workload.state_dir, &CREATED)
}

fn is_running(runtime: &Runtime, id: &str) -> Result<bool> {
    Ok(matches!(runtime.state(id)?, Some((status, _)) if status == "running" || status == "paused"))
}

fn wait_stopped(runtime: &Runtime, id: &str, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_running(runtime, id)? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(files::POLL);
    }
}

/// Deletes the container and unmounts its root.
fn clean(runtime: &Runtime, id: &str) -> Result<()> {
    runtime.delete(id)?;
    let merged = runtime.state_dir.join(BUNDLE).join("rootfs");
    match umount2(&merged, MntFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        // Something still holds it open: detach now, the kernel frees it when released.
        Err(nix::errno::Errno::EBUSY) => umount2(&merged, MntFlags::MNT_DETACH)
            .map_err(io::Error::from)
            .at(&merged),
        Err(error) => Err(io::Error::from(error)).at(&merged),
    }
}

/// Mounts the overlay the workload writes into; when the kernel refuses, the image root is
/// used read-only instead.
fn mount_root(spec: &WorkloadSpec, state_dir: &Path) -> Result<RootMode> {
    let lower = std::path::absolute(&spec.rootfs).at(&spec.rootfs)?;
    let upper = state_dir.join(UPPER);
    let work = state_dir.join(WORK);
    let merged = state_dir.join(BUNDLE).join("rootfs");
    for dir in [&upper, &work, &merged] {
        fs::create_dir_all(dir).at(dir)?;
    }
    let paths = [&lower, &upper, &work].map(|path| path.to_str().map(str::to_owned));
    let [Some(lower), Some(upper), Some(work)] = paths else {
        tracing::warn!(id = %spec.id, "paths are not UTF-8; the root is read-only instead of an overlay");
        return Ok(RootMode::ReadOnly);
    };
    // The option string separates with ',' and lower layers with ':'.
    if [&lower, &upper, &work]
        .iter()
        .any(|p| p.contains([',', ':']))
    {
        tracing::warn!(id = %spec.id, "a path holds ',' or ':'; the root is read-only instead of an overlay");
        return Ok(RootMode::ReadOnly);
    }
    let options = format!("lowerdir={lower},upperdir={upper},workdir={work}");
    match mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    ) {
        Ok(()) => Ok(RootMode::Overlay),
        Err(error) => {
            tracing::warn!(id = %spec.id, %error, "overlay did not mount; the root is read-only with a tmpfs /tmp");
            Ok(RootMode::ReadOnly)
        }
    }
}

fn hosts_file(spec: &WorkloadSpec) -> String {
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost\n");
    if !spec.hostname.is_empty() {
        hosts.push_str(&format!("127.0.1.1\t{}\n", spec.hostname));
    }
    for (name, address) in &spec.hosts_entries {
        hosts.push_str(&format!("{address}\t{name}\n"));
    }
    hosts
}

/// The runtime configuration (OCI runtime spec 1.0).
fn config(spec: &WorkloadSpec, state_dir: &Path, root: RootMode) -> Result<Value> {
    let root_path = match root {
        RootMode::Overlay => PathBuf::from("rootfs"),
        // Runtimes refuse a root that is a symlink.
        RootMode::ReadOnly => fs::canonicalize(&spec.rootfs).at(&spec.rootfs)?,
    };
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if spec.network == Network::Private {
        // The runtime brings its loopback up and nothing else.
        namespaces.push(json!({"type": "network"}));
    }
    let mut resources = serde_json::Map::new();
    if let Some(limit) = spec.memory_limit_bytes {
        resources.insert("memory".into(), json!({"limit": limit}));
    }
    if let Some(cpus) = spec.cpus {
        if !(cpus.is_finite() && cpus > 0.0) {
            return Err(Error::InvalidSpec(format!(
                "cpus must be positive, not {cpus}"
            )));
        }
        let quota = (cpus * CPU_PERIOD_US as f64).round().max(1000.0) as i64;
        resources.insert(
            "cpu".into(),
            json!({"quota": quota, "period": CPU_PERIOD_US}),
        );
    }
    let cwd = Path::new("/").join(&spec.cwd);
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let capabilities = json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE"
    ]);
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": spec.args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities,
                "permitted": capabilities,
            },
            "noNewPrivileges": true,
        },
        "root": {"path": root_path, "readonly": root == RootMode::ReadOnly},
        "hostname": spec.hostname,
        "mounts": mounts(spec, state_dir, root)?,
        "linux": {
            "cgroupsPath": format!("/alien/{}", spec.id),
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ],
        },
    }))
}

fn mounts(spec: &WorkloadSpec, state_dir: &Path, root: RootMode) -> Result<Vec<Value>> {
    let bind = |source: &Path, target: &str, read_only: bool| {
        let mut options = vec!["rbind", "nosuid", "nodev"];
        if read_only {
            options.push("ro");
        }
        json!({"destination": target, "type": "bind", "source": source, "options": options})
    };
    // A runtime creates missing mount points in the root; a read-only root is the shared
    // image, which must stay untouched, so there a mount point must already exist.
    let has_mount_point = |target: &str| {
        root == RootMode::Overlay
            || rootpath::resolve(&spec.rootfs, Path::new(target)).is_ok_and(|path| path.exists())
    };
    let mut system = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777"]}),
        bind(&state_dir.join(HOSTS), "/etc/hosts", true),
    ];
    let resolv = Path::new("/etc/resolv.conf");
    if resolv.exists() {
        system.push(bind(resolv, "/etc/resolv.conf", true));
    }
    let mut all = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for mount in system {
        let target = mount["destination"].as_str().unwrap_or_default().to_owned();
        // /dev's and /sys's children live in the file systems mounted there, if they are.
        let parent = ["/dev", "/sys"]
            .into_iter()
            .find(|parent| target.starts_with(&format!("{parent}/")));
        let mountable = match parent {
            Some(parent) => !skipped.iter().any(|s| s == parent),
            None => has_mount_point(&target),
        };
        if mountable {
            all.push(mount);
        } else if REQUIRED_MOUNT_POINTS.contains(&target.as_str()) {
            return Err(Error::InvalidSpec(format!(
                "the overlay did not mount and the read-only image root has no {target}"
            )));
        } else {
            tracing::warn!(id = %spec.id, target, "read-only root has no mount point; not mounted");
            skipped.push(target);
        }
    }
    for mount in &spec.mounts {
        if !mount.target.starts_with('/') {
            return Err(Error::InvalidSpec(format!(
                "mount target {:?} is not absolute",
                mount.target
            )));
        }
        if !has_mount_point(&mount.target) {
            return Err(Error::InvalidSpec(format!(
                "mount target {} does not exist in the read-only root",
                mount.target
            )));
        }
        all.push(bind(&mount.host, &mount.target, mount.read_only));
    }
    Ok(all)
}

/// The end of a runtime's log, for an error message.
fn last_lines(path: &Path, count: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}
