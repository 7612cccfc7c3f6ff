//! The plain web server and the daemon, run as the tests' images will run them. (The worker
//! is tested behind the runtime, in the e2e package.) Building this test makes `cargo test
//! --workspace` build the three programs the e2e tests use.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut response = agent
        .get(format!("http://127.0.0.1:{port}{path}"))
        .call()
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

/// Retries `get` until it answers, for at most 10 s.
fn get_when_up(port: u16, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for _ in 0..200 {
        if let Some(answer) = get(port, path) {
            return answer;
        }
        assert!(Instant::now() < deadline, "nothing answers on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing answers on port {port}")
}

fn exit_code_within(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    for _ in 0..1000 {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

fn start(program: &str, args: &[&str], port: Option<u16>) -> Child {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_remove("PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(port) = port {
        command.env("PORT", port.to_string());
    }
    command.spawn().expect("start the workload")
}

#[test]
fn the_web_server_answers_its_version_health_and_environment_and_stops_on_sigterm() {
    let port = free_port();
    let mut web = start(
        env!("CARGO_BIN_EXE_alien-test-web"),
        &["--version", "v7"],
        Some(port),
    );
    assert_eq!(get_when_up(port, "/"), (200, "v7".to_owned()));
    assert_eq!(get_when_up(port, "/health").0, 200);
    let (status, env) = get_when_up(port, "/env");
    assert_eq!(status, 200);
    let env: serde_json::Value = serde_json::from_str(&env).expect("JSON");
    assert_eq!(env["PORT"], port.to_string());
    assert_eq!(get_when_up(port, "/nothing").0, 404);
    kill(Pid::from_raw(web.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    assert_eq!(exit_code_within(&mut web, Duration::from_secs(10)), Some(0));
}

#[test]
fn exit_at_start_is_a_broken_release() {
    for program in [
        env!("CARGO_BIN_EXE_alien-test-web"),
        env!("CARGO_BIN_EXE_alien-test-daemon"),
        env!("CARGO_BIN_EXE_alien-test-worker"),
    ] {
        let mut child = start(
            program,
            &["--version", "v3", "--exit-at-start"],
            Some(free_port()),
        );
        assert_eq!(
            exit_code_within(&mut child, Duration::from_secs(10)),
            Some(1),
            "{program}"
        );
    }
}

#[test]
fn the_daemon_writes_lines_to_both_streams_and_stops_on_sigterm() {
    let mut daemon = start(
        env!("CARGO_BIN_EXE_alien-test-daemon"),
        &["--version", "d1"],
        None,
    );
    std::thread::sleep(Duration::from_millis(1500));
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    assert_eq!(
        exit_code_within(&mut daemon, Duration::from_secs(10)),
        Some(0)
    );
    let mut stdout = String::new();
    let mut stderr = String::new();
    daemon
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    daemon
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(stdout.contains("alien-test-daemon d1 tick 0"), "{stdout}");
    assert!(stderr.contains("alien-test-daemon d1 tock 0"), "{stderr}");
}
