//! Checks both backends must pass, each run by the backend's test file.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use launcher::{Launcher, Status};

use super::*;

/// SIGTERM reaches the workload, which ends at once; nothing of it (a background child
/// included) is left, and neither is its state.
pub fn sigterm_is_honoured(launcher: &Launcher) -> TestResult {
    let fixture = Fixture::new()?;
    let spec = fixture.spec(
        "term",
        &[
            "/bin/sh",
            "-c",
            "sleep 300 & trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    );
    let workload = start(launcher, &spec)?;
    running_pid(launcher, &workload)?;
    wait_output(&spec.stdout, "ready")?;
    let started = Instant::now();
    launcher.stop(&workload, Duration::from_secs(20))?;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "SIGTERM was not honoured"
    );
    assert!(fs::read_to_string(&spec.stdout)?.contains("got-term"));
    let holders = wait_for(Duration::from_secs(5), || {
        holders_of(&spec.stdout).ok().filter(Vec::is_empty)
    });
    assert_eq!(
        holders,
        Some(Vec::new()),
        "processes of the workload live on"
    );
    assert_eq!(launcher.status(&workload)?, Status::Missing);
    assert!(!spec.state_dir.exists(), "state left behind");
    let mounts = fs::read_to_string("/proc/mounts")?;
    assert!(!mounts.contains(&spec.state_dir.display().to_string()));
    Ok(())
}

/// A workload that ignores SIGTERM is killed once the grace is over, not before.
pub fn sigkill_after_the_grace(launcher: &Launcher) -> TestResult {
    let fixture = Fixture::new()?;
    let spec = fixture.spec(
        "stubborn",
        &[
            "/bin/sh",
            "-c",
            "trap '' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    );
    let workload = start(launcher, &spec)?;
    let pid = running_pid(launcher, &workload)?;
    wait_output(&spec.stdout, "ready")?;
    let started = Instant::now();
    launcher.stop(&workload, Duration::from_millis(1500))?;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "killed before the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let gone = wait_for(Duration::from_secs(5), || {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"));
        stat.map_or(true, |stat| stat.contains(") Z")).then_some(())
    });
    assert!(gone.is_some(), "pid {pid} still runs");
    Ok(())
}

/// A workload started by a process that then exits keeps serving, holds no pipe to it, and
/// a new launcher (`restarted`) adopts and stops it. `backend` is what
/// [`start_from_child`] takes.
pub fn survives_the_caller(backend: &str, restarted: &Launcher) -> TestResult {
    let fixture = Fixture::new()?;
    let port = free_port()?;
    let state = start_from_child(&fixture, backend, port)?;
    let workload = Started::new(restarted, restarted.adopt(&state)?);
    let pid = running_pid(restarted, &workload)?;
    assert_eq!(workload.pid, pid);
    let body = get_when_up(|| std::net::TcpStream::connect(("127.0.0.1", port)))?;
    assert_eq!(body.trim(), "child");
    let (parent, pipes) = parent_and_pipes(pid)?;
    assert_ne!(parent, std::process::id());
    assert!(pipes.is_empty(), "pipes to a caller: {pipes:?}");
    restarted.stop(&workload, Duration::from_secs(5))?;
    assert_eq!(restarted.status(&workload)?, Status::Missing);
    Ok(())
}

/// The pids that have `file` open.
fn holders_of(file: &Path) -> std::io::Result<Vec<u32>> {
    let file = fs::canonicalize(file)?;
    let mut holders = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A process may end while we look; it holds nothing then.
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == file))
        {
            holders.push(pid);
        }
    }
    Ok(holders)
}
