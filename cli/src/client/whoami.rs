//! `alien whoami`: `GET /v1/whoami`.

use client::ClientError;

use super::output;
use crate::args::WhoamiArgs;

pub fn run(args: WhoamiArgs) -> Result<(), ClientError> {
    let manager = super::connect(&args.manager)?;
    let subject = manager.get("/v1/whoami")?;
    if args.manager.json {
        output::json(&subject);
        return Ok(());
    }
    let scope = &subject["scope"];
    let mut scope_text = output::field(scope, "/type");
    for (key, label) in [
        ("/deploymentGroupId", "deployment group"),
        ("/deploymentId", "deployment"),
        ("/projectId", "project"),
    ] {
        let value = output::field(scope, key);
        if value != "-" {
            scope_text.push_str(&format!(" ({label} {value})"));
        }
    }
    println!("Manager: {}", manager.base_url());
    println!("Key:     {}", output::field(&subject, "/id"));
    println!("Kind:    {}", output::field(&subject, "/kind"));
    println!("Role:    {}", output::field(&subject, "/role"));
    println!("Scope:   {scope_text}");
    Ok(())
}
