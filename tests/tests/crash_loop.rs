//! A daemon that cannot start keeps dying. A critical one (registryd, commandd, manager)
//! brings the whole system down with a clear message; otelfwd only degrades it, and comes
//! back once the cause is gone.
//!
//! The real way to make a sidecar fail at start: replace its state directory with a regular
//! file, then kill it so that it is restarted.

use std::path::Path;
use std::time::Duration;

use e2e::{Invocation, Options, Server};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const START: Duration = Duration::from_secs(20);

/// Three deaths within 30 s is a crash loop; restarts after 50, 100, 200 ms: the loop is
/// detected within a second of the first death.
const FAST_CRASH_LOOP: &str = "\
[supervisor]
crash-loop-restarts = 3
crash-loop-window-secs = 30
restart-backoff-initial-ms = 50
restart-backoff-max-secs = 1
";

/// Long enough for the loop above to be detected and acted on.
const VERDICT: Duration = Duration::from_secs(10);

fn replace_with_file(dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
    std::fs::write(dir, "not a directory\n").expect("write file");
}

fn kill_daemon(server: &Server, name: &str) -> i32 {
    let pid = server
        .daemon_pid(name)
        .unwrap_or_else(|| panic!("no {name} process"));
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9");
    pid
}

fn start_with_fast_crash_loop() -> Server {
    let mut server = Server::start(Options {
        config: Some(FAST_CRASH_LOOP.into()),
        ..Options::default()
    });
    server.wait_healthy(START);
    // Healthy is what the clients see; the supervisor counts the manager as started only once
    // its own probe has passed. Breaking a daemon before that is a failed start, not a loop.
    let started = e2e::wait_for(START, || {
        server
            .stderr()
            .contains("alien-manager is ready")
            .then_some(())
    });
    assert!(started.is_some(), "{}", server.stderr());
    server
}

#[test]
fn a_daemon_that_cannot_start_at_all_fails_the_start() {
    let state = e2e::server::temp_dir();
    let data_dir = state.path().join("data");
    std::fs::create_dir(&data_dir).expect("create data directory");
    std::fs::write(data_dir.join("registry"), "not a directory\n").expect("write file");
    let mut server = Server::start(Options {
        config: Some(FAST_CRASH_LOOP.into()),
        data_dir: Some(data_dir),
        ..Options::default()
    });

    let status = server.wait_exit(VERDICT).unwrap_or_else(|| {
        panic!(
            "alien serve still runs {VERDICT:?} after registryd failed to start\nstderr:\n{}",
            server.stderr()
        )
    });
    assert_eq!(status.code(), Some(1), "{status:?}\n{}", server.stderr());
    server.wait_output_closed(Duration::from_secs(2));
    let stderr = server.stderr();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        // The daemon's own last words name what is wrong: its state directory.
        last.starts_with("error: registryd failed to start: ")
            && last.contains(&format!("{}/registry", server.data_dir().display())),
        "last line {last:?}\nstderr:\n{stderr}"
    );
    // The manager never started, so no admin key was made.
    assert_eq!(server.stdout(), "");
    let left = server.wait_all_gone(Duration::from_secs(5));
    assert!(left.is_empty(), "still running: {left:?}");
}

/// Makes a daemon fail at every start from now on, in a way it would meet in production.
struct Breakage {
    daemon: &'static str,
    what: &'static str,
    apply: fn(&Path),
}

const CRITICAL: [Breakage; 3] = [
    Breakage {
        daemon: "registryd",
        what: "its state directory is a file",
        apply: |data| replace_with_file(&data.join("registry")),
    },
    Breakage {
        daemon: "commandd",
        what: "its state directory is a file",
        apply: |data| replace_with_file(&data.join("commands")),
    },
    Breakage {
        daemon: "manager",
        what: "its database is a directory",
        apply: |data| {
            for file in ["manager.db", "manager.db-wal", "manager.db-shm"] {
                let _ = std::fs::remove_file(data.join(file));
            }
            std::fs::create_dir(data.join("manager.db")).expect("create directory");
        },
    },
];

