//! `alien deployments ls|get|wait|retry|redeploy|delete`: a deployment named by its id or
//! as `group/name` (`client::deployments`), then `GET /v1/deployments/{id}` or the lifecycle
//! routes.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use client::{ClientError, Manager};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::output::{self, Paint};
use crate::args::{DeploymentsArgs, DeploymentsCommand};

/// How often `wait` looks at the deployment.
const POLL: Duration = Duration::from_secs(1);

pub fn run(args: DeploymentsArgs) -> Result<(), ClientError> {
    let manager = super::connect(&args.manager)?;
    let json = args.manager.json;
    match args.command {
        DeploymentsCommand::Ls => list(&manager, json),
        DeploymentsCommand::Get { deployment } => {
            let deployment = client::deployments::resolve(&manager, &deployment)?;
            if json {
                output::json(&deployment);
            } else {
                describe(&deployment);
            }
            Ok(())
        }
        DeploymentsCommand::Wait {
            deployment,
            status,
            timeout,
        } => {
            let reached = wait(&manager, &deployment, &status, Duration::from_secs(timeout))?;
            if json {
                output::json(&reached);
            } else {
                println!(
                    "{} is {} (release {})",
                    reference(&reached),
                    Paint::stdout().status(&status),
                    output::field(&reached, "/currentReleaseId")
                );
            }
            Ok(())
        }
        DeploymentsCommand::Retry { deployment } => {
            lifecycle(&manager, &deployment, "retry", None, json, "Retrying")
        }
        DeploymentsCommand::Redeploy { deployment } => {
            lifecycle(&manager, &deployment, "redeploy", None, json, "Redeploying")
        }
        DeploymentsCommand::Delete { deployment } => lifecycle(
            &manager,
            &deployment,
            "delete",
            Some(json!({"action": "cleanup"})),
            json,
            "Deleting",
        ),
    }
}

fn list(manager: &Manager, json: bool) -> Result<(), ClientError> {
    output::list(
        manager,
        "/v1/deployments?include=deploymentGroup",
        json,
        &[
            "Reference",
            "ID",
            "Status",
            "Platform",
            "Current release",
            "Desired release",
            "Updated",
        ],
        |deployment| {
            vec![
                reference(deployment),
                output::field(deployment, "/id"),
                output::field(deployment, "/status"),
                output::field(deployment, "/platform"),
                output::field(deployment, "/currentReleaseId"),
                output::field(deployment, "/desiredReleaseId"),
                output::field(deployment, "/updatedAt"),
            ]
        },
    )
}

/// `group/name`, the group by its name when the answer includes it.
fn reference(deployment: &Value) -> String {
    let group = deployment["deploymentGroup"]["name"]
        .as_str()
        .or_else(|| deployment["deploymentGroupId"].as_str())
        .unwrap_or("-");
    format!("{group}/{}", output::field(deployment, "/name"))
}

fn describe(deployment: &Value) {
    let paint = Paint::stdout();
    println!("Deployment:      {}", output::field(deployment, "/id"));
    println!("Name:            {}", output::field(deployment, "/name"));
    println!(
        "Group:           {}",
        output::field(deployment, "/deploymentGroupId")
    );
    println!(
        "Status:          {}",
        paint.status(&output::field(deployment, "/status"))
    );
    println!(
        "Platform:        {}",
        output::field(deployment, "/platform")
    );
    println!(
        "Current release: {}",
        output::field(deployment, "/currentReleaseId")
    );
    println!(
        "Desired release: {}",
        output::field(deployment, "/desiredReleaseId")
    );
    println!(
        "Updated:         {}",
        output::field(deployment, "/updatedAt")
    );
    if error_message(deployment).is_some() {
        println!("Error:           {}", paint.red(&failure(deployment)));
    }
    let Some(resources) = deployment["stackState"]["resources"].as_object() else {
        return;
    };
    println!();
    let rows = resources
        .iter()
        .map(|(id, resource)| {
            vec![
                id.clone(),
                output::field(resource, "/type"),
                output::field(resource, "/status"),
                output::field(resource, "/outputs/publicEndpoints/default/url"),
            ]
        })
        .collect();
    output::table(&["Resource", "Type", "Status", "Endpoint"], rows);
}

fn error_message(deployment: &Value) -> Option<String> {
    let error = &deployment["error"];
    error["message"]
        .as_str()
        .or_else(|| error.as_str())
        .map(str::to_owned)
}

/// The deployment's error, and under it each failed resource's.
fn failure(deployment: &Value) -> String {
    let mut text = error_message(deployment).unwrap_or_else(|| "no error was recorded".into());
    for (id, resource) in deployment["stackState"]["resources"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if let Some(message) = resource["error"]["message"].as_str() {
            text.push_str(&format!("\n  {id}: {message}"));
        }
    }
    text
}

/// Polls the deployment until it has `status`; a failed status (other than the one waited
/// for) ends the wait at once with the deployment's error.
fn wait(
    manager: &Manager,
    spec: &str,
    status: &str,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let started = Instant::now();
    let spinner = std::io::stderr().is_terminal().then(|| {
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner
    });
    let mut last = String::new();
    let outcome = loop {
        let deployment = match client::deployments::resolve(manager, spec) {
            Ok(deployment) => deployment,
            // A deployment that was deleted is gone once its teardown finished.
            Err(error) if status == "deleted" && error.status() == Some(404) => {
                break Ok(json!({"status": "deleted"}));
            }
            Err(error) => break Err(error),
        };
        let now = deployment["status"].as_str().unwrap_or_default().to_owned();
        if now != last {
            let line = format!("{} is {now}", reference(&deployment));
            match &spinner {
                Some(spinner) => spinner.set_message(line),
                None => eprintln!("{line}"),
            }
            last = now.clone();
        }
        if now == status {
            break Ok(deployment);
        }
        if now.ends_with("-failed") && !status.ends_with("-failed") {
            break Err(ClientError::Failed(format!(
                "{} is {now}: {}",
                reference(&deployment),
                failure(&deployment)
            )));
        }
        if started.elapsed() >= timeout {
            break Err(ClientError::Failed(format!(
                "{} is still {now} after {}s (--timeout waits longer)",
                reference(&deployment),
                timeout.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    outcome
}

fn lifecycle(
    manager: &Manager,
    spec: &str,
    action: &str,
    body: Option<Value>,
    json: bool,
    doing: &str,
) -> Result<(), ClientError> {
    let deployment = client::deployments::resolve(manager, spec)?;
    let id = output::field(&deployment, "/id");
    let path = format!("/v1/deployments/{id}/{action}");
    let answer = match &body {
        Some(body) => manager.post(&path, body)?,
        None => manager.post_empty(&path)?,
    };
    if json {
        output::json(&answer);
    } else {
        println!("{doing} {} ({id}).", reference(&deployment));
        if let Some(message) = answer["message"].as_str() {
            println!("{message}");
        }
    }
    Ok(())
}
