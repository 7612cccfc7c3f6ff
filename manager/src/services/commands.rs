//! The facts commandd needs about a deployment, read from our records: commandd never reads
//! the manager's database, so each forwarded request carries them (`protocol::commandd`).

use std::collections::BTreeMap;

use plumbing::config::Secret;
use protocol::commandd::{DeploymentFacts, WorkerFacts};
use protocol::commands::{CommandTarget, DeliveryMode, TargetType};
use serde::Deserialize;
use serde_json::Value;

use crate::Error;
use crate::services::deployments::stored_model;
use crate::store::deployments::Deployment;
use crate::store::{Store, deployments, releases};
use crate::wire::DeploymentModel;

/// What commandd needs to know of `deployment` (see `protocol::commandd::DeploymentFacts`).
pub async fn facts(store: &Store, deployment: &Deployment) -> Result<DeploymentFacts, Error> {
    let targets = match &deployment.current_release_id {
        Some(release) => {
            let (release, platform) = (release.clone(), deployment.platform.clone());
            let stack = store
                .read(move |conn| releases::platform_stack(conn, &release, &platform))
                .await?
                .flatten();
            match stack {
                Some(stack) => command_targets(stack.get())?,
                None => Vec::new(),
            }
        }
        None => Vec::new(),
    };
    // Only deployd, which runs the worker runtimes, reports where they listen: a client's
    // stack state is never a source, or anyone who may report a state could make commandd
    // connect anywhere with the deployment's token.
    let id = deployment.id.clone();
    let workers: BTreeMap<String, WorkerFacts> = store
        .read(move |conn| deployments::push_targets(conn, &id))
        .await?
        .into_iter()
        .map(|(worker, url)| {
            (
                worker,
                WorkerFacts {
                    status: Some("running".to_owned()),
                    push_target: Some(url),
                },
            )
        })
        .collect();
    // The deployment's raw token leaves the manager only to go with a push.
    let push_token = if workers.is_empty() {
        None
    } else {
        let id = deployment.id.clone();
        store
            .read(move |conn| deployments::workload_token(conn, &id))
            .await?
            .map(Secret::new)
    };
    Ok(DeploymentFacts {
        id: deployment.id.clone(),
        status: deployment.status.clone(),
        platform: deployment.platform.clone(),
        deployment_model: match stored_model(&deployment.stack_settings) {
            DeploymentModel::Push => DeliveryMode::Push,
            DeploymentModel::Pull => DeliveryMode::Pull,
        },
        targets,
        workers,
        push_token,
    })
}

/// The stack's workers, containers and daemons with `commandsEnabled`, in declaration order:
/// the command targets. The stack is read as the client sent it, so that order is the text's.
fn command_targets(stack: &str) -> Result<Vec<CommandTarget>, Error> {
    #[derive(Deserialize)]
    struct Stack {
        #[serde(default, deserialize_with = "in_order")]
        resources: Vec<(String, Resource)>,
    }
    #[derive(Deserialize)]
    struct Resource {
        config: Config,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Config {
        #[serde(rename = "type")]
        kind: String,
        id: Option<String>,
        commands_enabled: Option<Value>,
    }
    let stack: Stack = serde_json::from_str(stack)?;
    Ok(stack
        .resources
        .into_iter()
        .filter(|(_, r)| r.config.commands_enabled == Some(Value::Bool(true)))
        .filter_map(|(key, r)| {
            Some(CommandTarget {
                resource_type: TargetType::parse(&r.config.kind)?,
                resource_id: r.config.id.unwrap_or(key),
            })
        })
        .collect())
}

/// A JSON object's entries in the order of the text.
fn in_order<'de, D, V>(deserializer: D) -> Result<Vec<(String, V)>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Entries<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Entries<V> {
        type Value = Vec<(String, V)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::new();
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }
    deserializer.deserialize_map(Entries(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_in_declaration_order() {
        let stack = r#"{"resources": {
            "zeta": {"config": {"type": "container", "id": "zeta", "commandsEnabled": true}},
            "files": {"config": {"type": "storage", "id": "files", "commandsEnabled": true}},
            "alpha": {"config": {"type": "worker", "id": "alpha", "commandsEnabled": true}},
            "quiet": {"config": {"type": "daemon", "id": "quiet"}},
            "off": {"config": {"type": "daemon", "id": "off", "commandsEnabled": false}},
            "d": {"config": {"type": "daemon", "id": "d", "commandsEnabled": true}}
        }}"#;
        let ids: Vec<(String, &str)> = command_targets(stack)
            .expect("targets")
            .into_iter()
            .map(|t| (t.resource_id, t.resource_type.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("zeta".to_owned(), "container"),
                ("alpha".to_owned(), "worker"),
                ("d".to_owned(), "daemon")
            ]
        );
        assert!(command_targets(r#"{"id": "x"}"#).expect("none").is_empty());
    }
}