fn critical_crash_loop_stops_everything(breakage: &Breakage) {
    let daemon = breakage.daemon;
    let mut server = start_with_fast_crash_loop();
    (breakage.apply)(server.data_dir());
    kill_daemon(&server, daemon);

    let status = server.wait_exit(VERDICT).unwrap_or_else(|| {
        panic!(
            "{daemon} ({}): the supervisor still runs {VERDICT:?} after the crash loop began\nstderr:\n{}",
            breakage.what,
            server.stderr()
        )
    });
    assert_eq!(
        status.code(),
        Some(1),
        "{daemon}: {status:?}\n{}",
        server.stderr()
    );
    server.wait_output_closed(Duration::from_secs(2));
    let stderr = server.stderr();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("error: {daemon} is crash-looping (")),
        "{daemon}: last line {last:?}\nstderr:\n{stderr}"
    );
    let left = server.wait_all_gone(Duration::from_secs(5));
    assert!(left.is_empty(), "{daemon}: still running: {left:?}");
}

#[test]
fn a_crash_looping_critical_daemon_stops_everything() {
    // In parallel: each case waits for the supervisor's verdict.
    let failed: Vec<&str> = std::thread::scope(|scope| {
        let cases: Vec<_> = CRITICAL
            .iter()
            .map(|b| {
                (
                    b.daemon,
                    scope.spawn(|| critical_crash_loop_stops_everything(b)),
                )
            })
            .collect();
        cases
            .into_iter()
            .filter_map(|(daemon, case)| case.join().is_err().then_some(daemon))
            .collect()
    });
    assert!(failed.is_empty(), "failed for {failed:?}");
}

#[test]
fn a_crash_looping_otelfwd_degrades_the_system_until_it_can_start_again() {
    let mut server = start_with_fast_crash_loop();
    let telemetry = server.data_dir().join("telemetry");
    replace_with_file(&telemetry);
    let first = kill_daemon(&server, "otelfwd");

    let health = server.wait_health(503, VERDICT);
    let body = health.json();
    assert_eq!(body["status"], "unhealthy", "{body}");
    let otelfwd = body["daemons"]["otelfwd"].as_str().unwrap_or_default();
    assert!(otelfwd.starts_with("unavailable"), "{body}");
    for name in ["registryd", "commandd", "manager"] {
        assert_eq!(body["daemons"][name], "ready", "{body}");
    }
    // `alien health` says so too.
    let check = Invocation::new([
        "health",
        "--port",
        &server.port().to_string(),
        "--host",
        "127.0.0.1",
    ])
    .run(Duration::from_secs(10));
    assert_eq!(check.code(), Some(1), "{check:?}");

    server.wait_log_line(VERDICT, |line| {
        line.contains("crash-looping") && line.contains("daemon=otelfwd")
    });
    assert!(
        !server.has_exited(),
        "the supervisor gave up on otelfwd:\n{}",
        server.stderr()
    );
    // Still retrying: more deaths are logged after the verdict.
    let deaths = |s: &Server| {
        s.stderr()
            .lines()
            .filter(|l| l.contains("daemon died; restarting") && l.contains("daemon=otelfwd"))
            .count()
    };
    let seen = deaths(&server);
    e2e::wait_for(VERDICT, || (deaths(&server) > seen).then_some(()))
        .unwrap_or_else(|| panic!("otelfwd is no longer retried:\n{}", server.stderr()));

    std::fs::remove_file(&telemetry).expect("remove the file");
    // The backoff is capped at 1 s, so the next try comes soon and succeeds.
    server.wait_healthy(VERDICT);
    let new = server.wait_daemon_pid("otelfwd", Some(first), VERDICT);
    assert!(
        telemetry.is_dir(),
        "otelfwd did not recreate its state directory"
    );
    assert!(!server.has_exited(), "{}", server.stderr());
    assert!(server.daemon_pid("otelfwd") == Some(new));
}
