//! `alien release`: a release made of a file of stacks, keyed by platform (the `stack` field
//! of `POST /v1/releases`), whose workloads may name images where a build left them.
//!
//! 1. Every platform's stack is checked as the manager checks it, before anything is pushed.
//! 2. Each workload's `code` `{"type": "image", "image": ...}` that names a source (`oci:`,
//!    `docker-archive:`, `docker://`; see [`crate::push::source`]) is read; any other image
//!    reference is kept as it is.
//! 3. `GET /v1/build-config?platform=<p>` says which repository prefix the manager's registry
//!    keeps each platform's images under; each image goes to `<prefix>/<resource id>`.
//! 4. The images are pushed ([`crate::push`]), and each workload names its image by digest:
//!    `<manager host>/<repository>@sha256:...`.
//! 5. `POST /v1/releases` creates the release.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use stack::{Code, Stack};

use crate::api::Manager;
use crate::error::ClientError;
use crate::push::source::{Image, Source};
use crate::push::{self, Progress, Push, Registry};

/// Where the manager keeps stacks: every platform the release body has a slot for.
const PLATFORMS: [&str; 7] = [
    "aws",
    "gcp",
    "azure",
    "kubernetes",
    "machines",
    "local",
    "test",
];
/// The one project of a standalone manager.
pub const PROJECT: &str = "default";

/// A release created.
#[derive(Debug, Clone)]
pub struct Released {
    pub id: String,
    /// The platforms it has a stack for.
    pub platforms: Vec<String>,
    /// The images pushed for it, each where a workload names it.
    pub images: Vec<PushedImage>,
}

#[derive(Debug, Clone)]
pub struct PushedImage {
    pub platform: String,
    pub resource: String,
    pub source: String,
    pub reference: String,
}

/// A workload whose image is a source to push.
struct Slot {
    platform: usize,
    resource: String,
    source: Source,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateRelease<'a> {
    stack: BTreeMap<&'a str, &'a RawValue>,
    project_id: &'a str,
}

pub fn release(
    manager: &Manager,
    stack_file: &Path,
    progress: &dyn Progress,
) -> Result<Released, ClientError> {
    let mut stacks = read_stacks(stack_file)?;
    let base = stack_file.parent().unwrap_or(Path::new("."));
    let slots = slots(&stacks, base)?;

    // Each image's repository: `<the platform's prefix>/<resource id>`.
    let mut prefixes: BTreeMap<usize, String> = BTreeMap::new();
    let mut repositories = Vec::with_capacity(slots.len());
    for slot in &slots {
        let prefix = match prefixes.entry(slot.platform) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(repository_prefix(manager, &stacks[slot.platform].0)?),
        };
        repositories.push(format!("{prefix}/{}", repository_name(&slot.resource)));
    }

    let scratch = tempfile::Builder::new()
        .prefix("alien-release-")
        .tempdir()
        .map_err(|e| ClientError::Failed(format!("cannot create a scratch directory: {e}")))?;
    let mut opened: Vec<(&Source, Arc<Image>)> = Vec::new();
    let mut pushes = Vec::with_capacity(slots.len());
    for (slot, repository) in slots.iter().zip(repositories) {
        let image = match opened.iter().find(|(source, _)| *source == &slot.source) {
            Some((_, image)) => image.clone(),
            None => {
                let image = Arc::new(slot.source.open(manager, scratch.path())?);
                opened.push((&slot.source, image.clone()));
                image
            }
        };
        pushes.push(Push {
            image,
            repository,
            label: slot.source.to_string(),
        });
    }
    let references = if pushes.is_empty() {
        Vec::new()
    } else {
        push::push(&Registry::new(manager), &pushes, progress)?
    };

    let mut images = Vec::with_capacity(slots.len());
    for (slot, reference) in slots.iter().zip(references) {
        let (platform, stack) = &mut stacks[slot.platform];
        if let Some(entry) = stack.resources.get_mut(&slot.resource)
            && let Some(code) = entry.config.code_mut()
        {
            *code = Code::Image {
                image: reference.clone(),
            };
        }
        images.push(PushedImage {
            platform: platform.clone(),
            resource: slot.resource.clone(),
            source: slot.source.to_string(),
            reference,
        });
    }

    let id = create(manager, &stacks)?;
    Ok(Released {
        id,
        platforms: stacks.into_iter().map(|(platform, _)| platform).collect(),
        images,
    })
}

/// `POST /v1/releases` of `stacks`; the new release's id.
fn create(manager: &Manager, stacks: &[(String, Stack)]) -> Result<String, ClientError> {
    let serialized = stacks
        .iter()
        .map(|(platform, stack)| {
            let text = serde_json::to_string(stack).and_then(RawValue::from_string);
            text.map(|raw| (platform.as_str(), raw))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Failed(format!("cannot write the release's stacks: {e}")))?;
    let body = CreateRelease {
        stack: serialized
            .iter()
            .map(|(p, raw)| (*p, raw.as_ref()))
            .collect(),
        project_id: PROJECT,
    };
    let body = serde_json::to_string(&body)
        .map_err(|e| ClientError::Failed(format!("cannot write the release: {e}")))?;
    let created = manager.post_text("/v1/releases", body)?;
    created["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Answer {
            path: "/v1/releases".into(),
            reason: format!("no id in {created}"),
        })
}

