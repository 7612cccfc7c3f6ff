//! Running `alien` as a user would, with its output collected as it comes.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::wait_for;

/// Environment variables that change what `alien` does; the tests' own environment must not
/// leak into the processes they start.
pub const CLEARED_ENV: [&str; 9] = [
    "ALIEN_MANAGER_URL",
    "ALIEN_API_KEY",
    "PORT",
    "HOST",
    "BASE_URL",
    "OTLP_ENDPOINT",
    "ALIEN_DATA_DIR",
    "RUST_LOG",
    "ALIEN_LOG",
];

/// How long the output of a process that has exited may take to be read to its end.
const PIPE_CLOSE: Duration = Duration::from_secs(2);

/// Text a process wrote to one of its pipes, read continuously by a thread so that the pipe
/// never fills up and the test can look at it at any time.
#[derive(Debug, Clone, Default)]
pub struct Stream(Arc<StreamState>);

#[derive(Debug, Default)]
struct StreamState {
    text: Mutex<String>,
    closed: AtomicBool,
}

impl Stream {
    /// Follows `source` until it closes (when every holder of the pipe's write end is gone).
    pub fn follow(source: impl Read + Send + 'static) -> Stream {
        let stream = Stream::default();
        let state = stream.0.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(source);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => state
                        .text
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push_str(&String::from_utf8_lossy(&line)),
                }
            }
            state.closed.store(true, Ordering::SeqCst);
        });
        stream
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.0
            .text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn contains(&self, fragment: &str) -> bool {
        self.0
            .text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(fragment)
    }

    /// Waits until the writer's end is closed, so that [`Stream::text`] is all there is;
    /// `false` if a process (a grandchild, say) still holds it after `timeout`.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        wait_for(timeout, || {
            self.0.closed.load(Ordering::SeqCst).then_some(())
        })
        .is_some()
    }
}

/// What to run: `prefix` (such as `unshare` or `setpriv` and their options) then `alien`
/// with `args`.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub prefix: Vec<OsString>,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// Where a relative path (and `./alien-manager.toml`) is looked for.
    pub cwd: Option<std::path::PathBuf>,
}

impl Invocation {
    pub fn new<I, S>(args: I) -> Invocation
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Invocation {
            args: args.into_iter().map(Into::into).collect(),
            ..Invocation::default()
        }
    }

    /// `alien <args>` as a client of the manager at `url` with the API key `key`, given as
    /// a user exports them (`ALIEN_MANAGER_URL`, `ALIEN_API_KEY`).
    pub fn client<I, S>(url: &str, key: &str, args: I) -> Invocation
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut invocation = Invocation::new(args);
        invocation.env = vec![
            ("ALIEN_MANAGER_URL".to_owned(), url.to_owned()),
            ("ALIEN_API_KEY".to_owned(), key.to_owned()),
        ];
        invocation
    }

    /// The command, in its own process group so that the test can signal everything it
    /// started at once, with the `alien` variables of the test's environment removed.
    pub fn command(&self) -> Command {
        let alien = crate::alien_binary();
        let mut command = match self.prefix.split_first() {
            Some((program, options)) => {
                let mut command = Command::new(program);
                command.args(options).arg(alien);
                command
            }
            None => Command::new(alien),
        };
        command.args(&self.args);
        for name in CLEARED_ENV {
            command.env_remove(name);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        command
    }

    /// Starts the process and follows its stdout and stderr.
    pub fn spawn(&self) -> (Child, Stream, Stream) {
        let mut child = self
            .command()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.command()));
        let stdout = Stream::follow(child.stdout.take().expect("piped stdout"));
        let stderr = Stream::follow(child.stderr.take().expect("piped stderr"));
        (child, stdout, stderr)
    }

    /// Runs to completion; a process still running after `timeout` is killed (with its
    /// process group) and the test fails.
    pub fn run(&self, timeout: Duration) -> Finished {
        let (mut child, stdout, stderr) = self.spawn();
        let status = wait_for(timeout, || child.try_wait().ok().flatten());
        let Some(status) = status else {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!(
                "{:?} still running after {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                self.args,
                stdout.text(),
                stderr.text()
            );
        };
        // The pipes close when the process is gone: then everything it wrote has been read.
        stdout.wait_closed(PIPE_CLOSE);
        stderr.wait_closed(PIPE_CLOSE);
        Finished {
            status,
            stdout: stdout.text(),
            stderr: stderr.text(),
        }
    }
}

/// A process that has exited.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Fails the test unless the run exited with `code`, printed nothing on stdout and
    /// said each of `fragments` on stderr; `what` names the run in the failure.
    pub fn assert_failed(&self, what: &str, code: i32, fragments: &[&str]) {
        assert_eq!(self.code(), Some(code), "{what}: stderr: {}", self.stderr);
        for fragment in fragments {
            assert!(
                self.stderr.contains(fragment),
                "{what}: {fragment:?} not in stderr:\n{}",
                self.stderr
            );
        }
        assert!(self.stdout.is_empty(), "{what}: stdout: {}", self.stdout);
    }
}

/// Makes `path` belong to `uid:gid` (for a process run as another user).
pub fn chown(path: &Path, uid: u32, gid: u32) {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}
