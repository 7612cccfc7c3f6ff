//! `alien serve` refuses to start on a configuration it cannot use (exit 2) or in conditions
//! it cannot run in (exit 1), with one `error:` line that says why, and leaves nothing
//! running or half-created.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::server::{free_port, running_as_root, set_mode, temp_dir, unprivileged_prefix};
use e2e::{Invocation, Options, Server};

/// A refusal is immediate; a process still running after this has started instead.
const REFUSAL: Duration = Duration::from_secs(10);

/// What is arranged before `alien serve` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Nothing,
    /// Something already listens on the port.
    PortTaken,
    /// The data directory exists, owned by root with mode 0755, and the server runs
    /// unprivileged (as `nobody` when the tests run as root, else after `chmod 0555`).
    DataDirReadOnly,
    /// A regular file where the data directory should be.
    DataDirIsFile,
    /// So deep that the daemons' Unix socket paths would not fit in `sun_path`.
    DataDirTooDeep,
    /// Another `alien serve` runs on the same data directory.
    AlreadyRunning,
}

struct Case {
    name: &'static str,
    setup: Setup,
    /// Written to a file passed with `-c`.
    config: Option<&'static str>,
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    code: i32,
    /// Each must be in the error line. `{file}`, `{data}`, `{port}` and `{pid}` stand for the
    /// config file, the data directory, the port and the running supervisor's pid.
    fragments: &'static [&'static str],
    /// The data directory must not exist afterwards (it did not before).
    no_data_dir: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "unknown key",
        setup: Setup::Nothing,
        config: Some("[server]\nfoo = 1\n"),
        env: &[],
        args: &[],
        code: 2,
        fragments: &["error: {file}:2:1: key `server.foo`: unknown field `foo`"],
        no_data_dir: true,
    },
    Case {
        name: "unknown section",
        setup: Setup::Nothing,
        config: Some("[server]\nport = 8080\n\n[serve]\nport = 1\n"),
        env: &[],
        args: &[],
        code: 2,
        fragments: &["error: {file}:4:2: key `serve`: unknown field `serve`"],
        no_data_dir: true,
    },
    Case {
        name: "unknown supervisor key",
        setup: Setup::Nothing,
        config: Some("[supervisor]\nrestart-backoff = 3\n"),
        env: &[],
        args: &[],
        code: 2,
        fragments: &["error: {file}:2:1: key `supervisor.restart-backoff`: unknown field"],
        no_data_dir: true,
    },
    Case {
        name: "wrong type",
        setup: Setup::Nothing,
        config: Some("[server]\nport = \"eighty\"\n"),
        env: &[],
        args: &[],
        code: 2,
        fragments: &["error: {file}:2:8: key `server.port`: invalid type: string \"eighty\""],
        no_data_dir: true,
    },
    Case {
        name: "wrong type in [supervisor]",
        setup: Setup::Nothing,
        config: Some("[supervisor]\nstop-timeout-secs = -1\n"),
        env: &[],
        args: &[],
        code: 2,
        fragments: &["error: {file}:2:21: key `supervisor.stop-timeout-secs`: invalid value"],
        no_data_dir: true,
    },
    Case {
        name: "malformed TOML",
        setup: Setup::Nothing,
        config: Some("[server\nport = 1\n"),
        env: &[],
        args: &[],
        code: 2,
        fragments: &["error: {file}:1:8: "],
        no_data_dir: true,
    },
    Case {
        name: "zero crash-loop restarts",
        setup: Setup::Nothing,
        config: Some("[supervisor]\ncrash-loop-restarts = 0\n"),
        env: &[],
        args: &[],
        code: 2,
        fragments: &["key `supervisor.crash-loop-restarts`: must be greater than zero"],
        no_data_dir: true,
    },
    Case {
        name: "initial backoff above the maximum",
        setup: Setup::Nothing,
        config: Some(
            "[supervisor]\nrestart-backoff-initial-ms = 5000\nrestart-backoff-max-secs = 1\n",
        ),
        env: &[],
        args: &[],
        code: 2,
        fragments: &[
            "key `supervisor.restart-backoff-initial-ms`: must not exceed restart-backoff-max-secs",
        ],
        no_data_dir: true,
    },
    Case {
        name: "-c names a missing file",
        setup: Setup::Nothing,
        config: None,
        env: &[],
        args: &["-c", "no-such-file.toml"],
        code: 2,
        fragments: &["error: config file no-such-file.toml does not exist"],
        no_data_dir: true,
    },
    Case {
        name: "PORT is not a number",
        setup: Setup::Nothing,
        config: None,
        env: &[("PORT", "eighty")],
        args: &[],
        code: 2,
        fragments: &["error: environment variable PORT: \"eighty\" is not a port number"],
        no_data_dir: true,
    },
    Case {
        name: "PORT is out of range",
        setup: Setup::Nothing,
        config: None,
        env: &[("PORT", "65536")],
        args: &[],
        code: 2,
        fragments: &["error: environment variable PORT: \"65536\" is not a port number"],
        no_data_dir: true,
    },
    Case {
        name: "BASE_URL is not a URL",
        setup: Setup::Nothing,
        config: None,
        env: &[("BASE_URL", "manager.example.test")],
        args: &[],
        code: 2,
        fragments: &[
            "BASE_URL",
            "\"manager.example.test\"",
            "http:// or https://",
        ],
        no_data_dir: true,
    },
    Case {
        name: "BASE_URL is not http",
        setup: Setup::Nothing,
        config: None,
        env: &[("BASE_URL", "ftp://manager.example.test")],
        args: &[],
        code: 2,
        fragments: &["BASE_URL", "\"ftp://manager.example.test\""],
        no_data_dir: true,
    },
    Case {
        name: "HOST is not an IP address",
        setup: Setup::Nothing,
        config: None,
        env: &[("HOST", "localhost")],
        args: &[],
        code: 2,
        fragments: &["key `server.host`: \"localhost\" is not an IP address"],
        no_data_dir: true,
    },
    Case {
        name: "port in use",
        setup: Setup::PortTaken,
        config: None,
        env: &[],
        args: &[],
        code: 1,
        fragments: &["error: port {port} is already in use"],
        no_data_dir: true,
    },
    Case {
        name: "data directory not writable",
        setup: Setup::DataDirReadOnly,
        config: None,
        env: &[],
        args: &[],
        code: 1,
        fragments: &["error: data directory {data} is not writable"],
        no_data_dir: false,
    },
    Case {
        name: "data directory is a file",
        setup: Setup::DataDirIsFile,
        config: None,
        env: &[],
        args: &[],
        code: 1,
        fragments: &["error: data directory {data} cannot be created"],
        no_data_dir: false,
    },
    Case {
        name: "data directory too deep",
        setup: Setup::DataDirTooDeep,
        config: None,
        env: &[],
        args: &[],
        code: 1,
        fragments: &["error: data directory {data} is too deep"],
        no_data_dir: true,
    },
    Case {
        name: "another alien serve on the data directory",
        setup: Setup::AlreadyRunning,
        config: None,
        env: &[],
        args: &[],
        code: 1,
        fragments: &[
            "error: another alien serve is already running on data directory {data} (pid {pid})",
        ],
        no_data_dir: false,
    },
];

