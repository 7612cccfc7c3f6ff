//! One `alien serve` under test: its own port, data directory and process group, its output
//! collected, and everything it started killed when the test ends, passed or failed.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::capture::{Invocation, Stream, chown};
use crate::procfs::{self, ProcInfo};
use crate::wait_for;

/// The user an unprivileged server runs as when the tests run as root (`nobody`).
pub const UNPRIVILEGED_UID: u32 = 65534;

/// The daemons in start order.
pub const DAEMONS: [&str; 5] = ["otelfwd", "registryd", "commandd", "manager", "deployd"];

/// How long a process may take to show up once started (exec, fork of a wrapper).
const APPEAR: Duration = Duration::from_secs(10);

/// Who runs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunAs {
    /// The user running the tests.
    #[default]
    Me,
    /// A user without privileges: `nobody` through `setpriv` when the tests run as root,
    /// else the user running the tests, who has none to begin with.
    Unprivileged,
}

/// Where the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    #[default]
    None,
    /// In a new pid namespace (`unshare -pf --mount-proc`), where the supervisor is PID 1 as
    /// in a container.
    PidNamespace,
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Contents of a config file, passed with `-c`.
    pub config: Option<String>,
    /// `--log-format`; the default (text) when `None`.
    pub log_format: Option<&'static str>,
    pub env: Vec<(String, String)>,
    /// A data directory to use instead of a fresh one, e.g. to restart on the same state.
    pub data_dir: Option<PathBuf>,
    pub run_as: RunAs,
    pub isolation: Isolation,
    /// deployd's deployment and heartbeat loops run. Off by default, so that a test that moves
    /// a deployment from status to status itself, as a push client would, is not raced by
    /// the loop deploying it.
    pub deployment_loops: bool,
    /// A command `alien serve` is started through, which must end by executing it in its own
    /// process, as `prlimit ... --` does, or [`with_umask`].
    pub exec_through: Vec<OsString>,
}

/// Starts `alien serve` with umask `mask` (a shell sets it, then executes the server).
pub fn with_umask(mask: u32) -> Vec<OsString> {
    [
        "sh".to_owned(),
        "-c".to_owned(),
        format!("umask {mask:03o} && exec \"$0\" \"$@\""),
    ]
    .map(OsString::from)
    .to_vec()
}

