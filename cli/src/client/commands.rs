//! `alien commands invoke`: a command on a running deployment's workload, its answer printed
//! (pretty JSON when it is JSON, the bytes as they are otherwise).

use std::io::Write;
use std::time::Duration;

use client::ClientError;
use client::commands::Invocation;

use super::output;
use crate::args::{CommandsArgs, CommandsCommand};

pub fn run(args: CommandsArgs) -> Result<(), ClientError> {
    let manager = super::connect(&args.manager)?;
    let CommandsCommand::Invoke {
        deployment,
        command,
        params,
        target,
        timeout,
    } = args.command;
    let params = read_params(&params)?;
    let deployment = client::deployments::resolve(&manager, &deployment)?;
    let status = output::field(&deployment, "/status");
    let id = output::field(&deployment, "/id");
    if status != "running" {
        return Err(ClientError::Failed(format!(
            "deployment {id} is {status}: commands go to running deployments (alien deployments wait {id})"
        )));
    }
    let outcome = client::commands::invoke(
        &manager,
        &Invocation {
            deployment_id: &id,
            command: &command,
            params: &params,
            target: target.as_deref(),
            timeout: Duration::from_secs(timeout),
        },
    )?;
    let Some(response) = outcome.response else {
        let error = &outcome.status["response"];
        return Err(ClientError::Failed(
            match outcome.status["state"].as_str() {
                Some("EXPIRED") => {
                    format!("command {command} expired: no workload answered it in time")
                }
                _ => format!(
                    "command {command} failed: {}: {}",
                    output::field(error, "/code"),
                    output::field(error, "/message")
                ),
            },
        ));
    };
    match serde_json::from_slice::<serde_json::Value>(&response) {
        Ok(value) => output::json(&value),
        Err(_) => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&response)
                .and_then(|()| stdout.flush())
                .map_err(|e| ClientError::Failed(format!("cannot print the answer: {e}")))?;
        }
    }
    Ok(())
}

/// `--params`: JSON, or `@FILE` holding it; checked to be JSON before anything is sent.
fn read_params(given: &str) -> Result<Vec<u8>, ClientError> {
    let (bytes, origin) = match given.strip_prefix('@') {
        Some(path) => (
            std::fs::read(path)
                .map_err(|e| ClientError::Usage(format!("--params @{path}: {e}")))?,
            format!("@{path}"),
        ),
        None => (given.as_bytes().to_vec(), "--params".to_owned()),
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .map_err(|e| ClientError::Usage(format!("{origin} is not JSON: {e}")))?;
    Ok(bytes)
}
