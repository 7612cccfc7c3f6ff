//! What the launcher's tests share: a busybox image root, specs, bounded waits, plain HTTP,
//! and a child process that starts a workload and exits (the caller's "restart").

#![allow(dead_code)]

pub mod scenarios;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use launcher::{Launcher, Network, Status, Workload, WorkloadSpec};
use std::ops::Deref;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Where the busybox the tests run lives (Debian's busybox-static; /bin without merged /usr).
fn host_busybox() -> &'static str {
    ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .find(|path| std::path::Path::new(path).is_file())
        .unwrap_or("/usr/bin/busybox")
}

/// A scratch directory with an image root holding busybox and its applet links.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> std::io::Result<Fixture> {
        let dir = tempfile::Builder::new()
            .prefix("launcher-test-")
            .tempdir()?;
        let root = dir.path().join("rootfs");
        for sub in ["bin", "app", "www", "etc"] {
            fs::create_dir_all(root.join(sub))?;
        }
        // A link, not a copy: a file this process has open for writing cannot be executed
        // by a child forked meanwhile by a parallel test (ETXTBSY).
        let busybox = root.join("bin/busybox");
        if fs::hard_link(host_busybox(), &busybox).is_err() {
            fs::copy(host_busybox(), &busybox)?;
        }
        // Absolute links, as images have them: they must resolve inside the root.
        for applet in [
            "sh", "env", "sleep", "cat", "echo", "httpd", "wget", "ls", "pwd", "touch", "mkdir",
        ] {
            symlink("/bin/busybox", root.join("bin").join(applet))?;
        }
        Ok(Fixture { dir })
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A spec for `args`, unique id, output in the fixture, host network.
    pub fn spec(&self, name: &str, args: &[&str]) -> WorkloadSpec {
        WorkloadSpec {
            id: unique_id(name),
            rootfs: self.rootfs(),
            args: args.iter().map(|a| a.to_string()).collect(),
            cwd: "/app".into(),
            env: vec![("PATH".into(), "/bin".into())],
            mounts: Vec::new(),
            memory_limit_bytes: None,
            cpus: None,
            network: Network::Host,
            hostname: name.into(),
            hosts_entries: Vec::new(),
            stdout: self.path(&format!("{name}.out")),
            stderr: self.path(&format!("{name}.err")),
            state_dir: self.path(&format!("state-{name}")),
        }
    }
}

/// Ids are global to the host (cgroups), tests run in parallel, other runs may too.
pub fn unique_id(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("lt-{name}-{}-{nanos}", std::process::id())
}

/// A started workload that a failing test does not leave running: stopped on drop unless
/// the test stopped it.
pub struct Started<'a> {
    launcher: &'a Launcher,
    workload: Workload,
}

impl<'a> Started<'a> {
    pub fn new(launcher: &'a Launcher, workload: Workload) -> Self {
        Started { launcher, workload }
    }
}

impl Deref for Started<'_> {
    type Target = Workload;
    fn deref(&self) -> &Workload {
        &self.workload
    }
}

impl Drop for Started<'_> {
    fn drop(&mut self) {
        if self.workload.state_dir.join("workload.json").exists() {
            let _ = self.launcher.stop(&self.workload, Duration::from_secs(1));
        }
    }
}

pub fn start<'a>(
    launcher: &'a Launcher,
    spec: &WorkloadSpec,
) -> Result<Started<'a>, launcher::Error> {
    Ok(Started::new(launcher, launcher.start(spec)?))
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `file` holds `text`.
pub fn wait_output(file: &Path, text: &str) -> Result<String, String> {
    wait_for(Duration::from_secs(10), || {
        fs::read_to_string(file)
            .ok()
            .filter(|out| out.contains(text))
    })
    .ok_or_else(|| {
        format!(
            "{} never held {text:?}: {:?}",
            file.display(),
            fs::read_to_string(file).unwrap_or_default()
        )
    })
}

pub fn running_pid(launcher: &Launcher, workload: &Workload) -> Result<u32, String> {
    match launcher.status(workload) {
        Ok(Status::Running { pid }) => Ok(pid),
        other => Err(format!("{} is not running: {other:?}", workload.id)),
    }
}

