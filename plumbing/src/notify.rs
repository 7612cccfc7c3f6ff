//! Readiness with the systemd notify protocol: the same daemon command line works under
//! `alien serve` (which implements the receiving end) and under systemd `Type=notify`.
//! Without `$NOTIFY_SOCKET` these are no-ops.

use tracing::warn;

pub fn ready() {
    send(&[sd_notify::NotifyState::Ready]);
}

pub fn stopping() {
    send(&[sd_notify::NotifyState::Stopping]);
}

fn send(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        warn!(%error, "cannot notify the service manager");
    }
}
