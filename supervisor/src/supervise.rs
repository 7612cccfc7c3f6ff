//! The supervisor's main loop: start the daemons in order, watch for crash loops and
//! signals, stop everything in reverse order within the budget.

use std::os::fd::OwnedFd;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use plumbing::logging::LogFormat;
use plumbing::{Config, Daemon};
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::child::Launch;
use crate::preflight::Prepared;
use crate::reaper::Reaper;
use crate::slot::{Event, Live, Probe, Shared, Slot, kill_group};

/// Backlog of the public port: connections queue here while a restarted manager starts.
const LISTEN_BACKLOG: i32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("{daemon} failed to start: {reason}")]
    StartFailed { daemon: Daemon, reason: String },
    #[error("{daemon} is crash-looping ({deaths} exits within {}s); last exit: {reason}", window.as_secs())]
    CrashLoop {
        daemon: Daemon,
        deaths: usize,
        window: Duration,
        reason: String,
    },
    #[error("cannot {action}: {source}")]
    Io {
        action: &'static str,
        source: std::io::Error,
    },
}

struct Running {
    daemon: Daemon,
    stop: oneshot::Sender<Instant>,
    task: JoinHandle<()>,
}

struct Signals {
    term: SignalStream,
    int: SignalStream,
}

impl Signals {
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Runs the system until a signal stops it (`Ok`) or a daemon cannot be kept running.
pub async fn supervise(
    config: &Config,
    prepared: Prepared,
    launch: Launch,
    log_format: LogFormat,
) -> Result<(), SupervisorError> {
    let io = |action| move |source| SupervisorError::Io { action, source };
    let reaper = Reaper::start().map_err(io("watch child processes"))?;
    let mut signals = Signals {
        term: signal(SignalKind::terminate()).map_err(io("handle SIGTERM"))?,
        int: signal(SignalKind::interrupt()).map_err(io("handle SIGINT"))?,
    };
    let Prepared {
        data,
        listener,
        probe_addr,
        ..
    } = prepared;
    let listener = Arc::new(OwnedFd::from(listener));
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let shared = Shared {
        launch: Arc::new(launch),
        reaper,
        policy: config.supervisor.clone(),
        log_format,
        events: events_tx,
        live: Live::default(),
    };
    let mut running: Vec<Running> = Vec::new();
    let began = Instant::now();

    let outcome = 'run: {
        for daemon in Daemon::ALL {
            let is_manager = daemon == Daemon::Manager;
            if is_manager {
                let socket = socket2::SockRef::from(&*listener);
                if let Err(source) = socket.listen(LISTEN_BACKLOG) {
                    break 'run Err(SupervisorError::Io {
                        action: "listen on the public port",
                        source,
                    });
                }
            }
            let slot = Slot::new(
                daemon,
                &data,
                shared.clone(),
                is_manager.then(|| listener.clone()),
                if is_manager {
                    Probe::Tcp(probe_addr)
                } else {
                    Probe::Unix(data.socket(daemon))
                },
            );
            let slot = match slot {
                Ok(slot) => slot,
                Err(source) => {
                    break 'run Err(SupervisorError::Io {
                        action: "create a notify socket",
                        source,
                    });
                }
            };
            info!(%daemon, "starting");
            let (stop, stop_rx) = oneshot::channel();
            running.push(Running {
                daemon,
                stop,
                task: tokio::spawn(slot.run(stop_rx)),
            });
            loop {
                tokio::select! {
                    // The sender lives in this function, so the channel stays open.
                    Some(event) = events.recv() => match event {
                        Event::Ready(ready) if ready == daemon => break,
                        event => if let Some(error) = failure(event) { break 'run Err(error) },
                    },
                    signal = signals.next() => {
                        info!(signal, "stopping before start-up finished");
                        break 'run Ok(());
                    }
                }
            }
        }
        info!(
            address = %probe_addr,
            base_url = %config.base_url(),
            started_in = ?began.elapsed(),
            "alien-manager is ready"
        );
        loop {
            tokio::select! {
                Some(event) = events.recv() => if let Some(error) = failure(event) {
                    break 'run Err(error)
                },
                signal = signals.next() => {
                    info!(signal, "stopping");
                    break 'run Ok(());
                }
            }
        }
    };
    if let Err(error) = &outcome {
        warn!(%error, "stopping everything");
    }
    stop_all(
        running,
        config.supervisor.stop_timeout(),
        &shared.live,
        &mut signals,
    )
    .await;
    outcome
}

fn failure(event: Event) -> Option<SupervisorError> {
    match event {
        Event::Ready(_) => None,
        Event::StartFailed { daemon, reason } => {
            Some(SupervisorError::StartFailed { daemon, reason })
        }
        Event::CrashLoop {
            daemon,
            deaths,
            window,
            reason,
        } => Some(SupervisorError::CrashLoop {
            daemon,
            deaths,
            window,
            reason,
        }),
    }
}

/// Stops the daemons in reverse start order. Each gets an equal share of what is left of
/// the budget, so a daemon that stops quickly leaves more time to the next. A second signal
/// kills everything at once.
async fn stop_all(mut running: Vec<Running>, budget: Duration, live: &Live, signals: &mut Signals) {
    let deadline = Instant::now() + budget;
    while let Some(Running {
        daemon,
        stop,
        mut task,
    }) = running.pop()
    {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let share = remaining / u32::try_from(running.len() + 1).unwrap_or(1);
        // A slot that already ended has dropped its receiver; nothing to stop.
        let _ = stop.send(Instant::now() + share);
        tokio::select! {
            _ = &mut task => {}
            signal = signals.next() => {
                warn!(signal, %daemon, "second signal: killing all daemons now");
                for pid in live.lock().unwrap_or_else(PoisonError::into_inner).values() {
                    kill_group(*pid, Signal::SIGKILL);
                }
                let rest: Vec<_> = running.drain(..).map(|r| {
                    let _ = r.stop.send(Instant::now());
                    r.task
                }).collect();
                let _ = task.await;
                for task in rest {
                    let _ = task.await;
                }
            }
        }
    }
}