/// A port on 127.0.0.1 that nothing listened on a moment ago, and that no other test of
/// this binary has been given.
///
/// The port is released before the server binds it, so it is taken below the kernel's
/// ephemeral range: a port the kernel hands out (an outgoing connection's source port, a
/// listener on port 0 in another test) could otherwise land on it in between.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let (low, high) = below_ephemeral_range();
    let span = u32::from(high - low);
    // Tests of several binaries may run one after another within moments: start each
    // binary at its own place in the range.
    let start = std::process::id() % span;
    for step in 0..span {
        let port = low + u16::try_from((start + step * 7919) % span).expect("within the span");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        if GIVEN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(port)
        {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// The ports from 20000 up to the start of the kernel's ephemeral range.
fn below_ephemeral_range() -> (u16, u16) {
    const LOW: u16 = 20000;
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|start| *start > LOW + 1000)
        .unwrap_or(32768);
    (LOW, start)
}

pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A fresh temporary directory that the unprivileged user can enter too.
pub fn temp_dir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("alien-e2e-")
        .tempdir()
        .expect("temporary directory");
    set_mode(dir.path(), 0o755);
    dir
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// The `setpriv` words that drop to the unprivileged user, when the tests run as root.
pub fn unprivileged_prefix() -> Vec<OsString> {
    if !running_as_root() {
        return Vec::new();
    }
    [
        "setpriv".to_owned(),
        format!("--reuid={UNPRIVILEGED_UID}"),
        format!("--regid={UNPRIVILEGED_UID}"),
        "--clear-groups".to_owned(),
    ]
    .map(OsString::from)
    .to_vec()
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

#[derive(Debug)]
pub struct Server {
    child: Child,
    supervisor: i32,
    port: u16,
    data_dir: PathBuf,
    work: TempDir,
    stdout: Stream,
    stderr: Stream,
    http: ureq::Agent,
}

impl Server {
    /// Starts `alien serve --port <free> --host 127.0.0.1 --data-dir <dir>` and returns once
    /// the supervisor process exists (not when it is healthy: see [`Server::wait_healthy`]).
    pub fn start(options: Options) -> Server {
        let work = temp_dir();
        let port = free_port();
        let as_other_user = options.run_as == RunAs::Unprivileged && running_as_root();
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| work.path().join("data"));
        if as_other_user && !data_dir.exists() {
            std::fs::create_dir_all(&data_dir).expect("create data directory");
            chown(&data_dir, UNPRIVILEGED_UID, UNPRIVILEGED_UID);
        }
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "--port".into(),
            port.to_string().into(),
            "--host".into(),
            "127.0.0.1".into(),
            "--data-dir".into(),
            data_dir.clone().into(),
        ];
        if let Some(config) = &options.config {
            let file = work.path().join("alien-manager.toml");
            std::fs::write(&file, config).expect("write config file");
            args.extend(["-c".into(), file.into()]);
        }
        if let Some(format) = options.log_format {
            args.extend(["--log-format".into(), format.into()]);
        }
        let mut prefix = Vec::new();
        if options.isolation == Isolation::PidNamespace {
            prefix.extend(["unshare", "--pid", "--fork", "--mount-proc"].map(OsString::from));
            if !running_as_root() {
                prefix.push("--map-root-user".into());
            }
        }
        if options.run_as == RunAs::Unprivileged {
            prefix.extend(unprivileged_prefix());
        }
        prefix.extend(options.exec_through.iter().cloned());
        let mut env = options.env.clone();
        if !options.deployment_loops {
            for name in ["DISABLE_DEPLOYMENT_LOOP", "DISABLE_HEARTBEAT_LOOP"] {
                env.push((name.to_owned(), "true".to_owned()));
            }
        }
        let invocation = Invocation {
            prefix,
            args,
            env,
            cwd: Some(work.path().to_path_buf()),
        };
        let (child, stdout, stderr) = invocation.spawn();
        let spawned = child.id() as i32;
        let mut server = Server {
            child,
            supervisor: spawned,
            port,
            data_dir,
            work,
            stdout,
            stderr,
            http: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .timeout_global(Some(Duration::from_secs(3)))
                .build()
                .into(),
        };
        // A wrapper either becomes `alien serve` (setpriv executes it) or starts it as its
        // child (unshare forks).
        let is_serve = |p: &ProcInfo| {
            p.argv.first().is_some_and(|a| a.ends_with("alien"))
                && p.argv.get(1).is_some_and(|a| a == "serve")
        };
        let found = wait_for(APPEAR, || {
            procfs::proc_info(spawned)
                // Already exited (a failed start can take milliseconds): nothing else to find.
                .filter(|p| is_serve(p) || p.is_zombie())
                .or_else(|| procfs::children_of(spawned).into_iter().find(is_serve))
                .map(|p| p.pid)
        });
        match found {
            Some(pid) => server.supervisor = pid,
            None => panic!(
                "alien serve did not start within {APPEAR:?}\nstderr:\n{}",
                server.stderr.text()
            ),
        }
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A scratch directory that lives as long as the server (its working directory).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// The `alien serve` process (inside a wrapper such as `unshare`, its pid as seen here).
    pub fn supervisor_pid(&self) -> i32 {
        self.supervisor
    }

    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// The first admin API key, from the `export ALIEN_API_KEY=...` line on stdout.
    pub fn admin_token(&self) -> String {
        let token = wait_for(Duration::from_secs(5), || {
            self.stdout()
                .lines()
                .find_map(|line| line.strip_prefix("export ALIEN_API_KEY="))
                .map(str::to_owned)
        });
        token.unwrap_or_else(|| {
            panic!(
                "no `export ALIEN_API_KEY=` line on stdout:\n{}",
                self.stdout()
            )
        })
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request(path, None)
    }

    pub fn get_with_auth(&self, path: &str, authorization: &str) -> Reply {
        self.request(path, Some(authorization))
    }

    fn request(&self, path: &str, authorization: Option<&str>) -> Reply {
        self.try_request(path, authorization)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\nstderr:\n{}", self.stderr()))
    }

    fn try_request(&self, path: &str, authorization: Option<&str>) -> Result<Reply, ureq::Error> {
        http_get(&self.http, self.port, path, authorization)
    }

    /// `/health` answers 200 and every daemon has started (deployd starts after the
    /// manager's port answers) within `timeout`; fails the test with the server's log if not,
    /// or at once if the server exits.
    pub fn wait_healthy(&mut self, timeout: Duration) {
        self.wait_health(200, timeout);
        self.wait_log_line(timeout, |line| line.contains("alien-manager is ready"));
    }

    /// Waits for `/health` to answer `status`, and returns that answer.
    pub fn wait_health(&mut self, status: u16, timeout: Duration) -> Reply {
        let mut last = None;
        let mut exited = None;
        let reply = wait_for(timeout, || {
            if let Ok(Some(code)) = self.child.try_wait() {
                exited = Some(code);
                return Some(None);
            }
            let reply = http_get(&self.http, self.port, "/health", None).ok();
            let matched = reply.as_ref().is_some_and(|r| r.status == status);
            last = reply;
            matched.then(|| last.clone())
        })
        .flatten();
        reply.unwrap_or_else(|| {
            panic!(
                "/health did not answer {status} within {timeout:?} (exited: {exited:?}; last answer: {last:?})\nstderr:\n{}",
                self.stderr()
            )
        })
    }

    /// Waits until stderr holds a line for which `matches` is true, and returns it.
    pub fn wait_log_line(&self, timeout: Duration, matches: impl Fn(&str) -> bool) -> String {
        wait_for(timeout, || {
            self.stderr()
                .lines()
                .find(|line| matches(line))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            panic!(
                "no such log line within {timeout:?}; stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// The running process of daemon `name`: a child of the supervisor whose command line
    /// says `daemon <name>`.
    pub fn daemon_pid(&self, name: &str) -> Option<i32> {
        procfs::children_of(self.supervisor)
            .into_iter()
            .find(|p| p.has_args(&["daemon", name]))
            .map(|p| p.pid)
    }

    /// The pid of every daemon, in start order; each must be running.
    pub fn daemon_pids(&self) -> Vec<i32> {
        crate::DAEMONS
            .iter()
            .map(|name| {
                self.daemon_pid(name)
                    .unwrap_or_else(|| panic!("no {name} process"))
            })
            .collect()
    }

    /// SIGTERM, then an exit with status 0 within `timeout`, with nothing left running.
    pub fn stop_cleanly(&mut self, timeout: Duration) {
        self.sigterm();
        let status = self.wait_exit(timeout);
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}\n{}",
            self.stderr()
        );
        assert!(self.wait_all_gone(Duration::from_secs(2)).is_empty());
    }

    /// Waits for daemon `name` to run in a process other than `previous`.
    pub fn wait_daemon_pid(&self, name: &str, previous: Option<i32>, timeout: Duration) -> i32 {
        wait_for(timeout, || {
            self.daemon_pid(name).filter(|pid| Some(*pid) != previous)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {name} process (other than {previous:?}) within {timeout:?}; stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// Every running process started for this server: anything whose command line names
    /// its data directory (the supervisor, its wrapper, the daemons), wherever it has been
    /// reparented to.
    pub fn processes(&self) -> Vec<ProcInfo> {
        procfs::live_processes()
            .into_iter()
            .filter(|p| p.uses_data_dir(&self.data_dir))
            .collect()
    }

    /// Waits until none of [`Server::processes`] runs any more; returns those still running.
    pub fn wait_all_gone(&self, timeout: Duration) -> Vec<ProcInfo> {
        let gone = wait_for(timeout, || self.processes().is_empty().then_some(()));
        match gone {
            Some(()) => Vec::new(),
            None => self.processes(),
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.supervisor), signal)
            .unwrap_or_else(|e| panic!("{signal} to the supervisor: {e}"));
    }

    pub fn sigterm(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Waits for the process the test started to exit, and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_for(timeout, || self.child.try_wait().ok().flatten())
    }

    /// Has exited (and been waited for).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits until the supervisor's output pipes are closed, so that the logs are complete.
    pub fn wait_output_closed(&self, timeout: Duration) -> bool {
        self.stdout.wait_closed(timeout) && self.stderr.wait_closed(timeout)
    }
}

fn http_get(
    http: &ureq::Agent,
    port: u16,
    path: &str,
    authorization: Option<&str>,
) -> Result<Reply, ureq::Error> {
    let mut request = http.get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let response = request.call()?;
    let status = response.status().as_u16();
    let body = response.into_body().read_to_string()?;
    Ok(Reply { status, body })
}

impl Drop for Server {
    fn drop(&mut self) {
        // Read while the supervisor is still ours: its pid cannot have been reused before
        // the test waits for it.
        let mut pids: BTreeSet<i32> = self.processes().iter().map(|p| p.pid).collect();
        if !self.has_exited() {
            pids.extend(procfs::children_of(self.supervisor).iter().map(|p| p.pid));
        }
        // The group of the process started (wrapper and supervisor), then each daemon and
        // its own group. Errors mean it is gone already.
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            if procfs::proc_info(pid).is_some_and(|p| p.pgid == pid) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
