//! Where a command goes: the target the request names, or the one the deployment has,
//! and whether it is pushed or pulled. Functions of the request and the deployment's facts
//! alone, so their cases are tested here without a store.

use protocol::commandd::{DeploymentFacts, OPERATOR_TARGET};
use protocol::commands::{CommandTarget, DeliveryMode, TargetType};

use crate::Error;

/// The target: `operator` (reserved; the manager has refused it to every standalone token),
/// the resource the request names, or, when it names none, the deployment's only command
/// target. None, several without a name, or an id with a `:` is the caller's mistake.
pub(super) fn select_target(
    deployment_id: &str,
    targets: &[CommandTarget],
    requested: Option<&str>,
) -> Result<CommandTarget, Error> {
    match requested {
        Some(OPERATOR_TARGET) => Ok(CommandTarget {
            resource_id: OPERATOR_TARGET.to_owned(),
            resource_type: TargetType::Daemon,
        }),
        Some(id) if id.contains(':') => Err(Error::TargetIdInvalid(id.to_owned())),
        Some(id) => targets
            .iter()
            .find(|t| !id.is_empty() && t.resource_id == id)
            .cloned()
            .ok_or_else(|| Error::TargetNotFound {
                resource_id: id.to_owned(),
                deployment_id: deployment_id.to_owned(),
            }),
        None => {
            let mut candidates = targets.iter().filter(|t| t.resource_id != OPERATOR_TARGET);
            let single = candidates
                .next()
                .ok_or_else(|| Error::NoTargets(deployment_id.to_owned()))?;
            if candidates.next().is_some() {
                return Err(Error::TargetAmbiguous(deployment_id.to_owned()));
            }
            if single.resource_id.contains(':') {
                return Err(Error::TargetIdInvalid(single.resource_id.clone()));
            }
            Ok(single.clone())
        }
    }
}

/// Containers and daemons pull; a worker pulls on Kubernetes (the operator relays) and
/// otherwise follows the deployment model.
pub(super) fn delivery_mode(target: &CommandTarget, deployment: &DeploymentFacts) -> DeliveryMode {
    match target.resource_type {
        TargetType::Container | TargetType::Daemon => DeliveryMode::Pull,
        TargetType::Worker if deployment.platform == "kubernetes" => DeliveryMode::Pull,
        TargetType::Worker => deployment.deployment_model,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, kind: TargetType) -> CommandTarget {
        CommandTarget {
            resource_id: id.into(),
            resource_type: kind,
        }
    }

    #[test]
    fn target_resolution_of_spec_1_3() {
        let one = [target("api", TargetType::Worker)];
        let two = [
            target("api", TargetType::Worker),
            target("jobs", TargetType::Container),
        ];
        let with_operator = [
            target("operator", TargetType::Daemon),
            target("api", TargetType::Worker),
        ];
        // (targets, requested, Ok(resource id) or the error code)
        type Case<'a> = (
            &'a [CommandTarget],
            Option<&'a str>,
            Result<&'a str, &'a str>,
        );
        let cases: Vec<Case<'_>> = vec![
            (&one, None, Ok("api")),
            (&[], None, Err("NO_COMMAND_TARGETS")),
            (&two, None, Err("COMMAND_TARGET_AMBIGUOUS")),
            (&with_operator, None, Ok("api")),
            (&two, Some("jobs"), Ok("jobs")),
            (&two, Some("nope"), Err("COMMAND_TARGET_NOT_FOUND")),
            (&two, Some(""), Err("COMMAND_TARGET_NOT_FOUND")),
            (&two, Some("a:b"), Err("COMMAND_TARGET_ID_INVALID")),
            (&[], Some("operator"), Ok("operator")),
        ];
        for (targets, requested, expected) in cases {
            let got = select_target("dep_1", targets, requested)
                .map(|t| t.resource_id)
                .map_err(|e| match e {
                    Error::NoTargets(_) => "NO_COMMAND_TARGETS",
                    Error::TargetAmbiguous(_) => "COMMAND_TARGET_AMBIGUOUS",
                    Error::TargetNotFound { .. } => "COMMAND_TARGET_NOT_FOUND",
                    Error::TargetIdInvalid(_) => "COMMAND_TARGET_ID_INVALID",
                    other => panic!("unexpected {other:?}"),
                });
            assert_eq!(got.as_deref().map_err(|e| *e), expected, "{requested:?}");
        }
    }

    #[test]
    fn delivery_modes() {
        let facts = |platform: &str, model| DeploymentFacts {
            id: "dep_1".into(),
            status: "running".into(),
            platform: platform.into(),
            deployment_model: model,
            targets: vec![],
            workers: Default::default(),
            push_token: None,
        };
        let worker = target("api", TargetType::Worker);
        let container = target("jobs", TargetType::Container);
        assert_eq!(
            delivery_mode(&worker, &facts("local", DeliveryMode::Push)),
            DeliveryMode::Push
        );
        assert_eq!(
            delivery_mode(&worker, &facts("local", DeliveryMode::Pull)),
            DeliveryMode::Pull
        );
        assert_eq!(
            delivery_mode(&worker, &facts("kubernetes", DeliveryMode::Push)),
            DeliveryMode::Pull
        );
        assert_eq!(
            delivery_mode(&container, &facts("aws", DeliveryMode::Push)),
            DeliveryMode::Pull
        );
    }
}
