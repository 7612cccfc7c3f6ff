//! The fallback backend: the workload runs as a plain host process whose base is the image
//! root, in a session of its own, with nothing inherited from the caller.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::{Error, IoContext, Result};
use crate::record::{RecordedBackend, Workload, write_durably};
use crate::spec::WorkloadSpec;
use crate::{Status, files, procfs, rootpath};

/// Where a reaped exit status is kept, for status calls after the reap.
const EXIT_CODE_FILE: &str = "exit-code";

pub(crate) fn start(spec: &WorkloadSpec) -> Result<Workload> {
    let state_dir = files::prepare_state_dir(spec)?;
    let cwd = Path::new("/").join(&spec.cwd);
    let host_cwd = rootpath::resolve(&spec.rootfs, &cwd).at(&spec.rootfs)?;
    let program = program(spec, &cwd)?;
    let (stdout, stderr) = files::open_output(spec)?;

    let mut command = Command::new(&program);
    command
        .arg0(&spec.args[0])
        .args(&spec.args[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&host_cwd)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: the closure makes only async-signal-safe system calls and allocates nothing.
    unsafe {
        command.pre_exec(detach);
    }
    let child = command.spawn().map_err(|source| Error::Spawn {
        command: program.display().to_string(),
        source,
    })?;
    let pid = child.id();
    // The pid cannot be reused before we reap it, so this reads our own process.
    let start_time = procfs::stat(pid)
        .at(Path::new("/proc"))?
        .map(|stat| stat.start_time)
        .ok_or_else(|| Error::Spawn {
            command: program.display().to_string(),
            source: std::io::Error::other("process vanished at once"),
        })?;
    // Dropping the handle neither waits nor kills: `status` reaps it.
    drop(child);
    let workload = Workload {
        id: spec.id.clone(),
        pid,
        state_dir,
        network: spec.network,
        backend: RecordedBackend::Process { start_time },
    };
    workload.write()?;
    Ok(workload)
}

/// In the child, before exec: a session of its own (no terminal, no signal to the caller's
/// group reaches it), and none of the caller's descriptors: whatever the caller inherited
/// without close-on-exec (a listening socket from its supervisor, a pipe from its parent)
/// would otherwise stay open in the workload for its whole life.
fn detach() -> std::io::Result<()> {
    nix::unistd::setsid()?;
    // Marked rather than closed: the standard library still reports a failed exec over one
    // of them.
    // SAFETY: plain system calls on integers.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked == 0 {
        return Ok(());
    }
    // Kernels before 5.11: one descriptor at a time, up to the limit.
    // SAFETY: as above.
    let limit = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(3, 1 << 20) as i32;
    for fd in 3..limit {
        // SAFETY: as above; a descriptor that is not open fails harmlessly.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// The file to exec: an absolute `args[0]` inside the root, a relative one from the working
/// directory, a bare name on the given `PATH` inside the root.
fn program(spec: &WorkloadSpec, cwd: &Path) -> Result<PathBuf> {
    let arg0 = Path::new(&spec.args[0]);
    let inside = |path: &Path| rootpath::resolve(&spec.rootfs, path).at(&spec.rootfs);
    if spec.args[0].contains('/') {
        return inside(&cwd.join(arg0));
    }
    let path_var = spec
        .env
        .iter()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| value.as_str())
        .unwrap_or("");
    for dir in path_var.split(':').filter(|dir| dir.starts_with('/')) {
        let candidate = inside(&Path::new(dir).join(arg0))?;
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    inside(&cwd.join(arg0))
}

pub(crate) fn status(workload: &Workload, start_time: u64) -> Result<Status> {
    let pid = workload.pid;
    match procfs::stat(pid).at(Path::new("/proc"))? {
        Some(stat) if stat.start_time == start_time && !stat.is_zombie() => {
            Ok(Status::Running { pid })
        }
        Some(stat) if stat.start_time == start_time => Ok(Status::Exited {
            code: reap(workload)?,
        }),
        _ => Ok(Status::Exited {
            code: recorded_exit_code(workload),
        }),
    }
}

/// Collects the exit status when we are still the parent; after a restart the new parent
/// (init or a subreaper) does, and the code is unknown.
fn reap(workload: &Workload) -> Result<Option<i32>> {
    let code = match waitpid(pid(workload.pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => code,
        Ok(WaitStatus::Signaled(_, signal, _)) => 128 + signal as i32,
        _ => return Ok(recorded_exit_code(workload)),
    };
    let path = workload.state_dir.join(EXIT_CODE_FILE);
    write_durably(&path, code.to_string().as_bytes())?;
    Ok(Some(code))
}

fn recorded_exit_code(workload: &Workload) -> Option<i32> {
    fs::read_to_string(workload.state_dir.join(EXIT_CODE_FILE))
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

fn pid(pid: u32) -> Pid {
    Pid::from_raw(pid as libc::pid_t)
}

/// The process group led by `pid`, as `kill` names it.
fn group(pid: u32) -> Pid {
    Pid::from_raw(-(pid as libc::pid_t))
}

pub(crate) fn stop(workload: &Workload, start_time: u64, grace: Duration) -> Result<()> {
    let leader = procfs::stat(workload.pid).at(Path::new("/proc"))?;
    // Another process holding the pid means our group is gone: the kernel does not hand out
    // a pid still in use as a group id. No process at all may still leave our group behind
    // (the leader died, its children live on).
    let ours = leader.is_none_or(|stat| stat.start_time == start_time);
    if ours {
        signal_group(workload, Signal::SIGTERM);
        if !wait_group_gone(workload, grace) {
            signal_group(workload, Signal::SIGKILL);
            if !wait_group_gone(workload, files::KILL_WAIT) {
                return Err(Error::WontDie {
                    id: workload.id.clone(),
                });
            }
        }
    }
    files::remove_state(&workload.state_dir, &[EXIT_CODE_FILE])
}

fn signal_group(workload: &Workload, signal: Signal) {
    if let Err(error) = kill(group(workload.pid), signal)
        && error != Errno::ESRCH
    {
        tracing::warn!(id = %workload.id, %error, ?signal, "signalling the process group failed");
    }
}

fn wait_group_gone(workload: &Workload, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        // Our own zombie keeps the group alive until reaped.
        let _ = waitpid(pid(workload.pid), Some(WaitPidFlag::WNOHANG));
        if kill(group(workload.pid), None) == Err(Errno::ESRCH) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(files::POLL);
    }
}
