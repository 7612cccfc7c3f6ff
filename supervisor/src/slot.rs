//! One daemon under supervision: start it, wait until it is ready, watch it, restart it when
//! it dies, stop it when told.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use plumbing::config::SupervisorConfig;
use plumbing::logging::LogFormat;
use plumbing::{Daemon, DataDir};
use tokio::net::UnixDatagram;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::child::Launch;
use crate::output::Followed;
use crate::reaper::{Reaper, describe};
use crate::restart::{RestartTracker, jitter};

/// How long to wait for a dead daemon's last log lines.
const LAST_WORDS: Duration = Duration::from_millis(500);
/// How long a process killed with SIGKILL may take to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// What a slot tells the supervisor.
#[derive(Debug)]
pub enum Event {
    /// The daemon is serving for the first time.
    Ready(Daemon),
    /// The daemon died or hung before it was ever ready.
    StartFailed { daemon: Daemon, reason: String },
    /// A critical daemon keeps dying.
    CrashLoop {
        daemon: Daemon,
        deaths: usize,
        window: Duration,
        reason: String,
    },
}

/// The daemons' current pids, for a forced stop.
pub type Live = Arc<Mutex<HashMap<Daemon, Pid>>>;

/// How the supervisor checks that a daemon that said READY=1 really serves.
#[derive(Debug, Clone)]
pub enum Probe {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Probe {
    async fn healthy(&self) -> Result<(), String> {
        const TIMEOUT: Duration = Duration::from_secs(2);
        let status = match self {
            Probe::Unix(socket) => {
                plumbing::uds::get(socket, "/health", TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?
                    .0
            }
            Probe::Tcp(addr) => {
                plumbing::uds::get_tcp(*addr, "/health", TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?
                    .0
            }
        };
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("/health answered {status}"))
        }
    }
}

/// What every slot shares with the supervisor.
#[derive(Debug, Clone)]
pub struct Shared {
    pub launch: Arc<Launch>,
    pub reaper: Reaper,
    pub policy: SupervisorConfig,
    pub log_format: LogFormat,
    pub events: mpsc::UnboundedSender<Event>,
    pub live: Live,
}

#[derive(Debug)]
pub struct Slot {
    daemon: Daemon,
    shared: Shared,
    /// The public port, for the manager.
    listener: Option<Arc<OwnedFd>>,
    probe: Probe,
    notify: UnixDatagram,
    notify_path: PathBuf,
}

impl Slot {
    pub fn new(
        daemon: Daemon,
        data: &DataDir,
        shared: Shared,
        listener: Option<Arc<OwnedFd>>,
        probe: Probe,
    ) -> std::io::Result<Slot> {
        let notify_path = data.notify_socket(daemon);
        match std::fs::remove_file(&notify_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let notify = UnixDatagram::bind(&notify_path)?;
        // Anyone who can send to it can claim the daemon is ready: the service user only.
        std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Slot {
            daemon,
            shared,
            listener,
            probe,
            notify,
            notify_path,
        })
    }

    /// Supervises until `stop` delivers the deadline by which the daemon must be gone.
    pub async fn run(self, mut stop: oneshot::Receiver<Instant>) {
        let daemon = self.daemon;
        let mut tracker = RestartTracker::new(&self.shared.policy);
        let mut ever_ready = false;
        let mut degraded = false;
        loop {
            let started = Instant::now();
            let Some(reason) = self.run_once(&mut stop, &mut ever_ready).await else {
                return;
            };
            if !ever_ready {
                let _ = self
                    .shared
                    .events
                    .send(Event::StartFailed { daemon, reason });
                return;
            }
            let verdict = tracker.record_death(Instant::now(), started.elapsed(), jitter());
            if verdict.crash_loop {
                if daemon.is_critical() {
                    let _ = self.shared.events.send(Event::CrashLoop {
                        daemon,
                        deaths: tracker.deaths_in_window(),
                        window: tracker.window(),
                        reason,
                    });
                    return;
                }
                if !degraded {
                    degraded = true;
                    warn!(%daemon, deaths = tracker.deaths_in_window(), "crash-looping; running degraded and still retrying");
                }
            }
            warn!(%daemon, %reason, restart_in = ?verdict.delay, "daemon died; restarting");
            tokio::select! {
                _ = tokio::time::sleep(verdict.delay) => {}
                _ = &mut stop => return,
            }
        }
    }

