//! The repositories a release's images live in: what a deployment token may pull
//! (docs/compatibility.md, Registry proxy).

use std::collections::BTreeSet;

use serde_json::Value;

/// The resource types whose `config.code` can be an image (`{"type": "image", "image"}`).
const IMAGE_RESOURCES: [&str; 3] = ["worker", "container", "daemon"];

/// The repository an image reference names, with its registry host, tag and digest taken
/// off: `mgr.example.com:8080/artifacts/default:api-1@sha256:…` → `artifacts/default`. The
/// first component is a host when it has a `.` or a `:` or is `localhost`, as Docker reads
/// references; `None` when nothing is left.
pub fn repository(reference: &str) -> Option<&str> {
    let name = reference
        .split_once('@')
        .map_or(reference, |(name, _)| name);
    let name = match (name.rfind(':'), name.rfind('/')) {
        (Some(colon), Some(slash)) if colon > slash => &name[..colon],
        (Some(colon), None) => &name[..colon],
        _ => name,
    };
    let name = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest
        }
        _ => name,
    };
    (!name.is_empty()).then_some(name)
}

/// Every repository the images of a release's stacks (`{platform: stack}`, all platforms)
/// are in.
pub fn release_repositories(stacks: &Value) -> BTreeSet<String> {
    let Some(stacks) = stacks.as_object() else {
        return BTreeSet::new();
    };
    stacks
        .values()
        .filter_map(|stack| stack.get("resources")?.as_object())
        .flat_map(|resources| resources.values())
        .filter_map(|resource| {
            let config = resource.get("config")?;
            let kind = config.get("type")?.as_str()?;
            let code = config.get("code")?;
            if !IMAGE_RESOURCES.contains(&kind) || code.get("type")?.as_str()? != "image" {
                return None;
            }
            repository(code.get("image")?.as_str()?).map(str::to_owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_lose_host_tag_and_digest() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let by_digest = format!("localhost:8080/artifacts/default@{d}");
        let both = format!("mgr.example.com/artifacts/default/app:v1@{d}");
        let cases: Vec<(&str, Option<&str>)> = vec![
            (
                "localhost:8080/artifacts/default:api-k3j9x0qz",
                Some("artifacts/default"),
            ),
            (
                "manager.example.com/artifacts/default:api-1",
                Some("artifacts/default"),
            ),
            (
                "127.0.0.1:41234/artifacts/default/app:v1",
                Some("artifacts/default/app"),
            ),
            (
                "[::1]:5000/artifacts/default/app",
                Some("artifacts/default/app"),
            ),
            ("localhost/artifacts/default", Some("artifacts/default")),
            (&by_digest, Some("artifacts/default")),
            (&both, Some("artifacts/default/app")),
            // No host: the first component is part of the name.
            ("artifacts/default:v1", Some("artifacts/default")),
            ("artifacts/default", Some("artifacts/default")),
            ("alpine:3", Some("alpine")),
            ("alpine", Some("alpine")),
            ("registry:5000/team/app", Some("team/app")),
            ("", None),
            (":tag", None),
            ("@sha256:abc", None),
        ];
        for (reference, want) in cases {
            assert_eq!(repository(reference), want, "{reference:?}");
        }
    }

    #[test]
    fn images_of_workers_containers_and_daemons_in_any_platform() {
        let image = |kind: &str, id: &str, image: &str| json!({"config": {"type": kind, "id": id, "code": {"type": "image", "image": image}}});
        let stacks = json!({
            "local": {"resources": {
                "api": image("worker", "api", "h:1/artifacts/default:api-1"),
                "web": image("container", "web", "h:1/artifacts/default/web@sha256:ab"),
                "source": {"config": {"type": "worker", "id": "source",
                    "code": {"type": "source", "image": "h:1/not/this:1"}}},
                "bucket": image("storage", "bucket", "h:1/not/storage:1"),
                "nocode": {"config": {"type": "worker", "id": "nocode"}},
                "odd": {"config": {"type": "worker", "id": "odd",
                    "code": {"type": "image", "image": 7}}},
            }},
            "kubernetes": {"resources": {
                "agent": image("daemon", "agent", "h:1/artifacts/default/agent:v2"),
                "again": image("worker", "again", "h:1/artifacts/default:api-2"),
            }},
            "aws": {"id": "no resources"},
            "gcp": 5,
        });
        assert_eq!(
            release_repositories(&stacks),
            [
                "artifacts/default",
                "artifacts/default/agent",
                "artifacts/default/web"
            ]
            .map(str::to_owned)
            .into_iter()
            .collect()
        );
        assert!(release_repositories(&json!([])).is_empty());
    }
}
