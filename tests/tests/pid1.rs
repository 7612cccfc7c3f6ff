//! In a container the supervisor is PID 1: it must handle signals (the kernel delivers none
//! to PID 1 by default) and reap every orphan in the namespace, or they stay zombies.

use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::procfs;
use e2e::server::running_as_root;
use e2e::{DAEMONS, Isolation, Options, Server};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const START: Duration = Duration::from_secs(20);

/// Starts `sh` inside the server's namespaces; it starts a `sleep` in the background and
/// exits at once, leaving the `sleep` an orphan. Returns the orphan's pid inside the
/// namespace, as `sh` printed it.
fn leave_an_orphan(supervisor: i32) -> i32 {
    let mut command = Command::new("nsenter");
    command.arg("--target").arg(supervisor.to_string());
    if !running_as_root() {
        command.args(["--user", "--preserve-credentials"]);
    }
    let output = command
        .args([
            "--pid",
            "--mount",
            "sh",
            "-c",
            "sleep 300 </dev/null >/dev/null 2>&1 & echo $!",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run nsenter");
    assert!(output.status.success(), "nsenter: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid of the orphan ({e}): {output:?}"))
}

#[test]
fn in_a_pid_namespace_the_supervisor_is_pid_1_and_reaps_orphans() {
    let mut server = Server::start(Options {
        isolation: Isolation::PidNamespace,
        ..Options::default()
    });
    server.wait_healthy(START);
    let supervisor = server.supervisor_pid();
    let info = procfs::proc_info(supervisor).expect("supervisor runs");
    assert_eq!(
        info.ns_pids.last(),
        Some(&1),
        "the supervisor is not PID 1 in its namespace: {info:?}"
    );
    for name in DAEMONS {
        let pid = server
            .daemon_pid(name)
            .unwrap_or_else(|| panic!("no {name}"));
        let daemon = procfs::proc_info(pid).expect("daemon runs");
        assert_eq!(
            daemon.ns_pids.len(),
            info.ns_pids.len(),
            "{name}: {daemon:?}"
        );
    }

    let inner = leave_an_orphan(supervisor);
    // The orphan is reparented to the namespace's init: the supervisor.
    let orphan = e2e::wait_for(Duration::from_secs(5), || {
        procfs::children_of(supervisor)
            .into_iter()
            .find(|p| p.ns_pids.last() == Some(&inner))
    })
    .unwrap_or_else(|| {
        panic!(
            "no orphan with pid {inner} among the supervisor's children: {:?}",
            procfs::children_of(supervisor)
        )
    });
    assert_eq!(
        orphan.argv.first().map(String::as_str),
        Some("sleep"),
        "{orphan:?}"
    );

    kill(Pid::from_raw(orphan.pid), Signal::SIGKILL).expect("kill the orphan");
    // Reaped: gone from the process table, not left a zombie.
    let reaped = e2e::wait_for(Duration::from_secs(5), || {
        procfs::proc_info(orphan.pid).is_none().then_some(())
    });
    assert!(
        reaped.is_some(),
        "the orphan was not reaped: {:?}",
        procfs::proc_info(orphan.pid)
    );
    server.wait_healthy(Duration::from_secs(5));

    // As PID 1 it still stops on SIGTERM, in order, with exit status 0.
    server.stop_cleanly(Duration::from_secs(10));
}