/// What a case runs against, kept alive until its checks are done.
struct Arranged {
    data: PathBuf,
    port: u16,
    prefix: Vec<OsString>,
    pid: Option<i32>,
    _listener: Option<std::net::TcpListener>,
    _running: Option<Server>,
}

fn arrange(setup: Setup, dir: &Path) -> Arranged {
    let mut arranged = Arranged {
        data: dir.join("data"),
        port: free_port(),
        prefix: Vec::new(),
        pid: None,
        _listener: None,
        _running: None,
    };
    match setup {
        Setup::Nothing => {}
        Setup::PortTaken => {
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
            arranged.port = listener.local_addr().expect("address").port();
            arranged._listener = Some(listener);
        }
        Setup::DataDirReadOnly => {
            std::fs::create_dir(&arranged.data).expect("create data directory");
            if running_as_root() {
                set_mode(&arranged.data, 0o755);
                arranged.prefix = unprivileged_prefix();
            } else {
                set_mode(&arranged.data, 0o555);
            }
        }
        Setup::DataDirIsFile => {
            std::fs::write(&arranged.data, "").expect("create file");
        }
        Setup::DataDirTooDeep => {
            let mut deep = dir.to_path_buf();
            while deep.as_os_str().len() < 120 {
                deep.push("deeper");
            }
            arranged.data = deep;
        }
        Setup::AlreadyRunning => {
            let mut first = Server::start(Options {
                data_dir: Some(arranged.data.clone()),
                ..Options::default()
            });
            first.wait_healthy(Duration::from_secs(20));
            arranged.pid = Some(first.supervisor_pid());
            arranged._running = Some(first);
        }
    }
    arranged
}

