//! The app: spawned as a host process or as an OCI bundle run in the foreground by runc or
//! crun, with the protocol's variables added to the environment the caller gave and nothing
//! of the runtime's own; its output appended to the caller's files.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::Command;

use crate::RuntimeError;
use crate::config::{App, RuntimeConfig};

/// Variables that must not reach the app: the push credential, the secrets bundle, the
/// switch that told pre-rename SDKs to send binding calls over gRPC, and a port the app could
/// mistake for its own (a worker binds where it likes and registers the port).
const REMOVED: [&str; 4] = [
    "ALIEN_BINDINGS_MODE",
    "ALIEN_COMMANDS_TOKEN",
    "ALIEN_RUNTIME_SECRETS",
    "PORT",
];

/// What the OCI runtime itself is started with: just enough to find its helpers.
const RUNTIME_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The app's environment: `given`, without [`REMOVED`], with the protocol's variables, and
/// `PORT` when the runtime serves a plain image at `plain_port` too.
pub fn app_env(
    given: &BTreeMap<String, String>,
    grpc_port: u16,
    plain_port: Option<u16>,
) -> BTreeMap<String, String> {
    let address = format!("127.0.0.1:{grpc_port}");
    let mut env: BTreeMap<String, String> = given
        .iter()
        .filter(|(key, _)| !REMOVED.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    env.insert("ALIEN_WORKER_GRPC_ADDRESS".into(), address.clone());
    env.insert("ALIEN_BINDINGS_GRPC_ADDRESS".into(), address);
    env.insert("ALIEN_TRANSPORT".into(), "local".into());
    if let Some(port) = plain_port {
        env.insert("PORT".into(), port.to_string());
    }
    env
}

#[derive(Debug)]
pub struct AppProcess {
    child: tokio::process::Child,
    pid: Pid,
    /// The OCI runtime and container id, when the app runs as a bundle.
    container: Option<(PathBuf, String)>,
}

fn output_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl AppProcess {
    /// Starts the app. The caller has already bound the gRPC port, so the app's first call
    /// finds the server.
    pub async fn spawn(config: &RuntimeConfig) -> Result<AppProcess, RuntimeError> {
        let spawn_error = |source: io::Error| RuntimeError::Spawn { source };
        let prepared = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || prepare(&config))
                .await
                .map_err(|join| spawn_error(io::Error::other(join)))?
                .map_err(spawn_error)?
        };
        let Prepared {
            mut command,
            stdout,
            stderr,
            container,
        } = prepared;
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (prctl, getppid).
        unsafe {
            let parent = nix::unistd::getpid();
            command.pre_exec(move || {
                // The app must not outlive its runtime: a runtime that dies takes the app with
                // it rather than leaving it holding a port nobody proxies to. The spawning
                // thread is one of the async runtime's workers, which live as long as the
                // process does.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
                if nix::unistd::getppid() != parent {
                    return Err(io::Error::other("the worker runtime is gone"));
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(spawn_error)?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
            .ok_or_else(|| spawn_error(io::Error::other("the app exited at once")))?;
        Ok(AppProcess {
            child,
            pid,
            container,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// Resolves when the app (or the OCI runtime running it) exits by itself.
    pub async fn exited(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await;
        self.remove_container().await;
        status
    }

    /// SIGTERM, then SIGKILL of the whole group after `grace`; resolves once it is gone.
    pub async fn stop(mut self, grace: Duration) {
        // runc and crun pass SIGTERM on to the container's process when run in the
        // foreground.
        let _ = kill(self.pid, Signal::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
            tracing::info!(?status, "the app stopped");
        } else {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "the app ignored SIGTERM; killing it"
            );
            if let Some((runtime, id)) = &self.container {
                let _ = Command::new(runtime)
                    .args(["kill", "--all", id, "KILL"])
                    .env_clear()
                    .env("PATH", RUNTIME_PATH)
                    .stdin(Stdio::null())
                    .status()
                    .await;
            }
            let _ = killpg(self.pid, Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
        self.remove_container().await;
    }

    /// Removes the stopped container's record so its id can be used again.
    async fn remove_container(&self) {
        if let Some((runtime, id)) = &self.container {
            delete_container(runtime, id).await;
        }
    }
}

async fn delete_container(runtime: &Path, id: &str) {
    let _ = Command::new(runtime)
        .args(["delete", "--force", id])
        .env_clear()
        .env("PATH", RUNTIME_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

struct Prepared {
    command: Command,
    stdout: File,
    stderr: File,
    container: Option<(PathBuf, String)>,
}

/// The blocking part of a start: opening the output files and rewriting a bundle's config.
fn prepare(config: &RuntimeConfig) -> io::Result<Prepared> {
    let stdout = output_file(&config.stdout)?;
    let stderr = output_file(&config.stderr)?;
    let (command, container) = match &config.app {
        App::Process { argv, cwd, env } => {
            let (program, args) = argv
                .split_first()
                .ok_or_else(|| io::Error::other("app.process.argv is empty"))?;
            let mut command = Command::new(program);
            command
                .args(args)
                .current_dir(cwd)
                .env_clear()
                .envs(app_env(env, config.grpc_port, config.plain_port));
            (command, None)
        }
        App::OciBundle {
            runtime,
            bundle,
            container_id,
        } => {
            write_bundle_env(bundle, config.grpc_port, config.plain_port)?;
            // A container of this id left by a runtime that was killed would make `run` fail.
            std::process::Command::new(runtime)
                .args(["delete", "--force", container_id])
                .env_clear()
                .env("PATH", RUNTIME_PATH)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            let mut command = Command::new(runtime);
            command
                .arg("run")
                .arg("--bundle")
                .arg(bundle)
                .arg(container_id)
                .env_clear()
                .env("PATH", RUNTIME_PATH);
            (command, Some((runtime.clone(), container_id.clone())))
        }
        App::External => {
            return Err(io::Error::other("the caller starts an external app"));
        }
    };
    Ok(Prepared {
        command,
        stdout,
        stderr,
        container,
    })
}

/// Puts the protocol's variables into `<bundle>/config.json` `process.env`, rewritten
/// atomically (temp file, fsync, rename) so a crash never leaves half a config.
fn write_bundle_env(bundle: &Path, grpc_port: u16, plain_port: Option<u16>) -> io::Result<()> {
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)
        .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
    let process = spec
        .get_mut("process")
        .and_then(serde_json::Value::as_object_mut)
        .ok_or_else(|| io::Error::other(format!("{} has no process", path.display())))?;
    let given: BTreeMap<String, String> = process
        .get("env")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .filter_map(|entry| entry.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    let env: Vec<serde_json::Value> = app_env(&given, grpc_port, plain_port)
        .into_iter()
        .map(|(key, value)| format!("{key}={value}").into())
        .collect();
    process.insert("env".into(), env.into());
    let bytes = serde_json::to_vec_pretty(&spec).map_err(io::Error::other)?;
    plumbing::durable::replace(&path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_env_is_the_given_one_with_the_protocol_s_variables() {
        let given = BTreeMap::from([
            ("FOO".to_owned(), "bar".to_owned()),
            ("PORT".to_owned(), "8080".to_owned()),
            ("ALIEN_COMMANDS_TOKEN".to_owned(), "secret".to_owned()),
            ("ALIEN_BINDINGS_MODE".to_owned(), "grpc".to_owned()),
            ("ALIEN_RUNTIME_SECRETS".to_owned(), "{}".to_owned()),
            ("ALIEN_TRANSPORT".to_owned(), "http".to_owned()),
        ]);
        let env = app_env(&given, 4242, None);
        let expected = BTreeMap::from([
            ("FOO".to_owned(), "bar".to_owned()),
            (
                "ALIEN_WORKER_GRPC_ADDRESS".to_owned(),
                "127.0.0.1:4242".to_owned(),
            ),
            (
                "ALIEN_BINDINGS_GRPC_ADDRESS".to_owned(),
                "127.0.0.1:4242".to_owned(),
            ),
            ("ALIEN_TRANSPORT".to_owned(), "local".to_owned()),
        ]);
        assert_eq!(env, expected);
    }
}
