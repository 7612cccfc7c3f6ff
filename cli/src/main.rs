//! `alien`: one binary for the whole system. `alien serve` is the supervisor; it re-executes
//! this same binary as `alien daemon <name>` for each daemon, so an installation is one file
//! and the daemons can never run another version than their supervisor.

mod agent;
mod args;
mod client;
mod daemon;
mod health;
mod live_view;
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
        args::Command::Whoami(args) => client::finish(client::whoami::run(args)),
        args::Command::Releases(args) => client::finish(client::releases::run(args)),
        args::Command::Deployments(args) => client::finish(client::deployments::run(args)),
        args::Command::Onboard(args) => client::finish(client::onboard::run(args)),
        args::Command::Commands(args) => client::finish(client::commands::run(args)),
        args::Command::Tokens(args) => client::finish(client::tokens::run(args)),
        args::Command::Completions(args) => {
            let mut command = <args::Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, "alien", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        args::Command::Release(args) => client::finish(
            client::connect(&args.manager)
                .and_then(|manager| client::release::run(&manager, &args.stack, args.manager.json)),
        ),
        args::Command::Daemon(args) => daemon::run(args),
        args::Command::WorkerRuntime(args) => worker_runtime::run(args),
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
