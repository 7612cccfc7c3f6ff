//! The only place that waits for child processes.
//!
//! As PID 1 (or a child subreaper) the supervisor inherits every orphan in its tree and must
//! reap them, which takes `waitpid(-1)`. That call would also collect the exit status of a
//! daemon that another waiter (such as `tokio::process`) is waiting for, so the supervisor
//! has exactly one waiter: this reaper. Daemons register their pid and receive their status
//! here; anything else that exits is an orphan and is simply reaped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tracing::{debug, warn};

type Waiters = HashMap<Pid, oneshot::Sender<WaitStatus>>;

#[derive(Debug, Clone)]
pub struct Reaper {
    waiters: Arc<Mutex<Waiters>>,
}

impl Reaper {
    /// Starts reaping on SIGCHLD. Call before the first child is spawned, so that no exit
    /// goes unnoticed.
    pub fn start() -> std::io::Result<Reaper> {
        let mut sigchld = signal(SignalKind::child())?;
        let waiters: Arc<Mutex<Waiters>> = Arc::default();
        let reaper = Reaper {
            waiters: waiters.clone(),
        };
        tokio::spawn(async move {
            loop {
                reap_all(&waiters);
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        Ok(reaper)
    }

    /// Spawns a child and registers its pid in one step: the reaper cannot collect the child
    /// before its waiter is in place, because both happen under the same lock.
    pub fn spawn<T>(
        &self,
        spawn: impl FnOnce() -> std::io::Result<(Pid, T)>,
    ) -> std::io::Result<(T, oneshot::Receiver<WaitStatus>)> {
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        let (pid, spawned) = spawn()?;
        let (tx, rx) = oneshot::channel();
        waiters.insert(pid, tx);
        Ok((spawned, rx))
    }
}

fn reap_all(waiters: &Mutex<Waiters>) {
    let mut waiters = waiters.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(status) => {
                let Some(pid) = status.pid() else { continue };
                match waiters.remove(&pid) {
                    // The receiver may be gone if its daemon's task ended; nothing to tell.
                    Some(waiter) => drop(waiter.send(status)),
                    None => debug!(pid = pid.as_raw(), ?status, "reaped an orphan"),
                }
            }
            Err(Errno::EINTR) => continue,
            Err(error) => {
                warn!(%error, "waitpid failed");
                return;
            }
        }
    }
}

/// A wait status as a person reads it.
pub fn describe(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, signal, core) => {
            format!(
                "killed by {signal}{}",
                if *core { " (core dumped)" } else { "" }
            )
        }
        other => format!("{other:?}"),
    }
}
