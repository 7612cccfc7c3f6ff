//! Installing the agent from the manager, as a customer's machine does with no internet: the
//! one-liner of a new deployment-group token fetches `GET /install`, whose script downloads
//! the manager's own binary and its checksum, checks it, installs it and the token, and
//! prints how to run the agent (no systemd here); the agent run that way takes the release.
//! The script runs under dash and busybox sh, refuses a download that does not match the
//! checksum, and writes a unit that systemd accepts where systemd runs. Behind TLS with a
//! private CA, `--ca-file` makes the downloads and the agent trust it.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use e2e::api::{Api, Request, unique};
use e2e::capture::Stream;
use e2e::deployments::{endpoint, get, release, web_stack};
use e2e::server::{UNPRIVILEGED_UID, running_as_root, set_mode, temp_dir, unprivileged_prefix};
use e2e::tls::TlsFront;
use e2e::{Options, wait_for};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;

/// Downloading and checking a debug build's binary (about 300 MB) takes seconds.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(90);
const FOREGROUND: &str = "Run the agent in the foreground with:";

/// The settings of the script and of the agent that the tests' own environment must not
/// lend them.
const CLEARED_ENV: [&str; 13] = [
    "INSTALL_DIR",
    "CONFIG_DIR",
    "SYSTEMD_UNIT_DIR",
    "SYNC_URL",
    "SYNC_TOKEN",
    "SYNC_TOKEN_FILE",
    "DEPLOYMENT_ID",
    "OPERATOR_NAME",
    "PLATFORM",
    "DATA_DIR",
    "SYNC_INTERVAL",
    "OPERATOR_INITIAL_DESIRED_RELEASE",
    "SYNC_CA_FILE",
];

/// The URL the manager bakes into its script: `base-url`'s default.
fn configured_base(api: &Api) -> String {
    format!("http://localhost:{}", api.server().port())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The install script as the manager serves it.
fn fetch_script(api: &Api) -> String {
    let reply = api.send(&Request::get("/install"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    reply.body
}

/// A finished script: its status, stdout and stderr.
#[derive(Debug)]
struct Ran {
    success: bool,
    stdout: String,
    stderr: String,
}

/// `program`, without the variables of [`CLEARED_ENV`].
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    for name in CLEARED_ENV {
        command.env_remove(name);
    }
    command
}

/// Runs `command` with `stdin`, for at most [`SCRIPT_TIMEOUT`].
fn run(mut command: Command, stdin: &str) -> Ran {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stdout = Stream::follow(child.stdout.take().expect("stdout"));
    let stderr = Stream::follow(child.stderr.take().expect("stderr"));
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("write the script");
    }
    let status = wait_for(SCRIPT_TIMEOUT, || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{command:?} still running after {SCRIPT_TIMEOUT:?}\n{}\n{}",
            stdout.text(),
            stderr.text()
        );
    };
    stdout.wait_closed(Duration::from_secs(5));
    stderr.wait_closed(Duration::from_secs(5));
    Ran {
        success: status.success(),
        stdout: stdout.text(),
        stderr: stderr.text(),
    }
}

/// `shell -s -- args...`, reading the script from stdin as `curl ... | sh -s --` does.
fn shell(program: &str, args: &[&str]) -> Command {
    let mut command = command(program);
    command.arg("-s").arg("--").args(args);
    command
}

/// The command line the script printed to run the agent in the foreground.
fn foreground_command(ran: &Ran) -> String {
    let mut lines = ran.stdout.lines().skip_while(|line| *line != FOREGROUND);
    assert!(
        lines.next().is_some(),
        "no foreground command printed:\n{}\n{}",
        ran.stdout,
        ran.stderr
    );
    lines
        .map(str::trim)
        .find(|line| !line.is_empty())
        .expect("a command after the header")
        .to_owned()
}

/// The installed binary is the one the manager runs, byte for byte, and executable.
fn assert_is_the_served_binary(installed: &Path) {
    let expected = std::fs::read(e2e::alien_binary()).expect("the test's alien");
    let got = std::fs::read(installed).unwrap_or_else(|e| panic!("{}: {e}", installed.display()));
    assert!(
        got == expected,
        "{} differs from the manager's binary",
        installed.display()
    );
    assert_eq!(mode(installed), 0o755, "{}", installed.display());
}

fn assert_token_file(path: &Path, token: &str) {
    assert_eq!(
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        format!("{token}\n")
    );
    assert_eq!(mode(path), 0o600, "{}", path.display());
}

