//! `alien`: one binary for the whole system. `alien serve` is the supervisor; it re-executes
//! this same binary as `alien daemon <name>` for each daemon, so an installation is one file
//! and the daemons can never run another version than their supervisor.

mod args;
mod daemon;
mod health;
mod serve;

use std::process::ExitCode;

use clap::Parser;

/// Exit status for a configuration that cannot be used (as clap uses for bad arguments).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    // Before anything creates a file: the data directory holds tokens and keys.
    plumbing::modes::restrict_umask();
    match args::Cli::parse().command {
        args::Command::Serve(args) => serve::run(args),
        args::Command::Health(args) => health::run(args),
        args::Command::Daemon(args) => daemon::run(args),
    }
}

/// Prints a fatal error as the one line a user reads, and returns `code`.
fn fail(code: u8, error: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(code)
}
