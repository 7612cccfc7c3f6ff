//! `alien serve` on a terminal shows a line per deployment below its log, kept current; with
//! its output going elsewhere (a pipe, a file, journald) it prints plain logs only.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use e2e::api::{Api, Request};
use e2e::server::{free_port, temp_dir};
use e2e::wait_for;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(60);

/// What a terminal was sent, as it comes: the view redraws lines in place (`\r`, erase)
/// rather than ending them, so it is read in chunks, not lines.
#[derive(Clone, Default)]
struct Screen(Arc<Mutex<Vec<u8>>>);

impl Screen {
    fn follow(mut source: impl Read + Send + 'static) -> Screen {
        let screen = Screen::default();
        let bytes = screen.0.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = source.read(&mut chunk) {
                bytes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&chunk[..n]);
            }
        });
        screen
    }

    /// The text, without escape sequences, each redrawn or ended line on a line of its own.
    fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        plain(&String::from_utf8_lossy(&bytes)).replace('\r', "\n")
    }
}

/// `text` without ANSI escape sequences (colour, cursor moves).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn call(port: u16, key: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .body(body.map(|b| b.to_string()).unwrap_or_default().into_bytes())
        .expect("request");
    let mut response = http.run(request).expect("an answer");
    let text = response.body_mut().read_to_string().expect("body");
    assert!(response.status().is_success(), "{method} {path}: {text}");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn on_a_terminal_each_deployment_is_a_line_below_the_log() {
    let dir = temp_dir();
    let port = free_port();
    let serve = format!(
        "{} serve --data-dir {} --port {port}",
        e2e::alien_binary().display(),
        dir.path().join("data").display()
    );
    // `script` runs the command on a pseudo-terminal and copies what it draws there.
    let mut child = Command::new("script")
        .args([
            "-qfec",
            &format!("stty cols 160 rows 40; exec {serve}"),
            "/dev/null",
        ])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .env_remove("ALIEN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("script");
    let screen = Screen::follow(child.stdout.take().expect("stdout"));
    let group = Pid::from_raw(child.id() as i32);
    let stop = || {
        let _ = killpg(group, Signal::SIGTERM);
    };

    let key = wait_for(SETTLE, || {
        let text = screen.text();
        let (_, rest) = text.split_once("export ALIEN_API_KEY=")?;
        let key: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        (!key.is_empty()).then_some(key)
    });
    let Some(key) = key else {
        stop();
        panic!("no key on the terminal:\n{}", screen.text());
    };
    let empty = wait_for(SETTLE, || {
        screen
            .text()
            .contains("deployments: none yet")
            .then_some(())
    });
    let made = call(
        port,
        &key,
        "POST",
        "/v1/deployment-groups",
        Some(json!({"name": "acme"})),
    );
    let group_id = made["id"].as_str().expect("group id").to_owned();
    call(
        port,
        &key,
        "POST",
        "/v1/deployments",
        Some(json!({"name": "eu-1", "platform": "local", "deploymentGroupId": group_id})),
    );
    let shown = wait_for(SETTLE, || {
        let text = screen.text();
        text.lines()
            .any(|line| {
                line.contains("acme/eu-1")
                    && line.contains("no release")
                    && line.contains("updated")
            })
            .then_some(())
    });
    stop();
    let _ = wait_for(Duration::from_secs(20), || child.try_wait().ok().flatten());
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
    let text = screen.text();
    assert!(empty.is_some(), "no empty view:\n{text}");
    assert!(shown.is_some(), "the deployment was not shown:\n{text}");
    assert!(text.contains("deployments: 1"), "{text}");
    // The log goes on above the view.
    assert!(text.contains("manager"), "{text}");
}

#[test]
fn off_a_terminal_there_is_no_view() {
    let api = Api::start();
    let group = api.create_group();
    api.expect(
        &Request::post(
            "/v1/deployments",
            json!({"name": "eu-1", "platform": "local", "deploymentGroupId": group.id}),
        )
        .auth(api.admin()),
        201,
    );
    std::thread::sleep(Duration::from_secs(2));
    let stderr = api.server().stderr();
    assert!(!stderr.contains("deployments:"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "escape codes off a terminal:\n{stderr}"
    );
}
