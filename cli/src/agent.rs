//! `alien agent`: the pull-mode agent in the foreground, until SIGTERM or Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use agent::{AgentError, Config, InitialRelease, Token};
use plumbing::logging::{self, LogFormat};

use crate::args::{AgentArgs, InitialReleaseArg};
use crate::{EXIT_CONFIG, fail};

pub fn run(args: AgentArgs) -> ExitCode {
    logging::init(LogFormat::from(args.log_format));
    let config = match config(args) {
        Ok(config) => config,
        Err(error) => return fail(EXIT_CONFIG, error),
    };
    let (runtime, shutdown) = match crate::foreground_runtime("agent") {
        Ok(started) => started,
        Err(code) => return code,
    };
    crate::raise_open_file_limit();
    let result = runtime.block_on(agent::run(config, shutdown));
    // Blocking work (an image pull) does not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ (AgentError::Config(_) | AgentError::Initialize(_))) => {
            fail(EXIT_CONFIG, error)
        }
        Err(error) => fail(1, error),
    }
}

fn config(args: AgentArgs) -> Result<Config, AgentError> {
    if args.platform != "local" {
        return Err(AgentError::Config(format!(
            "PLATFORM {} is not supported: the agent deploys to `local` (this machine)",
            args.platform
        )));
    }
    let token = match (&args.sync_token, &args.sync_token_file) {
        (Some(token), None) => Token::new(token, "SYNC_TOKEN")?,
        (None, Some(file)) => Token::from_file(file)?,
        _ => {
            return Err(AgentError::Config(
                "the agent needs a token: set SYNC_TOKEN_FILE (or SYNC_TOKEN)".into(),
            ));
        }
    };
    let name = match args.operator_name {
        Some(name) => name,
        None => std::env::var("HOSTNAME")
            .ok()
            .filter(|name| !name.trim().is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|name| name.trim().to_owned())
            })
            .unwrap_or_default(),
    };
    Ok(Config {
        sync_url: args.sync_url,
        token,
        deployment_id: args.deployment_id,
        name,
        data_dir: args.data_dir,
        sync_interval: Duration::from_secs(args.sync_interval),
        heartbeat_interval: Duration::from_secs(args.heartbeat_interval),
        initial_release: match args.initial_release {
            InitialReleaseArg::Active => InitialRelease::Active,
            InitialReleaseArg::None => InitialRelease::None,
        },
        otlp: std::net::SocketAddr::new(args.otlp_host, args.otlp_port),
        long_poll: !args.no_long_poll,
        ca_file: args.ca_file,
    })
}