/// A PATH entry that makes `name` run `program`.
fn bin_dir_with(dir: &Path, links: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("bin directory");
    for (name, program) in links {
        std::os::unix::fs::symlink(program, dir.join(name)).expect("symlink");
    }
    dir.to_path_buf()
}

fn path_with(first: &Path) -> String {
    format!(
        "{}:{}",
        first.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The agent started from the printed command line, by a shell in a process group of its
/// own; stopped when dropped (SIGTERM to the group, SIGKILL if it is still there after 20 s),
/// so that the agent stops its workloads too.
struct Foreground {
    child: Child,
    log: PathBuf,
}

impl Foreground {
    fn start(command_line: &str, log: PathBuf) -> Foreground {
        let file = std::fs::File::create(&log).expect("agent log");
        let child = command("sh")
            .arg("-c")
            .arg(command_line)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .process_group(0)
            .spawn()
            .expect("start the printed command");
        Foreground { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test at once when the command has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the printed command exited ({status}):\n{}", self.log());
        }
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let _ = self.child.wait();
        let gone = wait_for(Duration::from_secs(20), || {
            killpg(group, None).is_err().then_some(())
        });
        if gone.is_none() {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

/// Waits until the agent started from the printed command runs `release` as the group's
/// deployment (named `name`, when given), and its `web` answers `tag`.
fn serves_the_release(
    api: &Api,
    group_id: &str,
    name: Option<&str>,
    release: &str,
    tag: &str,
    agent: &mut Foreground,
) {
    let mut last = Value::Null;
    let running = wait_for(SETTLE, || {
        agent.assert_running();
        let listed = api.expect(
            &Request::get(format!("/v1/deployments?deploymentGroupId={group_id}"))
                .auth(api.admin()),
            200,
        );
        last = listed["items"][0].clone();
        (name.is_none_or(|name| last["name"] == name)
            && last["status"] == "running"
            && last["currentReleaseId"] == release)
            .then(|| last["id"].as_str().map(str::to_owned))
            .flatten()
    })
    .unwrap_or_else(|| panic!("the agent did not run {release}: {last:#}\n{}", agent.log()));
    let url = endpoint(&api.deployment(&running), "web");
    let answered = wait_for(Duration::from_secs(10), || {
        (get(&url) == Some((200, tag.to_owned()))).then_some(())
    });
    assert!(
        answered.is_some(),
        "{url} did not answer {tag}: {:?}\n{}",
        get(&url),
        agent.log()
    );
}

#[test]
fn the_one_liner_of_a_new_token_installs_the_agent_and_the_printed_command_runs_the_release() {
    let api = Api::start();
    let base = configured_base(&api);
    let tag = format!("install-p{}", std::process::id());
    let image = e2e::workloads::push(&api, "alien-test-web", &tag, &[]);
    let first = release(&api, web_stack(&image));
    let group = api.create_group();
    let minted = api.expect(
        &Request::post_empty(format!("/v1/deployment-groups/{}/tokens", group.id))
            .auth(api.admin()),
        200,
    );
    let token = minted["token"].as_str().expect("a token").to_owned();
    let one_liner = minted["installCommand"]
        .as_str()
        .unwrap_or_else(|| panic!("no installCommand: {minted}"))
        .to_owned();
    assert_eq!(
        one_liner,
        format!("curl -fsSL {base}/install | sh -s -- --token {token}")
    );

    // Pasted as it is, with options after it; `sh` is dash.
    let work = api.server().work_dir().join("install");
    let bin = bin_dir_with(&work.join("shells"), &[("sh", "/usr/bin/dash")]);
    let (install_dir, config_dir, data_dir) = (
        work.join("bin"),
        work.join("config"),
        work.join("agent-data"),
    );
    let units = work.join("units");
    let name = unique("host");
    let mut command = command("dash");
    command
        .arg("-c")
        .arg(format!(
            "{one_liner} --name {name} --data-dir {} --no-start",
            data_dir.display()
        ))
        .env("PATH", path_with(&bin))
        .env("INSTALL_DIR", &install_dir)
        .env("CONFIG_DIR", &config_dir)
        .env("SYSTEMD_UNIT_DIR", &units);
    let ran = run(command, "");
    assert!(
        ran.success,
        "the install failed:\n{}\n{}",
        ran.stdout, ran.stderr
    );

    assert_is_the_served_binary(&install_dir.join("alien"));
    assert_token_file(&config_dir.join("token"), &token);
    assert_eq!(mode(&config_dir), 0o700);
    assert!(!units.exists(), "a unit was written without systemd");
    let printed = foreground_command(&ran);
    assert_eq!(
        printed,
        format!(
            "SYNC_URL='{base}' SYNC_TOKEN_FILE='{}' DATA_DIR='{}' OPERATOR_NAME='{name}' '{}' agent",
            config_dir.join("token").display(),
            data_dir.display(),
            install_dir.join("alien").display()
        )
    );
    assert!(
        std::fs::read_dir(&install_dir).expect("bin").count() == 1,
        "temporary files are left in {}",
        install_dir.display()
    );

    // The printed command, as the customer would run it, runs the release.
    let mut agent = Foreground::start(&printed, work.join("agent.log"));
    serves_the_release(&api, &group.id, Some(&name), &first, &tag, &mut agent);
}

/// busybox's own applets only: wget for curl, openssl for sha256sum. Run as a user without
/// privileges (when the tests run as root), the script takes its defaults in HOME.
#[test]
fn busybox_sh_with_wget_and_openssl_installs_into_the_users_home() {
    let Some(busybox) = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .find(|path| Path::new(path).exists())
    else {
        eprintln!("busybox is not installed: the script under busybox sh is not tried");
        return;
    };
    let api = Api::start();
    let script = fetch_script(&api);
    let group = api.create_group();
    let work = temp_dir();
    let applets = work.path().join("applets");
    std::fs::create_dir(&applets).expect("applets");
    let installed = command(busybox)
        .arg("--install")
        .arg("-s")
        .arg(&applets)
        .status()
        .expect("busybox --install");
    assert!(installed.success());
    for tool in ["curl", "sha256sum"] {
        let _ = std::fs::remove_file(applets.join(tool));
    }
    std::os::unix::fs::symlink("/usr/bin/openssl", applets.join("openssl")).expect("openssl");
    let home = work.path().join("home");
    std::fs::create_dir(&home).expect("home");
    if running_as_root() {
        e2e::capture::chown(&home, UNPRIVILEGED_UID, UNPRIVILEGED_UID);
    }

    // `env -i` rather than a cleared environment here: setpriv must still be found in the
    // tests' PATH, not among busybox's applets.
    let mut words = unprivileged_prefix();
    words.extend(["env".into(), "-i".into()]);
    words.push(format!("PATH={}", applets.display()).into());
    words.push(format!("HOME={}", home.display()).into());
    words.extend([busybox, "sh", "-s", "--", "--token", &group.token].map(Into::into));
    let mut command = Command::new(&words[0]);
    command.args(&words[1..]);
    let ran = run(command, &script);
    assert!(
        ran.success,
        "the install failed:\n{}\n{}",
        ran.stdout, ran.stderr
    );

    let binary = home.join(".local/bin/alien");
    assert_is_the_served_binary(&binary);
    let token_file = home.join(".config/alien-agent/token");
    assert_token_file(&token_file, &group.token);
    assert_eq!(
        foreground_command(&ran),
        format!(
            "SYNC_URL='{}' SYNC_TOKEN_FILE='{}' DATA_DIR='{}' '{}' agent",
            configured_base(&api),
            token_file.display(),
            home.join(".local/share/alien-agent").display(),
            binary.display()
        )
    );
}

/// Answers `GET <path>` with its body from `files`, every other path with a 404, one
/// connection at a time, until dropped.
struct FileServer {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    fn start(files: Vec<(&'static str, Vec<u8>)>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or_default();
                let (status, body) = match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => ("200 OK", body.as_slice()),
                    None => ("404 Not Found", &b""[..]),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            }
        });
        FileServer {
            url,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_download_that_does_not_match_the_checksum_installs_nothing() {
    let api = Api::start();
    let script = fetch_script(&api);
    let group = api.create_group();
    // The manager's checksum, and its binary with one byte changed, from another address.
    let http: ureq::Agent = ureq::Agent::config_builder().proxy(None).build().into();
    let download = |path: &str| {
        http.get(format!("{}{path}", api.base_url()))
            .call()
            .expect("download")
            .into_body()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("body")
    };
    let mut binary = download("/install/alien");
    let middle = binary.len() / 2;
    binary[middle] ^= 0xff;
    let server = FileServer::start(vec![
        ("/install/alien", binary),
        ("/install/alien.sha256", download("/install/alien.sha256")),
    ]);
    let baked = format!("BASE_URL='{}'\n", configured_base(&api));
    assert!(script.contains(&baked), "no {baked} in the script");
    let script = script.replace(&baked, &format!("BASE_URL='{}'\n", server.url));

    let work = temp_dir();
    let (install_dir, config_dir) = (work.path().join("bin"), work.path().join("config"));
    let mut command = shell("dash", &["--token", &group.token, "--no-start"]);
    command
        .env("INSTALL_DIR", &install_dir)
        .env("CONFIG_DIR", &config_dir);
    let ran = run(command, &script);
    assert!(
        !ran.success,
        "a corrupted download was installed:\n{}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains("does not match the manager's checksum"),
        "{}",
        ran.stderr
    );
    let left = files_under(work.path());
    assert!(left.is_empty(), "the failed install left {left:?}");
}

/// Every file below `dir`, however deep.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// As root where systemd runs (a mount namespace gives the script a /run/systemd/system,
/// and `systemctl` only records what it is asked): the unit written is the packaged one with
/// this installation's values, accepted by `systemd-analyze verify`, and the service is
/// enabled and (re)started. A data directory the unit's ProtectHome= hides is refused first.
#[test]
fn with_systemd_the_script_writes_a_unit_systemd_accepts_and_starts_it() {
    let api = Api::start();
    let script = fetch_script(&api);
    let group = api.create_group();
    let work = temp_dir();
    let root = work.path();
    let stub = root.join("stub");
    std::fs::create_dir(&stub).expect("stub");
    let calls = root.join("systemctl.calls");
    std::fs::write(
        stub.join("systemctl"),
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", calls.display()),
    )
    .expect("systemctl stub");
    set_mode(&stub.join("systemctl"), 0o755);

    let with_systemd = |args: &[&str]| {
        let mut command = command("unshare");
        if !running_as_root() {
            command.args(["--user", "--map-root-user"]);
        }
        command
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec dash -s -- \"$@\"",
            )
            .arg("sh")
            .args(args)
            .env("PATH", path_with(&stub))
            .env("INSTALL_DIR", root.join("bin"))
            .env("CONFIG_DIR", root.join("config"))
            .env("SYSTEMD_UNIT_DIR", root.join("units"));
        run(command, &script)
    };

    let refused = with_systemd(&["--token", &group.token, "--data-dir", "/home/agent"]);
    assert!(!refused.success, "{}", refused.stdout);
    assert!(refused.stderr.contains("ProtectHome"), "{}", refused.stderr);
    assert!(!root.join("bin").exists() && !calls.exists());

    let data_dir = root.join("agent-data");
    let ran = with_systemd(&[
        "--token",
        &group.token,
        "--name",
        "edge-1",
        "--data-dir",
        data_dir.to_str().expect("UTF-8"),
    ]);
    assert!(
        ran.success,
        "the install failed:\n{}\n{}",
        ran.stdout, ran.stderr
    );
    assert!(!ran.stdout.contains(FOREGROUND), "{}", ran.stdout);
    assert_eq!(
        std::fs::read_to_string(&calls).expect("systemctl calls"),
        "daemon-reload\nenable alien-agent.service\nrestart alien-agent.service\n"
    );
    let binary = root.join("bin/alien");
    assert_is_the_served_binary(&binary);
    let unit_path = root.join("units/alien-agent.service");
    assert_eq!(mode(&unit_path), 0o644);
    let unit = std::fs::read_to_string(&unit_path).expect("the unit");
    let token_file = root.join("config/token");
    for line in [
        format!("ExecStart={} agent", binary.display()),
        format!("Environment=SYNC_URL={}", configured_base(&api)),
        format!("Environment=SYNC_TOKEN_FILE={}", token_file.display()),
        format!("Environment=DATA_DIR={}", data_dir.display()),
        "Environment=OPERATOR_NAME=edge-1".to_owned(),
    ] {
        assert!(unit.lines().any(|l| l == line), "no {line} in:\n{unit}");
    }
    // Apart from the values, the packaged unit as it is.
    let packaged = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd/alien-agent.service"),
    )
    .expect("the packaged unit");
    let unvalued = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with("ExecStart=") && !l.starts_with("Environment="))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(unvalued(&unit), unvalued(&packaged));
    assert_token_file(&token_file, &group.token);

    let verified = command("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit_path)
        .output()
        .expect("systemd-analyze (Debian package `systemd`)");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(
        verified.status.success() && !printed.contains("alien-agent.service"),
        "systemd-analyze verify:\n{printed}\n{unit}"
    );
}

#[test]
fn the_binary_and_its_checksum_are_served_without_a_token_and_head_reads_nothing() {
    let api = Api::start();
    let expected = std::fs::read(e2e::alien_binary()).expect("the test's alien");
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let head = http
        .head(format!("{}/install/alien", api.base_url()))
        .call()
        .expect("HEAD");
    assert_eq!(head.status(), 200);
    let header = |name: &str| {
        head.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("content-length"),
        Some(expected.len().to_string()),
        "HEAD's Content-Length"
    );
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/octet-stream")
    );

    let sha256sum = command("sha256sum")
        .arg(e2e::alien_binary())
        .output()
        .expect("sha256sum");
    let hex = String::from_utf8_lossy(&sha256sum.stdout)
        .split_whitespace()
        .next()
        .expect("a checksum")
        .to_owned();
    let reply = api.send(&Request::get("/install/alien.sha256"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, format!("{hex}  alien\n"));
    assert_eq!(
        reply.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
}

#[test]
fn a_base_url_a_shell_would_interpret_gets_a_500_in_plain_text_and_no_install_command() {
    let api = Api::start_with(Options {
        env: vec![(
            "BASE_URL".to_owned(),
            "http://localhost:1/it's-$(id)".to_owned(),
        )],
        ..Options::default()
    });
    let reply = api.send(&Request::get("/install"));
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_eq!(
        reply.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert!(reply.body.contains("base URL"), "{}", reply.body);
    let group = api.create_group();
    let minted = api.expect(
        &Request::post_empty(format!("/v1/deployment-groups/{}/tokens", group.id))
            .auth(api.admin()),
        200,
    );
    assert!(minted.get("installCommand").is_none(), "{minted}");
    assert!(minted["token"].as_str().is_some(), "{minted}");
}

#[test]
fn behind_tls_with_a_private_ca_the_ca_file_installs_the_agent_and_the_agent_trusts_it() {
    let tls = temp_dir();
    let front = TlsFront::start(tls.path());
    let api = Api::start_with(Options {
        env: vec![("BASE_URL".into(), front.url())],
        ..Options::default()
    });
    front.forward_to(api.server().port());
    let origin = front.url().trim_start_matches("https://").to_owned();
    let tag = format!("install-tls-p{}", std::process::id());
    let image = e2e::workloads::push_via(&api, &origin, "alien-test-web", &tag, &[]);
    let first = release(&api, web_stack(&image));
    let group = api.create_group();
    let ca = front.ca_file().display().to_string();
    let work = api.server().work_dir().join("install");
    let (install_dir, config_dir, data_dir) = (
        work.join("bin"),
        work.join("config"),
        work.join("agent-data"),
    );
    let install = |options: &str| {
        let mut command = command("dash");
        command
            .arg("-c")
            .arg(format!(
                "curl -fsSL --cacert {ca} {}/install | dash -s -- --token {} --data-dir {} --no-start {options}",
                front.url(),
                group.token,
                data_dir.display()
            ))
            .env("INSTALL_DIR", &install_dir)
            .env("CONFIG_DIR", &config_dir)
            .env("SYSTEMD_UNIT_DIR", work.join("units"));
        run(command, "")
    };

    // The system does not trust the front's CA: the download fails, and nothing is installed.
    let refused = install("");
    assert!(
        !refused.success,
        "installed without the CA:\n{}",
        refused.stdout
    );
    assert!(
        refused.stderr.contains("cannot download"),
        "{}",
        refused.stderr
    );
    assert!(!install_dir.join("alien").exists());

    let ran = install(&format!("--ca-file {ca}"));
    assert!(
        ran.success,
        "the install failed:\n{}\n{}",
        ran.stdout, ran.stderr
    );
    assert_is_the_served_binary(&install_dir.join("alien"));
    let kept = config_dir.join("ca.pem");
    assert_eq!(
        std::fs::read(&kept).expect("the CA's copy"),
        std::fs::read(front.ca_file()).expect("the CA")
    );
    let printed = foreground_command(&ran);
    assert!(
        printed.contains(&format!("SYNC_CA_FILE='{}'", kept.display())),
        "{printed}"
    );

    // The agent so started trusts the manager through the copy and runs the release.
    let mut agent = Foreground::start(&printed, work.join("agent.log"));
    serves_the_release(&api, &group.id, None, &first, &tag, &mut agent);
}
