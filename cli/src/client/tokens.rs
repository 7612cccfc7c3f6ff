//! `alien tokens ls|revoke`: `GET /v1/tokens`, `DELETE /v1/tokens/{id}`.

use client::ClientError;
use client::deployments::encode;
use serde_json::json;

use super::output;
use crate::args::{TokensArgs, TokensCommand};

pub fn run(args: TokensArgs) -> Result<(), ClientError> {
    let manager = super::connect(&args.manager)?;
    let json = args.manager.json;
    match args.command {
        TokensCommand::Ls => output::list(
            &manager,
            "/v1/tokens",
            json,
            &["ID", "Type", "Prefix", "Group", "Deployment", "Created"],
            |token| {
                vec![
                    output::field(token, "/id"),
                    output::field(token, "/tokenType"),
                    output::field(token, "/keyPrefix"),
                    output::field(token, "/deploymentGroupId"),
                    output::field(token, "/deploymentId"),
                    output::field(token, "/createdAt"),
                ]
            },
        )?,
        TokensCommand::Revoke { id } => {
            manager.delete(&format!("/v1/tokens/{}", encode(&id)))?;
            if json {
                output::json(&json!({"id": id, "revoked": true}));
            } else {
                println!("Revoked {id}: it no longer authenticates.");
            }
        }
    }
    Ok(())
}
