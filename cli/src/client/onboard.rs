//! `alien onboard <name>`: a deployment group for a customer (`POST /v1/deployment-groups`)
//! and its first token (`POST /v1/deployment-groups/{id}/tokens`), with the command that
//! installs the agent on the customer's machine.

use client::ClientError;
use serde_json::json;

use super::output::{self, Paint};
use crate::args::OnboardArgs;

pub fn run(args: OnboardArgs) -> Result<(), ClientError> {
    let manager = super::connect(&args.manager)?;
    let name = slug(&args.name)?;
    let mut body = json!({"name": name});
    if let Some(max) = args.max_deployments {
        body["maxDeployments"] = json!(max);
    }
    let group = manager.post("/v1/deployment-groups", &body)?;
    let group_id = output::field(&group, "/id");
    let minted = manager.post_empty(&format!("/v1/deployment-groups/{group_id}/tokens"))?;
    let token = output::field(&minted, "/token");
    let install = minted["installCommand"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "curl -fsSL {}/install | sh -s -- --token {token}",
                manager.base_url()
            )
        });
    if args.manager.json {
        output::json(&json!({
            "deploymentGroupId": group_id,
            "name": group["name"],
            "token": token,
            "maxDeployments": group["maxDeployments"],
            "installCommand": install,
        }));
        return Ok(());
    }
    let paint = Paint::stdout();
    println!(
        "Onboarded {} (deployment group {group_id}, up to {} deployments).",
        paint.bold(&name),
        output::field(&group, "/maxDeployments")
    );
    println!();
    println!("Its token (shown once; it creates the customer's deployments):");
    println!("    {token}");
    println!();
    println!("On the customer's machine, as root:");
    println!("    {install}");
    Ok(())
}

/// The group's name: lower case, runs of other characters as one `-`.
fn slug(name: &str) -> Result<String, ClientError> {
    let mut slug = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        return Err(ClientError::Usage(format!(
            "{name:?} has no letter or digit to name a deployment group by"
        )));
    }
    Ok(slug)
}

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn names_become_slugs() {
        assert_eq!(slug("Acme Corp.").expect("slug"), "acme-corp");
        assert_eq!(slug("  eu--west_1 ").expect("slug"), "eu-west-1");
        assert!(slug("--").is_err());
    }
}
