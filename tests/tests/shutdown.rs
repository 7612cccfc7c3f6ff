//! Stopping: a signal stops the daemons in reverse start order and exits 0 with nothing
//! left running; a supervisor killed outright takes its daemons with it.

use std::time::{Duration, Instant};

use e2e::procfs;
use e2e::{DAEMONS, Options, Server};
use nix::sys::signal::Signal;

const START: Duration = Duration::from_secs(20);
/// Docker's grace period; the supervisor's default budget is 9 s.
const STOP: Duration = Duration::from_secs(10);

/// The daemons named by the supervisor's `stopped` lines, in order.
fn stop_order(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| !l.contains(" | ") && l.contains(" stopped "))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("daemon=")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_stop_signal_stops_everything_in_reverse_order_and_exits_0() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut server = Server::start(Options::default());
        server.wait_healthy(START);
        let daemons = server.daemon_pids();

        let began = Instant::now();
        server.signal(signal);
        let status = server.wait_exit(STOP);
        let took = began.elapsed();
        let status = status.unwrap_or_else(|| {
            panic!(
                "{signal}: still running after {STOP:?}\n{}",
                server.stderr()
            )
        });
        assert!(took < STOP, "{signal}: took {took:?}");
        assert_eq!(
            status.code(),
            Some(0),
            "{signal}: {status:?}\n{}",
            server.stderr()
        );

        // Nothing is left: the supervisor waited for every daemon before exiting.
        let left: Vec<_> = daemons
            .iter()
            .filter(|pid| procfs::is_running(**pid))
            .collect();
        assert!(left.is_empty(), "{signal}: daemons still running: {left:?}");
        assert!(
            server.processes().is_empty(),
            "{signal}: {:?}",
            server.processes()
        );
        // The public port is free again.
        std::net::TcpListener::bind(("127.0.0.1", server.port()))
            .unwrap_or_else(|e| panic!("{signal}: port {} still taken: {e}", server.port()));

        server.wait_output_closed(Duration::from_secs(2));
        let reverse_start_order: Vec<String> =
            DAEMONS.iter().rev().map(|d| d.to_string()).collect();
        assert_eq!(
            stop_order(&server.stderr()),
            reverse_start_order,
            "{signal}:\n{}",
            server.stderr()
        );
        assert!(
            !server.stderr().lines().any(|l| l.starts_with("error:")),
            "{signal}: an orderly stop reported an error:\n{}",
            server.stderr()
        );
    }
}

#[test]
fn a_supervisor_killed_with_sigkill_takes_its_daemons_with_it() {
    let mut server = Server::start(Options::default());
    server.wait_healthy(START);
    let daemons = server.daemon_pids();

    server.signal(Signal::SIGKILL);
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(status.is_some(), "the supervisor survived SIGKILL");
    let left = e2e::wait_for(Duration::from_secs(5), || {
        let left: Vec<i32> = daemons
            .iter()
            .copied()
            .filter(|pid| procfs::is_running(*pid))
            .collect();
        left.is_empty().then_some(())
    });
    assert!(
        left.is_some(),
        "daemons outlived their supervisor: {:?}",
        daemons
            .iter()
            .filter_map(|pid| procfs::proc_info(*pid))
            .collect::<Vec<_>>()
    );
    assert!(server.wait_all_gone(Duration::from_secs(2)).is_empty());
}

/// A daemon that does not answer SIGTERM (here: stopped with SIGSTOP, as a hung process is)
/// is killed when its share of the stop budget runs out, and the stop still ends in time.
#[test]
fn a_hung_daemon_is_killed_when_the_stop_budget_runs_out() {
    let budget = Duration::from_secs(3);
    let mut server = Server::start(Options {
        config: Some(format!(
            "[supervisor]\nstop-timeout-secs = {}\n",
            budget.as_secs()
        )),
        ..Options::default()
    });
    server.wait_healthy(START);
    let manager = server.daemon_pid("manager").expect("manager process");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(manager), Signal::SIGSTOP)
        .expect("SIGSTOP the manager");

    let began = Instant::now();
    server.signal(Signal::SIGTERM);
    let status = server
        .wait_exit(STOP)
        .unwrap_or_else(|| panic!("still running after {STOP:?}\n{}", server.stderr()));
    let took = began.elapsed();
    // The manager gets a quarter of the budget, the others stop at once.
    assert!(
        took >= budget / 4,
        "the hung manager was not waited for: {took:?}"
    );
    assert!(took < budget + Duration::from_secs(2), "took {took:?}");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert!(!procfs::is_running(manager), "the hung manager survived");
    assert!(
        server.stderr().contains("did not stop in time"),
        "{}",
        server.stderr()
    );
    assert!(server.wait_all_gone(Duration::from_secs(2)).is_empty());
}

/// A second signal during a slow stop does not wait for the budget: everything is killed.
#[test]
fn a_second_signal_kills_everything_at_once() {
    let mut server = Server::start(Options {
        config: Some("[supervisor]\nstop-timeout-secs = 60\n".into()),
        ..Options::default()
    });
    server.wait_healthy(START);
    let manager = server.daemon_pid("manager").expect("manager process");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(manager), Signal::SIGSTOP)
        .expect("SIGSTOP the manager");

    let began = Instant::now();
    server.signal(Signal::SIGTERM);
    let first = e2e::wait_for(Duration::from_secs(5), || {
        server.stderr().contains("stopping").then_some(())
    });
    assert!(first.is_some(), "{}", server.stderr());
    server.signal(Signal::SIGINT);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("a second signal did not end it\n{}", server.stderr()));
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "took {:?}",
        began.elapsed()
    );
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert!(
        server.stderr().contains("second signal"),
        "{}",
        server.stderr()
    );
    assert!(server.wait_all_gone(Duration::from_secs(2)).is_empty());
}
