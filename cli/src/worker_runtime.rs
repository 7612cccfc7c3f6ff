//! `alien worker-runtime --config FILE`: one worker's runtime in the foreground, as deployd
//! starts it, so that a restart of deployd leaves the worker running.
//!
//! Exit status: 0 after a stop asked by SIGTERM or SIGINT; 2 for a config that cannot be
//! used; 3 when a port cannot be bound (the caller picks others and starts it again); 1 for
//! anything else, the app exiting by itself included (the caller restarts it).

use std::process::ExitCode;

use plumbing::logging::{self, LogFormat};
use tracing::error;
use worker_runtime::RuntimeError;

use crate::args::WorkerRuntimeArgs;
use crate::{EXIT_CONFIG, fail};

/// Exit status when the gRPC or the transport port is taken.
const EXIT_PORT_IN_USE: u8 = 3;

pub fn run(args: WorkerRuntimeArgs) -> ExitCode {
    logging::init(LogFormat::from(args.log_format));
    // The file holds the commands token: only its path and serde's position are ever printed.
    let config = match worker_runtime::RuntimeConfig::load(&args.config) {
        Ok(config) => config,
        Err(error) => return fail(EXIT_CONFIG, error),
    };
    let (runtime, shutdown) = match crate::foreground_runtime("worker-runtime") {
        Ok(started) => started,
        Err(code) => return code,
    };
    let result = runtime.block_on(worker_runtime::run(config, shutdown));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!(%error, "the worker runtime stopped on an error");
            ExitCode::from(match error {
                RuntimeError::Config { .. } => EXIT_CONFIG,
                RuntimeError::Bind { .. } => EXIT_PORT_IN_USE,
                _ => 1,
            })
        }
    }
}
