//! Process supervision for `alien serve`.
//!
//! The supervisor re-executes its own binary once per daemon (`alien daemon <name>`), in
//! start order otelfwd, registryd, commandd, manager, each in its own process group and tied
//! to the supervisor's life. A daemon is up when it has sent `READY=1` to its notify socket
//! (the systemd protocol, so the same command lines run under systemd) and answers
//! `GET /health`. Daemons that die are restarted with backoff; a critical daemon in a crash
//! loop stops everything. The supervisor reaps every process that ends in its tree, which it
//! must as PID 1 in a container.
//!
//! Use [`preflight::prepare`] to check the start conditions, then [`supervise`] on a
//! current-thread runtime: the children's parent-death signal is tied to the thread that
//! forks them, which must live as long as the supervisor.

pub mod child;
pub mod console;
mod output;
pub mod preflight;
mod reaper;
mod restart;
mod slot;
mod supervise;

pub use child::Launch;
pub use preflight::{PreflightError, Prepared, prepare};
pub use supervise::{SupervisorError, supervise};

/// Makes this process inherit the orphans of its descendants, as PID 1 does, so that the
/// supervisor reaps them too. Not needed (and not applicable) when it is PID 1.
pub fn become_subreaper() -> std::io::Result<()> {
    if std::process::id() == 1 {
        return Ok(());
    }
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
}
