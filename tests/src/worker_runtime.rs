//! Harness for the worker runtime (`alien worker-runtime --config FILE`): writes its config,
//! starts it with a test workload as its app, and receives what it submits.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::capture::{Invocation, Stream};
use crate::server::free_port;
use crate::wait_for;

/// A program of the `test-workloads` package, built next to `alien`.
pub fn workload(name: &str) -> PathBuf {
    let path = crate::alien_binary().with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: run the suite with `cargo test --workspace`",
        path.display()
    );
    path
}

/// The variable set in the runtime's own environment that must not reach the app.
pub const MARKER: (&str, &str) = ("WORKER_RUNTIME_TEST_MARKER", "leaked");

/// The deployment token a runtime with commands enabled expects.
pub const TOKEN: &str = "dep-token-for-the-runtime";

pub const DEPLOYMENT: &str = "dep_runtime";
pub const WORKER: &str = "api";

/// A running `alien worker-runtime`.
#[derive(Debug)]
pub struct Runtime {
    pub dir: tempfile::TempDir,
    pub grpc_port: u16,
    pub transport_port: u16,
    pub child: Child,
    pub stderr: Stream,
}

impl Runtime {
    /// The config of a runtime whose app is `app` (the `app` object), in `dir`.
    pub fn config(dir: &Path, app: Value, token: Option<&str>) -> Value {
        json!({
            "workerId": WORKER,
            "deploymentId": DEPLOYMENT,
            "timeoutSeconds": 20,
            "grpcPort": free_port(),
            "transportPort": free_port(),
            "commandsToken": token,
            "app": app,
            "stdout": dir.join("app.stdout"),
            "stderr": dir.join("app.stderr"),
            "stateFile": dir.join("state.json"),
        })
    }

    /// `app.process` running `argv` with `env` in `/`.
    pub fn process_app(argv: &[&str], env: &BTreeMap<&str, &str>) -> Value {
        json!({"process": {"argv": argv, "cwd": "/", "env": env}})
    }

    /// The test worker, version `version`, with `FOO=bar` and the variables the runtime must
    /// remove in its given environment.
    pub fn worker_app(version: &str) -> Value {
        let worker = workload("alien-test-worker");
        let env = BTreeMap::from([
            ("FOO", "bar"),
            ("PORT", "9"),
            ("ALIEN_COMMANDS_TOKEN", "must-not-reach-the-app"),
            ("ALIEN_RUNTIME_SECRETS", "{}"),
        ]);
        Runtime::process_app(
            &[worker.to_str().expect("utf-8 path"), "--version", version],
            &env,
        )
    }

    /// Starts a runtime with `config` (as [`Runtime::config`] makes it) in `dir`.
    pub fn start_in(dir: tempfile::TempDir, config: &Value) -> Runtime {
        let path = dir.path().join("runtime.json");
        std::fs::write(&path, config.to_string()).expect("write the config");
        let mut invocation = Invocation::new([
            "worker-runtime".as_ref(),
            "--config".as_ref(),
            path.as_os_str(),
        ]);
        invocation.env.push((MARKER.0.into(), MARKER.1.into()));
        let (child, _stdout, stderr) = invocation.spawn();
        Runtime {
            dir,
            grpc_port: config["grpcPort"].as_u64().expect("port") as u16,
            transport_port: config["transportPort"].as_u64().expect("port") as u16,
            child,
            stderr,
        }
    }

    /// Starts the test worker `v1` behind a runtime, with commands enabled when `token` is.
    pub fn start_worker(token: Option<&str>) -> Runtime {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Runtime::config(dir.path(), Runtime::worker_app("v1"), token);
        Runtime::start_in(dir, &config)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.transport_port)
    }

    pub fn state(&self) -> Option<Value> {
        let bytes = std::fs::read(self.dir.path().join("state.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The state file once it says ready; fails the test after 20 s.
    pub fn wait_ready(&self) -> Value {
        wait_for(Duration::from_secs(20), || {
            self.state().filter(|state| state["ready"] == true)
        })
        .unwrap_or_else(|| {
            panic!(
                "the runtime never became ready; state {:?}\nstderr:\n{}",
                self.state(),
                self.stderr.text()
            )
        })
    }

    pub fn app_stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("app.stdout")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `timeout` for the runtime to exit; its exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        self.exit_within(timeout)
    }

    /// The exit code, if the runtime exits within `timeout`.
    pub fn exit_within(&mut self, timeout: Duration) -> Option<i32> {
        wait_for(timeout, || self.child.try_wait().ok().flatten())
            .map(|status| status.code().unwrap_or(-1))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let child_pid = self.state().and_then(|state| state["childPid"].as_i64());
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        if let Some(pid) = child_pid {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// One HTTP exchange that never follows redirects: status, headers (lowercase names), body.
pub fn exchange(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = agent
        .run(builder.body(body).expect("request"))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let body = response.into_body().read_to_vec().expect("body");
    (status, headers, body)
}

/// The OCI runtime the bundle test runs, installed by `tests/run`.
pub const RUNC: &str = "/usr/sbin/runc";

/// An OCI bundle in `dir` whose container runs `program` with `args` and `env`: the rootfs
/// holds the program and the shared libraries `ldd` names, read-only; the container keeps
/// the host's network namespace so the loopback contract of the runtime protocol holds.
pub fn oci_bundle(dir: &Path, program: &Path, args: &[&str], env: &[&str]) -> PathBuf {
    let bundle = dir.join("bundle");
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("rootfs");
    std::fs::copy(program, rootfs.join("app")).expect("copy the program");
    let ldd = std::process::Command::new("ldd")
        .arg(program)
        .output()
        .expect("run ldd");
    for library in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
    {
        let inside = rootfs.join(library.trim_start_matches('/'));
        std::fs::create_dir_all(inside.parent().expect("a directory")).expect("library dir");
        std::fs::copy(library, &inside).expect("copy a library");
    }
    let spec = std::process::Command::new(RUNC)
        .args(["spec", "--bundle"])
        .arg(&bundle)
        .status()
        .expect("runc spec");
    assert!(spec.success(), "runc spec failed");
    let path = bundle.join("config.json");
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("config.json")).expect("JSON");
    let mut argv = vec!["/app"];
    argv.extend_from_slice(args);
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(argv);
    config["process"]["env"] = json!(env);
    config["root"] = json!({"path": "rootfs", "readonly": true});
    let namespaces = config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    namespaces.retain(|namespace| namespace["type"] != "network");
    std::fs::write(&path, config.to_string()).expect("write config.json");
    bundle
}

/// A request the [`Sink`] received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// A small HTTP server on a loopback port standing in for the manager's submit and storage
/// URLs: it records every request and answers 200 after `delay`.
#[derive(Debug)]
pub struct Sink {
    pub base: String,
    received: mpsc::Receiver<Received>,
}

impl Sink {
    pub fn start(delay: Duration) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (sender, received) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sender = sender.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(mut writer) = stream.try_clone() else {
                        return;
                    };
                    let mut reader = BufReader::new(stream);
                    while let Some(request) = read_request(&mut reader) {
                        let _ = sender.send(request);
                        std::thread::sleep(delay);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if writer.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Sink { base, received }
    }

    /// The next request within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Received> {
        self.received.recv_timeout(timeout).ok()
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<Received> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}
