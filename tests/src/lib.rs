//! Harness for the end-to-end tests: find the `alien` binary that `cargo test --workspace`
//! built, start it in a temporary data directory on an ephemeral port, and talk to it.

pub mod capture;
pub mod procfs;
pub mod server;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use capture::{Finished, Invocation};
pub use server::{DAEMONS, Isolation, Options, Reply, RunAs, Server};

/// The `alien` binary of this build. `cargo test --workspace` builds it before any test runs
/// because the `cli` package has integration tests of its own.
pub fn alien_binary() -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join("alien");
    assert!(
        binary.exists(),
        "{} is missing: run the suite with `cargo test --workspace`",
        binary.display()
    );
    binary
}

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(50);

/// Calls `probe` until it returns `Some`, for at most `timeout` and at most as many times as
/// fit in it at [`POLL`] intervals; `None` if it never did.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let tries = timeout.as_millis() / POLL.as_millis() + 2;
    for _ in 0..tries {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    None
}
pub mod agent;
pub mod api;
pub mod commands;
pub mod deployments;
pub mod hammer;
pub mod images;
pub mod netns;
pub mod proxy;
pub mod registry;
pub mod small_disk;
pub mod telemetry;
pub mod tls;
pub mod worker_runtime;
pub mod workloads;