/// The file's stacks, each checked as the manager checks it, in the order of [`PLATFORMS`].
fn read_stacks(path: &Path) -> Result<Vec<(String, Stack)>, ClientError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Usage(format!("cannot read {shown}: {e}")))?;
    let by_platform: BTreeMap<String, Option<Box<RawValue>>> = serde_json::from_str(&text)
        .map_err(|e| {
            ClientError::Usage(format!(
                "{shown} is not an object of stacks keyed by platform (as {{\"local\": {{...}}}}): {e}"
            ))
        })?;
    if let Some(unknown) = by_platform
        .keys()
        .find(|p| !PLATFORMS.contains(&p.as_str()))
    {
        return Err(ClientError::Usage(format!(
            "{shown}: {unknown:?} is not a platform; stacks are keyed by {}",
            PLATFORMS.join(", ")
        )));
    }
    let mut stacks = Vec::new();
    for platform in PLATFORMS {
        if let Some(Some(raw)) = by_platform.get(platform) {
            let stack = Stack::parse(raw.get()).map_err(|e| {
                ClientError::Usage(format!("{shown}: the {platform} stack is invalid: {e}"))
            })?;
            stacks.push((platform.to_owned(), stack));
        }
    }
    if stacks.is_empty() {
        return Err(ClientError::Usage(format!(
            "{shown} holds no stack: key one by its platform, as {{\"local\": {{...}}}}"
        )));
    }
    Ok(stacks)
}

/// The workloads whose image is a source to push.
fn slots(stacks: &[(String, Stack)], base: &Path) -> Result<Vec<Slot>, ClientError> {
    let mut slots = Vec::new();
    for (index, (platform, stack)) in stacks.iter().enumerate() {
        for (resource, entry) in stack.resources() {
            let Some(Code::Image { image }) = entry.config.code() else {
                continue;
            };
            let source = Source::parse(image, base).map_err(|e| {
                e.context(format!("the image of {resource} in the {platform} stack"))
            })?;
            if let Some(source) = source {
                slots.push(Slot {
                    platform: index,
                    resource: resource.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(slots)
}

/// `GET /v1/build-config?platform=<p>`'s `repositoryName`.
fn repository_prefix(manager: &Manager, platform: &str) -> Result<String, ClientError> {
    let path = format!("/v1/build-config?platform={platform}");
    let answer = manager.get(&path).map_err(|error| ClientError::Context {
        doing: format!("asking where {platform} images go"),
        hint: matches!(error.status(), Some(400 | 404)).then(|| {
            format!(
                "this manager's registry takes no {platform} images: push them to a registry \
                 its {platform} deployments reach, and name them by that reference"
            )
        }),
        source: Box::new(error),
    })?;
    answer["repositoryName"]
        .as_str()
        .map(|name| name.trim_matches('/').to_owned())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ClientError::Answer {
            path,
            reason: format!("no repositoryName in {answer}"),
        })
}

/// A repository name component for a resource id: lower case, runs of anything but letters
/// and digits as one `-`.
fn repository_name(resource: &str) -> String {
    let mut name = String::new();
    for c in resource.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_end_matches('-');
    if name.is_empty() {
        "image".to_owned()
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_become_repository_names() {
        assert_eq!(repository_name("web"), "web");
        assert_eq!(repository_name("API_Server.v2"), "api-server-v2");
        assert_eq!(repository_name("--"), "image");
    }

    #[test]
    fn stacks_are_checked_before_anything_is_pushed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |text: &str| {
            let path = dir.path().join("stack.json");
            std::fs::write(&path, text).expect("write");
            path
        };
        let usage = |text: &str| match read_stacks(&write(text)) {
            Err(ClientError::Usage(message)) => message,
            other => panic!("{text}: {other:?}"),
        };
        assert!(usage("[]").contains("not an object of stacks keyed by platform"));
        assert!(usage(r#"{"locla": {}}"#).contains(r#""locla" is not a platform"#));
        assert!(usage(r#"{"local": null}"#).contains("holds no stack"));
        assert!(usage(r#"{"local": {"resources": {}}}"#).contains("the local stack is invalid"));
        let stacks = read_stacks(&write(
            r#"{"local": {"id": "a", "resources": {}}, "aws": {"id": "b", "resources": {}}}"#,
        ))
        .expect("stacks");
        let platforms: Vec<&str> = stacks.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(platforms, ["aws", "local"]);
    }
}
