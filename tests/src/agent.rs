//! `alien agent` as a process of its own, for the tests of pull deployments: started with a
//! token file and a data directory, its log kept in a file, and stopped (SIGTERM, then
//! SIGKILL) when the handle goes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::alien_binary;

/// How long a stopped agent has to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub sync_url: String,
    pub token: String,
    pub name: String,
    pub data_dir: PathBuf,
    pub sync_interval_secs: u64,
    pub heartbeat_interval_secs: u64,
    /// `--ca-file`, for an `https://` manager with a certificate of a private CA.
    pub ca_file: Option<PathBuf>,
    /// Words the agent is started through (`ip netns exec NAME`, say).
    pub exec_through: Vec<std::ffi::OsString>,
}

#[derive(Debug)]
pub struct Agent {
    options: AgentOptions,
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    pub fn start(options: AgentOptions) -> Agent {
        let mut agent = Agent {
            log: options.data_dir.with_extension("log"),
            options,
            child: None,
        };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        let options = &self.options;
        let token_file = options.data_dir.with_extension("token");
        std::fs::write(&token_file, &options.token).expect("token file");
        set_mode(&token_file, 0o600);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log");
        let mut command = match options.exec_through.split_first() {
            Some((program, words)) => {
                let mut command = Command::new(program);
                command.args(words).arg(alien_binary());
                command
            }
            None => Command::new(alien_binary()),
        };
        command.arg("agent");
        if let Some(ca_file) = &options.ca_file {
            command.arg("--ca-file").arg(ca_file);
        }
        let child = command
            .args(["--sync-url", &options.sync_url])
            .arg("--sync-token-file")
            .arg(&token_file)
            .args(["--operator-name", &options.name])
            .arg("--data-dir")
            .arg(&options.data_dir)
            .args(["--sync-interval", &options.sync_interval_secs.to_string()])
            .args([
                "--heartbeat-interval",
                &options.heartbeat_interval_secs.to_string(),
            ])
            .args(["--otlp-port", "0"])
            .env_remove("SYNC_TOKEN")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start alien agent");
        self.child = Some(child);
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn data_dir(&self) -> &Path {
        &self.options.data_dir
    }

    /// Everything the agent logged, over all its runs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let exited = crate::wait_for(STOP_TIMEOUT, || child.try_wait().ok().flatten());
        if exited.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        exited
    }

    /// SIGKILL: the agent dies without stopping anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts it again after a [`Agent::kill9`] or [`Agent::stop`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the agent still runs");
        self.spawn();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