fn run(case: &Case) {
    let dir = temp_dir();
    let arranged = arrange(case.setup, dir.path());
    let file = dir.path().join("alien-manager.toml");
    let mut args: Vec<OsString> = vec!["serve".into()];
    if !case.env.iter().any(|(name, _)| *name == "PORT") {
        args.extend(["--port".into(), arranged.port.to_string().into()]);
    }
    if !case.env.iter().any(|(name, _)| *name == "HOST") {
        args.extend(["--host".into(), "127.0.0.1".into()]);
    }
    args.extend(["--data-dir".into(), arranged.data.clone().into()]);
    if let Some(config) = case.config {
        std::fs::write(&file, config).expect("write config");
        args.extend(["-c".into(), file.clone().into()]);
    }
    args.extend(case.args.iter().map(OsString::from));
    let invocation = Invocation {
        prefix: arranged.prefix.clone(),
        args,
        env: case
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cwd: Some(dir.path().to_path_buf()),
    };

    let finished = invocation.run(REFUSAL);
    let name = case.name;
    assert_eq!(finished.code(), Some(case.code), "{name}: {finished:?}");
    assert_eq!(finished.stdout, "", "{name}: stdout");
    let lines: Vec<&str> = finished.stderr.lines().collect();
    let last = lines.last().copied().unwrap_or_default();
    assert!(last.starts_with("error: "), "{name}: {finished:?}");
    for fragment in case.fragments {
        let fragment = fragment
            .replace("{file}", &file.display().to_string())
            .replace("{data}", &arranged.data.display().to_string())
            .replace("{port}", &arranged.port.to_string())
            .replace("{pid}", &arranged.pid.unwrap_or_default().to_string());
        assert!(
            last.contains(&fragment),
            "{name}: {fragment:?} is not in {last:?}"
        );
    }
    // Refused before anything started: the error is all there is.
    assert_eq!(lines.len(), 1, "{name}: {}", finished.stderr);
    if case.no_data_dir {
        assert!(
            !arranged.data.exists(),
            "{name}: the data directory was created"
        );
    }
    // Nothing of this invocation runs on (the other server of AlreadyRunning does, and must).
    let ours = e2e::wait_for(Duration::from_secs(5), || {
        let left: Vec<_> = e2e::procfs::live_processes()
            .into_iter()
            .filter(|p| p.uses_data_dir(&arranged.data) && Some(p.ppid) != arranged.pid)
            .filter(|p| Some(p.pid) != arranged.pid)
            .collect();
        left.is_empty().then_some(())
    });
    assert!(ours.is_some(), "{name}: processes left running");
    if let Some(server) = &arranged._running {
        let health = server.get("/health");
        assert_eq!(
            health.status, 200,
            "{name}: the running server was disturbed"
        );
    }
}

/// Runs every case with exit code `code`, and fails naming all the cases that failed (each
/// has printed why), not only the first.
fn run_all(code: i32) {
    let failed: Vec<&str> = CASES
        .iter()
        .filter(|case| case.code == code)
        .filter(|case| std::panic::catch_unwind(|| run(case)).is_err())
        .map(|case| case.name)
        .collect();
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}

#[test]
fn configuration_errors_exit_2_with_the_file_line_and_key() {
    run_all(2);
}

#[test]
fn start_conditions_that_cannot_be_met_exit_1_and_say_why() {
    run_all(1);
}
