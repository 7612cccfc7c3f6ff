//! Which OCI runtime can really run a container on this host: each candidate runs a tiny
//! one whose only program is the probe binary.

use std::env;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

/// A runtime that needs longer than this for `--version` in a container is not usable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The executable `name` means: itself when it holds a '/', else the first on `PATH`.
pub(crate) fn find_binary(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_path_buf());
    }
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Runs `[probe, "--version"]` in a container of `runtime` with the namespaces, cgroup
/// limits and mounts a workload gets; the error says why it could not.
pub(crate) fn probe(runtime: &Path, probe_binary: &Path) -> Result<(), String> {
    let scratch = tempfile::Builder::new()
        .prefix("launcher-probe-")
        .tempdir()
        .map_err(|error| format!("no scratch directory: {error}"))?;
    let bundle = scratch.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    let id = format!(
        "launcher-probe-{}-{}",
        std::process::id(),
        scratch
            .path()
            .file_name()
            .map(|name| name
                .to_string_lossy()
                .replace(|c: char| !c.is_ascii_alphanumeric(), ""))
            .unwrap_or_default()
    );
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/probe", "type": "bind", "source": probe_binary,
               "options": ["rbind", "ro"]}),
    ];
    // A dynamically linked probe needs the host's libraries.
    for dir in ["/lib", "/lib64", "/usr"] {
        if Path::new(dir).is_dir() {
            mounts.push(json!({"destination": dir, "type": "bind", "source": dir,
                               "options": ["rbind", "ro"]}));
        }
    }
    let config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/probe", "--version"],
            "env": [],
            "cwd": "/",
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "probe",
        "mounts": mounts,
        "linux": {
            "cgroupsPath": format!("/alien/{id}"),
            "resources": {"memory": {"limit": 64u64 << 20}},
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                           {"type": "mount"}, {"type": "network"}],
        },
    });
    let prepared = fs::create_dir_all(rootfs.join("proc"))
        .and_then(|()| File::create(rootfs.join("probe")).map(drop))
        .and_then(|()| {
            fs::write(
                bundle.join("config.json"),
                serde_json::to_vec(&config).unwrap_or_default(),
            )
        });
    if let Err(error) = prepared {
        return Err(format!("cannot write the probe bundle: {error}"));
    }
    let state = scratch.path().join("state");
    let output = scratch.path().join("output");
    let result = run(runtime, &state, &bundle, &id, &output);
    let _ = Command::new(runtime)
        .env_clear()
        .env("PATH", crate::RUNTIME_PATH)
        .arg("--root")
        .arg(&state)
        .args(["delete", "--force", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    result
}

fn run(runtime: &Path, state: &Path, bundle: &Path, id: &str, output: &Path) -> Result<(), String> {
    let file = File::create(output).map_err(|error| error.to_string())?;
    let err_file = file.try_clone().map_err(|error| error.to_string())?;
    let mut child = Command::new(runtime)
        .env_clear()
        .env("PATH", crate::RUNTIME_PATH)
        .arg("--root")
        .arg(state)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err_file)
        .spawn()
        .map_err(|error| format!("cannot run it: {error}"))?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {PROBE_TIMEOUT:?}"));
            }
            Err(error) => return Err(error.to_string()),
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = fs::read_to_string(output).unwrap_or_default();
    let last = text
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("");
    Err(format!("{status}: {}", last.trim()))
}