    /// One process, from its start to its death, whose reason it returns, or to an orderly
    /// stop (`None`).
    async fn run_once(
        &self,
        stop: &mut oneshot::Receiver<Instant>,
        ever_ready: &mut bool,
    ) -> Option<String> {
        let daemon = self.daemon;
        self.drain_notifications();
        let listener = self.listener.as_deref().map(|fd| fd.as_fd());
        let (child, mut exited) = match self.shared.reaper.spawn(|| {
            self.shared
                .launch
                .spawn(daemon, &self.notify_path, listener)
        }) {
            Ok(spawned) => spawned,
            Err(e) => return Some(format!("cannot start: {e}")),
        };
        let pid = child.pid;
        self.shared
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(daemon, pid);
        let output = Followed::start(daemon, child.stdout, child.stderr, self.shared.log_format)
            .map_err(|e| format!("cannot follow output: {e}"));
        let started = Instant::now();

        let start = tokio::select! {
            ready = tokio::time::timeout(self.shared.policy.start_timeout(), self.wait_ready()) => match ready {
                Ok(Ok(())) => Start::Ready,
                Ok(Err(reason)) => Start::Hung(reason),
                Err(_) => Start::Hung(format!("not ready within {:?}", self.shared.policy.start_timeout())),
            },
            status = &mut exited => Start::Died(describe_wait(status)),
            deadline = &mut *stop => {
                terminate(daemon, pid, &mut exited, deadline.unwrap_or_else(|_| Instant::now())).await;
                self.forget(pid);
                return None;
            }
        };
        let death = match start {
            Start::Ready => {
                info!(%daemon, pid = pid.as_raw(), ready_in = ?started.elapsed(), "ready");
                if !*ever_ready {
                    *ever_ready = true;
                    let _ = self.shared.events.send(Event::Ready(daemon));
                }
                tokio::select! {
                    status = &mut exited => Some(describe_wait(status)),
                    deadline = &mut *stop => {
                        terminate(daemon, pid, &mut exited, deadline.unwrap_or_else(|_| Instant::now())).await;
                        None
                    }
                }
            }
            Start::Hung(reason) => {
                kill_group(pid, Signal::SIGKILL);
                let _ = tokio::time::timeout(KILL_WAIT, &mut exited).await;
                Some(reason)
            }
            // `exited` has completed: polling it again would panic.
            Start::Died(reason) => Some(reason),
        };
        self.forget(pid);
        // Whatever the daemon said last usually explains its death.
        let last_words = match output {
            Ok(output) => output.last_line(LAST_WORDS).await,
            Err(reason) => Some(reason),
        };
        kill_group(pid, Signal::SIGKILL);
        let death = death?;
        Some(match last_words {
            Some(words) => format!("{death}; last log line: {words}"),
            None => death,
        })
    }

    /// READY=1 on the notify socket, then a successful `/health`.
    async fn wait_ready(&self) -> Result<(), String> {
        let mut buffer = [0u8; 4096];
        loop {
            let n = self
                .notify
                .recv(&mut buffer)
                .await
                .map_err(|e| format!("notify socket: {e}"))?;
            let message = String::from_utf8_lossy(&buffer[..n]);
            if message.lines().any(|line| line == "READY=1") {
                break;
            }
        }
        loop {
            match self.probe.healthy().await {
                Ok(()) => return Ok(()),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// A READY=1 left by a previous process must not count for the next one.
    fn drain_notifications(&self) {
        let mut buffer = [0u8; 4096];
        while self.notify.try_recv(&mut buffer).is_ok() {}
    }

    fn forget(&self, pid: Pid) {
        let mut live = self
            .shared
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if live.get(&self.daemon) == Some(&pid) {
            live.remove(&self.daemon);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Only this slot uses its notify socket; a later start binds a fresh one.
        let _ = std::fs::remove_file(&self.notify_path);
    }
}

/// How a start ended.
enum Start {
    Ready,
    /// Alive but not ready: it must be killed.
    Hung(String),
    Died(String),
}

fn describe_wait(status: Result<WaitStatus, oneshot::error::RecvError>) -> String {
    status.map_or_else(|_| "exit status lost".into(), |s| describe(&s))
}

/// SIGTERM to the daemon's process group, then SIGKILL if it is still there at `deadline`.
async fn terminate(
    daemon: Daemon,
    pid: Pid,
    exited: &mut oneshot::Receiver<WaitStatus>,
    deadline: Instant,
) {
    kill_group(pid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::from_std(deadline);
    match tokio::time::timeout_at(deadline, &mut *exited).await {
        Ok(status) => {
            let status = describe_wait(status);
            info!(%daemon, %status, "stopped");
        }
        Err(_) => {
            warn!(%daemon, "did not stop in time; killing it");
            kill_group(pid, Signal::SIGKILL);
            let _ = tokio::time::timeout(KILL_WAIT, exited).await;
        }
    }
    // Anything the daemon started in its group goes with it.
    kill_group(pid, Signal::SIGKILL);
}

pub fn kill_group(pid: Pid, signal: Signal) {
    // ESRCH: the group is already gone, which is the goal.
    let _ = killpg(pid, signal);
}
