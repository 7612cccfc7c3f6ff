//! The plain-process backend, with real processes: detached start, exact environment,
//! absolute paths inside the image root, stop with grace, adoption, pid reuse.

mod support;

use std::fs;
use std::time::Duration;

use launcher::{Launcher, Status};
use support::*;

fn launcher() -> Launcher {
    Launcher::process("tests")
}

#[test]
fn runs_from_the_root_with_exactly_the_given_environment() -> TestResult {
    let fixture = Fixture::new()?;
    let mut spec = fixture.spec("env", &["/bin/env"]);
    spec.env = vec![
        ("ONLY".into(), "this".into()),
        ("AND".into(), "that=1".into()),
    ];
    let launcher = launcher();
    let workload = start(&launcher, &spec)?;
    let out = wait_output(&spec.stdout, "AND=")?;
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["AND=that=1", "ONLY=this"]);
    launcher.stop(&workload, Duration::from_secs(1))?;
    Ok(())
}

#[test]
fn absolute_program_and_working_directory_are_inside_the_root() -> TestResult {
    let fixture = Fixture::new()?;
    // The host has its own /bin/sh; the root's is busybox behind an absolute symlink.
    let spec = fixture.spec("paths", &["/bin/sh", "-c", "pwd; exec sleep 30"]);
    let launcher = launcher();
    let workload = start(&launcher, &spec)?;
    let pid = running_pid(&launcher, &workload)?;
    let exe = wait_for(Duration::from_secs(5), || {
        fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .filter(|exe| exe.ends_with("bin/busybox"))
    });
    assert_eq!(exe, Some(fixture.rootfs().join("bin/busybox")));
    let out = wait_output(&spec.stdout, "app")?;
    assert_eq!(
        out.trim(),
        fixture.rootfs().join("app").display().to_string()
    );
    launcher.stop(&workload, Duration::from_secs(1))?;
    Ok(())
}

#[test]
fn relative_program_runs_from_the_working_directory() -> TestResult {
    let fixture = Fixture::new()?;
    let server = fixture.rootfs().join("app/server");
    fs::write(&server, "#!/bin/sh\necho relative ok\n")?;
    fs::set_permissions(&server, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let spec = fixture.spec("relative", &["./server"]);
    let launcher = launcher();
    let workload = start(&launcher, &spec)?;
    wait_output(&spec.stdout, "relative ok")?;
    launcher.stop(&workload, Duration::from_secs(1))?;
    Ok(())
}

fn procfs_gone(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| stat.contains(") Z"))
}

#[test]
fn stop_sends_sigterm_to_the_whole_group_first() -> TestResult {
    scenarios::sigterm_is_honoured(&launcher())
}

#[test]
fn stop_kills_a_workload_that_ignores_sigterm_after_the_grace() -> TestResult {
    scenarios::sigkill_after_the_grace(&launcher())
}

#[test]
fn survives_the_caller_and_is_adopted_by_a_new_launcher() -> TestResult {
    scenarios::survives_the_caller("process", &Launcher::process("restarted"))
}

#[test]
fn exit_code_is_reported_to_the_parent() -> TestResult {
    let fixture = Fixture::new()?;
    let spec = fixture.spec("exit", &["/bin/sh", "-c", "exit 3"]);
    let launcher = launcher();
    let workload = start(&launcher, &spec)?;
    let status = wait_for(Duration::from_secs(10), || {
        launcher
            .status(&workload)
            .ok()
            .filter(|status| *status != Status::Running { pid: workload.pid })
    });
    assert_eq!(status, Some(Status::Exited { code: Some(3) }));
    // Asked again, from a new launcher: the reaped code was kept.
    let adopted = Launcher::process("restarted").adopt(&spec.state_dir)?;
    assert_eq!(launcher.status(&adopted)?, Status::Exited { code: Some(3) });
    launcher.stop(&adopted, Duration::from_secs(1))?;
    Ok(())
}

#[test]
fn a_reused_pid_is_not_mistaken_for_the_workload() -> TestResult {
    let fixture = Fixture::new()?;
    let spec = fixture.spec("reuse", &["/bin/sleep", "300"]);
    let launcher = launcher();
    let workload = start(&launcher, &spec)?;
    // The record as it would be if this pid now belonged to another process.
    let record = spec.state_dir.join("workload.json");
    let original = fs::read_to_string(&record)?;
    let mut value: serde_json::Value = serde_json::from_str(&original)?;
    let start_time = value["backend"]["start_time"]
        .as_u64()
        .ok_or("no start time")?;
    value["backend"]["start_time"] = (start_time + 1).into();
    fs::write(&record, serde_json::to_vec(&value)?)?;
    let impostor = launcher.adopt(&spec.state_dir)?;

    assert_eq!(launcher.status(&impostor)?, Status::Exited { code: None });
    launcher.stop(&impostor, Duration::from_millis(100))?;
    assert_eq!(
        launcher.status(&workload)?,
        Status::Missing,
        "stop removes the record"
    );
    assert!(
        !procfs_gone(workload.pid),
        "stop killed a process that is not ours"
    );

    fs::create_dir_all(&spec.state_dir)?;
    fs::write(&record, original)?;
    assert_eq!(
        launcher.status(&workload)?,
        Status::Running { pid: workload.pid }
    );
    launcher.stop(&workload, Duration::from_secs(1))?;
    assert!(procfs_gone(workload.pid));
    Ok(())
}

#[test]
fn a_missing_program_fails_the_start() -> TestResult {
    let fixture = Fixture::new()?;
    let spec = fixture.spec("missing", &["/bin/nope"]);
    assert!(matches!(
        launcher().start(&spec),
        Err(launcher::Error::Spawn { .. })
    ));
    Ok(())
}
