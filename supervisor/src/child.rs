//! Starting one daemon process: `alien daemon <name> ...` re-executed from our own binary,
//! in its own process group, tied to the supervisor's life.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::unistd::Pid;
use plumbing::Daemon;

/// How to start a daemon.
#[derive(Debug, Clone)]
pub struct Launch {
    pub binary: PathBuf,
    /// What the daemons see as their program name (`ps` shows it).
    pub arg0: OsString,
    /// Arguments after `alien daemon <name>` shared by all daemons.
    pub args: Vec<OsString>,
}

/// A started daemon: its pid (also its process group) and its output.
#[derive(Debug)]
pub struct Child {
    pub pid: Pid,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl Launch {
    /// Forks and executes the daemon. `listener`, for the manager, is inherited (its number
    /// given with `--listen-fd`) so that the public port stays bound across manager restarts.
    pub fn spawn(
        &self,
        daemon: Daemon,
        notify_socket: &std::path::Path,
        listener: Option<BorrowedFd<'_>>,
    ) -> std::io::Result<(Pid, Child)> {
        let mut command = Command::new(&self.binary);
        command
            .arg0(&self.arg0)
            .arg("daemon")
            .arg(daemon.name())
            .args(&self.args)
            .env("NOTIFY_SOCKET", notify_socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: a terminal's Ctrl-C reaches only the supervisor, which stops the
            // daemons in order, and a stop can signal everything the daemon started.
            .process_group(0);
        let listen_fd = listener.map(|fd| fd.as_raw_fd());
        if let Some(fd) = listen_fd {
            command.arg("--listen-fd").arg(fd.to_string());
        }
        let supervisor = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls; it allocates nothing.
        unsafe {
            command.pre_exec(move || tie_to_supervisor(supervisor, listen_fd));
        }
        let mut process = command.spawn()?;
        let pid = Pid::from_raw(process.id() as libc::pid_t);
        let (Some(stdout), Some(stderr)) = (process.stdout.take(), process.stderr.take()) else {
            return Err(std::io::Error::other("child has no output pipes"));
        };
        // The reaper, not `process.wait()`, collects the exit status; dropping the handle
        // neither waits nor kills.
        drop(process);
        Ok((
            pid,
            Child {
                pid,
                stdout: stdout.into(),
                stderr: stderr.into(),
            },
        ))
    }
}

/// In the child, before exec: die with the supervisor, and let the listening socket survive
/// the exec.
fn tie_to_supervisor(supervisor: libc::pid_t, listen_fd: Option<i32>) -> std::io::Result<()> {
    // SAFETY: plain system calls on integers; see the caller.
    unsafe {
        // A supervisor killed with SIGKILL cannot stop its daemons; the kernel does it.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The supervisor may have died between fork and prctl.
        if libc::getppid() != supervisor {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        if let Some(fd) = listen_fd {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}
