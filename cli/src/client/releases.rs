//! `alien releases ls|get`: `GET /v1/releases` and `GET /v1/releases/{id}`, with where the
//! release runs from `GET /v1/deployments`.

use client::ClientError;
use client::deployments::encode;
use serde_json::Value;

use super::output;
use crate::args::{ReleasesArgs, ReleasesCommand};

pub fn run(args: ReleasesArgs) -> Result<(), ClientError> {
    let manager = super::connect(&args.manager)?;
    let json = args.manager.json;
    match args.command {
        ReleasesCommand::Ls => output::list(
            &manager,
            "/v1/releases",
            json,
            &["ID", "Created", "Commit", "Ref", "Platforms"],
            |release| {
                vec![
                    output::field(release, "/id"),
                    output::field(release, "/createdAt"),
                    short_commit(release),
                    output::field(release, "/gitMetadata/commitRef"),
                    platforms(release),
                ]
            },
        )?,
        ReleasesCommand::Get { id } => {
            let release = manager.get(&format!("/v1/releases/{}", encode(&id)))?;
            if json {
                output::json(&release);
                return Ok(());
            }
            println!("Release:   {}", output::field(&release, "/id"));
            println!("Created:   {}", output::field(&release, "/createdAt"));
            println!("Commit:    {}", short_commit(&release));
            println!(
                "Ref:       {}",
                output::field(&release, "/gitMetadata/commitRef")
            );
            println!("Platforms: {}", platforms(&release));
            let deployments = manager.get("/v1/deployments")?;
            let on = |key: &str| {
                deployments["items"].as_array().map_or(0, |items| {
                    items.iter().filter(|d| d[key] == id.as_str()).count()
                })
            };
            println!(
                "Rollout:   {} deployments run it, {} are to run it",
                on("currentReleaseId"),
                on("desiredReleaseId")
            );
        }
    }
    Ok(())
}

fn short_commit(release: &Value) -> String {
    let commit = output::field(release, "/gitMetadata/commitSha");
    commit.chars().take(12).collect()
}

fn platforms(release: &Value) -> String {
    release["stack"]
        .as_object()
        .map(|stacks| stacks.keys().cloned().collect::<Vec<_>>().join(", "))
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "-".into())
}
