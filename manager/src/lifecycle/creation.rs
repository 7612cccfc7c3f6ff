//! What a new deployment must satisfy before it is stored: its resource prefix, and the
//! deployment model its platform allows.

use crate::Error;
use crate::wire::{DeploymentModel, Platform};

const RESOURCE_PREFIX_RULE: &str = "resourcePrefix must be 3-40 characters: lowercase letters, numbers, and hyphens; start with a letter; end with a letter or number; and not contain consecutive hyphens";

/// A prefix for the physical names of a deployment's resources.
pub fn check_resource_prefix(prefix: &str) -> Result<(), Error> {
    let bytes = prefix.as_bytes();
    let valid = (3..=40).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.last().is_some_and(|b| *b != b'-')
        && !prefix.contains("--");
    if valid {
        Ok(())
    } else {
        Err(Error::BadRequest(RESOURCE_PREFIX_RULE.to_owned()))
    }
}

/// The model a deployment gets: cloud platforms are driven by the manager (push) and refuse
/// pull, Kubernetes is always pulled by its in-cluster agent, local may be either.
pub fn deployment_model(
    platform: Platform,
    requested: Option<DeploymentModel>,
) -> Result<DeploymentModel, Error> {
    match (platform, requested.unwrap_or_default()) {
        (Platform::Kubernetes, _) => Ok(DeploymentModel::Pull),
        (Platform::Local, model) | (_, model @ DeploymentModel::Push) => Ok(model),
        (platform, DeploymentModel::Pull) => Err(Error::BadRequest(format!(
            "{platform} deployments must use deploymentModel 'push', received 'pull'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_prefixes() {
        for (prefix, valid) in [
            ("acme-prod", true),
            ("abc", true),
            ("a1b2", true),
            (&"a".repeat(40), true),
            ("ab", false),
            (&"a".repeat(41), false),
            ("1abc", false),
            ("-abc", false),
            ("abc-", false),
            ("ab--c", false),
            ("Acme", false),
            ("ac_me", false),
            ("acmé", false),
            ("", false),
        ] {
            let result = check_resource_prefix(prefix);
            assert_eq!(result.is_ok(), valid, "{prefix}");
            if let Err(Error::BadRequest(message)) = result {
                assert_eq!(message, RESOURCE_PREFIX_RULE);
            }
        }
    }

    #[test]
    fn models_by_platform() {
        use DeploymentModel::{Pull, Push};
        for platform in Platform::ALL {
            for requested in [None, Some(Push), Some(Pull)] {
                let got = deployment_model(platform, requested);
                let expected = match (platform, requested) {
                    (Platform::Kubernetes, _) => Ok(Pull),
                    (Platform::Local, Some(Pull)) => Ok(Pull),
                    (_, Some(Pull)) => Err(format!(
                        "{platform} deployments must use deploymentModel 'push', received 'pull'"
                    )),
                    _ => Ok(Push),
                };
                let got = got.map_err(|e| e.to_string());
                assert_eq!(got, expected, "{platform} {requested:?}");
            }
        }
    }
}
