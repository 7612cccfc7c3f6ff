//! A daemon that dies is started again, in a new process, and the system is healthy again.

use std::time::Duration;

use e2e::procfs;
use e2e::{DAEMONS, Options, Server};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const START: Duration = Duration::from_secs(20);
/// The default backoff starts at 250 ms; a restart is well within this.
const RESTART: Duration = Duration::from_secs(10);

#[test]
fn each_daemon_killed_with_sigkill_is_restarted_and_healthy_again() {
    let mut server = Server::start(Options::default());
    server.wait_healthy(START);
    let token = server.admin_token();
    for name in DAEMONS {
        let old = server
            .daemon_pid(name)
            .unwrap_or_else(|| panic!("no {name} process"));
        kill(Pid::from_raw(old), Signal::SIGKILL).expect("kill -9");
        let new = server.wait_daemon_pid(name, Some(old), RESTART);
        assert!(!procfs::is_running(old), "{name}: old pid {old} still runs");
        assert!(
            procfs::proc_info(new).is_some_and(|p| p.pgid == new),
            "{name}: restarted outside its own process group"
        );
        server.wait_healthy(RESTART);
        // The supervisor says what happened.
        server.wait_log_line(RESTART, |line| {
            line.contains("daemon died; restarting")
                && line.contains(&format!("daemon={name} "))
                && line.contains("SIGKILL")
        });
        // The restarted daemon serves the API (the manager's state survived it).
        let whoami = server.get_with_auth("/v1/whoami", &format!("Bearer {token}"));
        assert_eq!(
            whoami.status, 200,
            "after restarting {name}: {}",
            whoami.body
        );
    }
    assert!(
        !server.has_exited(),
        "the supervisor exited:\n{}",
        server.stderr()
    );
    let restarts = server
        .stderr()
        .lines()
        .filter(|l| l.contains("daemon died; restarting"))
        .count();
    assert_eq!(
        restarts,
        DAEMONS.len(),
        "one restart per kill:\n{}",
        server.stderr()
    );
}
