//! `alien health`: the manager's `/health` as an exit status.

use std::process::ExitCode;
use std::time::Duration;

use crate::args::HealthArgs;
use crate::{EXIT_CONFIG, fail};

const TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(args: HealthArgs) -> ExitCode {
    let config = match plumbing::config::load(&args.config.overrides(None)) {
        Ok(config) => config,
        Err(error) => return fail(EXIT_CONFIG, error),
    };
    let addr = config.local_addr();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(1, format!("cannot start the async runtime: {error}")),
    };
    match runtime.block_on(plumbing::uds::get_tcp(addr, "/health", TIMEOUT)) {
        Ok((status, body)) => {
            println!("{}", String::from_utf8_lossy(&body));
            if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => fail(1, format!("no answer from http://{addr}/health: {error}")),
    }
}
