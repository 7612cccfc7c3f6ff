//! `alien`: one binary for the whole system. `alien serve` is the supervisor; it re-executes
//! this same binary as `alien daemon <name>` for each daemon, so an installation is one file
//! and the daemons can never run another version than their supervisor.

mod agent;
mod args;
mod daemon;
mod health;
mod release;
mod serve;
mod worker_runtime;

use std::process::ExitCode;

use clap::Parser;

/// Exit status for a configuration that cannot be used (as clap uses for bad arguments).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    // Before anything creates a file: the data directory holds tokens and keys.
    plumbing::modes::restrict_umask();
    match args::Cli::parse().command {
        args::Command::Serve(args) => serve::run(args),
        args::Command::Agent(args) => agent::run(args),
        args::Command::Health(args) => health::run(args),
        args::Command::Release(args) => release_command(args),
        args::Command::Daemon(args) => daemon::run(args),
        args::Command::WorkerRuntime(args) => worker_runtime::run(args),
    }
}

fn release_command(args: args::ReleaseArgs) -> ExitCode {
    let manager = match args.manager_url.as_deref() {
        Some(url) => client::Manager::new(url, args.api_key.as_deref().unwrap_or_default()),
        None => Err(client::ClientError::Usage(
            "ALIEN_MANAGER_URL is not set: export the ALIEN_MANAGER_URL and ALIEN_API_KEY that \
             `alien serve` printed"
                .into(),
        )),
    };
    match manager.and_then(|manager| release::run(&manager, &args.stack, args.json)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            if let Some(hint) = error.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(error.exit_code())
        }
    }
}

/// Every connection and file is a descriptor: start with as many as the hard limit allows,
/// rather than the shell's or container's default soft limit. Under `alien serve` the
/// daemons inherit the supervisor's raised limit; under systemd each raises its own.
fn raise_open_file_limit() {
    match plumbing::fd_limit::raise() {
        Ok(raised) if raised.to > raised.from => {
            tracing::info!(
                from = raised.from,
                to = raised.to,
                "raised the open-file limit"
            );
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

/// A two-thread async runtime for a command that runs in the foreground, and the token
/// SIGTERM or Ctrl-C cancels; the exit status to return when either cannot be had.
fn foreground_runtime(
    name: &str,
) -> Result<(tokio::runtime::Runtime, tokio_util::sync::CancellationToken), ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name(name)
        .build()
        .map_err(|error| fail(1, format!("cannot start the async runtime: {error}")))?;
    let shutdown = runtime
        .block_on(async { plumbing::shutdown::on_signal() })
        .map_err(|error| fail(1, format!("cannot handle signals: {error}")))?;
    Ok((runtime, shutdown))
}

/// Prints a fatal error as the one line a user reads, and returns `code`.
fn fail(code: u8, error: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(code)
}
