//! The client commands (`whoami`, `release`, `releases`, `deployments`, `onboard`,
//! `commands`, `tokens`): each reaches a manager with [`client::Manager`] and prints its answer for
//! people (tables and lines, colour only on a terminal) or, with `--json`, as JSON for
//! scripts. A failure is one `error:` line, a hint when the status says what to do, and an
//! exit status of [`client::error::exit`].

pub mod commands;
pub mod deployments;
pub mod onboard;
pub mod output;
pub mod release;
pub mod releases;
pub mod tokens;
pub mod whoami;

use std::process::ExitCode;

use client::{ClientError, Manager};

use crate::args::ManagerArgs;

/// The manager the arguments (or `ALIEN_MANAGER_URL` and `ALIEN_API_KEY`) name.
pub fn connect(args: &ManagerArgs) -> Result<Manager, ClientError> {
    let Some(url) = args
        .manager_url
        .as_deref()
        .filter(|url| !url.trim().is_empty())
    else {
        return Err(ClientError::Usage(
            "ALIEN_MANAGER_URL is not set: export the ALIEN_MANAGER_URL and ALIEN_API_KEY that \
             `alien serve` printed, or pass --manager-url and --api-key"
                .into(),
        ));
    };
    Manager::new(url, args.api_key.as_deref().unwrap_or_default())
}

/// The exit status of a client command, its error printed.
pub fn finish(result: Result<(), ClientError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let paint = output::Paint::stderr();
            eprintln!("{} {error}", paint.red("error:"));
            if let Some(hint) = error.hint() {
                eprintln!("{} {hint}", paint.dim("hint:"));
            }
            ExitCode::from(error.exit_code())
        }
    }
}
