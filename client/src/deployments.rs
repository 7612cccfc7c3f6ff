//! A deployment as a user names it: its id (`dep_…`) or `group/name`, the group by its name
//! or its id. A bare name is refused: names are unique only within a group.

use serde_json::Value;

use crate::api::Manager;
use crate::error::ClientError;

/// How a deployment was named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Id(String),
    Named { group: String, name: String },
}

impl Spec {
    pub fn parse(text: &str) -> Result<Spec, ClientError> {
        let text = text.trim();
        if text.starts_with("dep_") && !text.contains('/') {
            return Ok(Spec::Id(text.to_owned()));
        }
        match text.split_once('/') {
            Some((group, name)) if !group.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Spec::Named {
                    group: group.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(ClientError::Usage(format!(
                "{text:?} is not a deployment: name one by its id (dep_…) or as group/name"
            ))),
        }
    }
}

/// The deployment `spec` names, as `GET /v1/deployments/{id}` answers it.
pub fn resolve(manager: &Manager, spec: &str) -> Result<Value, ClientError> {
    match Spec::parse(spec)? {
        Spec::Id(id) => manager.get(&format!("/v1/deployments/{id}")),
        Spec::Named { group, name } => {
            let listed = manager.get(&format!(
                "/v1/deployments?deploymentGroupId={}&name={}&include=deploymentGroup",
                encode(&group),
                encode(&name)
            ))?;
            let items = listed["items"].as_array().cloned().unwrap_or_default();
            let found = items.into_iter().find(|item| {
                item["name"] == name.as_str()
                    && (item["deploymentGroup"]["name"] == group.as_str()
                        || item["deploymentGroupId"] == group.as_str())
            });
            match found {
                Some(item) => {
                    let id = item["id"].as_str().unwrap_or_default();
                    manager.get(&format!("/v1/deployments/{id}"))
                }
                None => Err(ClientError::Refused {
                    method: "GET".into(),
                    path: "/v1/deployments".into(),
                    status: 404,
                    code: "DEPLOYMENT_NOT_FOUND".into(),
                    message: format!("no deployment {name:?} in the group {group:?}"),
                }),
            }
        }
    }
}

/// `text` as a query value: everything but unreserved characters percent-encoded.
pub fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_ids_or_group_slash_name() {
        assert_eq!(
            Spec::parse("dep_abc").expect("id"),
            Spec::Id("dep_abc".into())
        );
        assert_eq!(
            Spec::parse("acme/eu-1").expect("named"),
            Spec::Named {
                group: "acme".into(),
                name: "eu-1".into()
            }
        );
        for bad in ["eu-1", "acme/", "/eu-1", "a/b/c", ""] {
            assert!(Spec::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(encode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
