//! Harness for the end-to-end tests: find the `alien` binary that `cargo test --workspace`
//! built, start it in a temporary data directory on an ephemeral port, and talk to it.

use std::path::PathBuf;

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