/// `GET /` over an open connection; the body.
pub fn http_get(mut stream: TcpStream) -> std::io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

/// Retries `connect` + `GET /` until the server inside answers, for at most 10 s.
pub fn get_when_up(
    mut connect: impl FnMut() -> std::io::Result<TcpStream>,
) -> Result<String, String> {
    let mut last = String::new();
    wait_for(Duration::from_secs(10), || {
        match connect().and_then(http_get) {
            Ok(body) => Some(body),
            Err(error) => {
                last = error.to_string();
                None
            }
        }
    })
    .ok_or_else(|| format!("no answer: {last}"))
}

/// What every file under `root` is: a snapshot to tell whether a workload changed it.
pub fn tree(root: &Path) -> std::io::Result<Vec<(PathBuf, u64, bool)>> {
    let mut entries = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.path().symlink_metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            }
            entries.push((entry.path(), meta.len(), meta.is_dir()));
        }
    }
    entries.sort();
    Ok(entries)
}

/// Environment variables that make this test binary, run again, start a workload and exit.
const CHILD_BACKEND: &str = "LAUNCHER_TEST_CHILD_BACKEND";
const CHILD_ROOTFS: &str = "LAUNCHER_TEST_CHILD_ROOTFS";
const CHILD_STATE: &str = "LAUNCHER_TEST_CHILD_STATE";
const CHILD_ID: &str = "LAUNCHER_TEST_CHILD_ID";
const CHILD_PORT: &str = "LAUNCHER_TEST_CHILD_PORT";

/// Starts an httpd on `127.0.0.1:port` (host network) from a separate process that exits
/// right after; returns the state directory.
pub fn start_from_child(fixture: &Fixture, backend: &str, port: u16) -> Result<PathBuf, String> {
    let state = fixture.path("state-child");
    let status = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["--exact", "support::child_starts_a_workload", "--nocapture"])
        .env(CHILD_BACKEND, backend)
        .env(CHILD_ROOTFS, fixture.rootfs())
        .env(CHILD_STATE, &state)
        .env(CHILD_ID, unique_id("child"))
        .env(CHILD_PORT, port.to_string())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("the starting process failed: {status}"));
    }
    Ok(state)
}

/// The body of the child process of [`start_from_child`]; a no-op in a normal test run.
#[test]
fn child_starts_a_workload() -> TestResult {
    let Ok(backend) = std::env::var(CHILD_BACKEND) else {
        return Ok(());
    };
    let var = |name| std::env::var(name).map_err(|e| format!("{name}: {e}"));
    let launcher = match backend.as_str() {
        "process" => Launcher::process("test"),
        runtime => Launcher::oci(runtime),
    };
    let rootfs = PathBuf::from(var(CHILD_ROOTFS)?);
    let base = rootfs.parent().ok_or("rootfs has no parent")?;
    let port = var(CHILD_PORT)?;
    let spec = WorkloadSpec {
        id: var(CHILD_ID)?,
        rootfs: rootfs.clone(),
        args: [
            "/bin/sh",
            "-c",
            "echo child > www/index.html; exec httpd -f -p 127.0.0.1:$PORT -h www",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        cwd: "/".into(),
        env: vec![("PATH".into(), "/bin".into()), ("PORT".into(), port)],
        mounts: Vec::new(),
        memory_limit_bytes: None,
        cpus: None,
        network: Network::Host,
        hostname: "child".into(),
        hosts_entries: Vec::new(),
        stdout: base.join("child.out"),
        stderr: base.join("child.err"),
        state_dir: PathBuf::from(var(CHILD_STATE)?),
    };
    launcher.start(&spec)?;
    Ok(())
}

/// `pid`'s parent and the pipes among its open files.
pub fn parent_and_pipes(pid: u32) -> std::io::Result<(u32, Vec<String>)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let ppid = status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut pipes = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let target = fs::read_link(entry?.path())?;
        let target = target.to_string_lossy().into_owned();
        if target.starts_with("pipe:") {
            pipes.push(target);
        }
    }
    Ok((ppid, pipes))
}

/// A port nothing listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
