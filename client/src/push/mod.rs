//! The image push of `alien release`: images read from where a build left them
//! ([`source`]) go to the manager's registry ([`upload`]).
//!
//! Every blob of every image is one task, whatever number of images and repositories share
//! it; [`CONCURRENCY`] threads take the tasks, largest first, so that one large layer starts
//! at once and the small ones fill the other threads around it. A task asks each repository
//! that needs the blob whether it has it (`HEAD`); the first that lacks it gets the bytes,
//! the others a cross-repository mount of them. Manifests go last, once every blob they name
//! is there: an index's images by digest, then the image itself under a tag made of its
//! digest (a tag keeps it through a collection of untagged manifests).

pub mod source;
mod upload;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

pub use upload::{CHUNK, Registry};

use crate::error::ClientError;
use source::{Blob, Image};

/// Blobs pushed at once: enough to keep a connection busy while another waits for the
/// registry to store a blob, few enough not to crowd a manager's other clients.
const CONCURRENCY: usize = 4;

/// One image to push into one repository.
#[derive(Debug, Clone)]
pub struct Push {
    pub image: Arc<Image>,
    /// `<repository prefix>/<name>` on the manager's registry.
    pub repository: String,
    /// What the image is to the user (its source), for progress and errors.
    pub label: String,
}

/// How a blob came to be in every repository that needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Every repository had it.
    Present,
    /// Linked from another repository, without sending its bytes.
    Mounted,
    /// Sent.
    Uploaded,
}

/// What a push reports as it goes. Called from several threads at once.
pub trait Progress: Sync {
    /// What is to be pushed: `blobs` blobs of `bytes` bytes in all.
    fn planned(&self, _blobs: usize, _bytes: u64) {}
    fn started(&self, _digest: &str, _size: u64) {}
    /// `bytes` of the blob are sent (it can go back, when an upload resumes).
    fn position(&self, _digest: &str, _bytes: u64) {}
    /// A request failed and is tried again; `resume_at` is where a chunked upload goes on.
    fn retrying(&self, _digest: &str, _error: &ClientError, _resume_at: Option<u64>) {}
    fn finished(&self, _digest: &str, _size: u64, _outcome: Outcome) {}
    /// An image is in the registry as `reference`.
    fn pushed(&self, _label: &str, _reference: &str) {}
}

/// A blob and every repository it goes to.
struct Task<'a> {
    blob: &'a Blob,
    repositories: Vec<&'a str>,
    label: &'a str,
}

/// Pushes every image; answers each one's reference, `<host>/<repository>@<digest>`, in the
/// order of `pushes`.
pub fn push(
    registry: &Registry,
    pushes: &[Push],
    progress: &dyn Progress,
) -> Result<Vec<String>, ClientError> {
    let tasks = tasks(pushes);
    progress.planned(tasks.len(), tasks.iter().map(|t| t.blob.size).sum());
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<ClientError>> = Mutex::new(None);
    let is_failed = || {
        failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    };
    std::thread::scope(|scope| {
        for _ in 0..CONCURRENCY.min(tasks.len()) {
            scope.spawn(|| {
                while !is_failed() {
                    let Some(task) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    if let Err(error) = push_blob(registry, task, progress) {
                        failed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(error);
                        break;
                    }
                }
            });
        }
    });
    if let Some(error) = failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(error);
    }

    let mut done = HashSet::new();
    let mut references = Vec::with_capacity(pushes.len());
    for push in pushes {
        let digest = push.image.digest();
        if done.insert((push.repository.as_str(), digest)) {
            put_manifests(registry, push, progress)
                .map_err(|e| e.context(format!("pushing {}", push.label)))?;
        }
        let reference = format!("{}/{}@{digest}", registry.host(), push.repository);
        progress.pushed(&push.label, &reference);
        references.push(reference);
    }
    Ok(references)
}

/// One task per distinct blob, the largest first.
fn tasks(pushes: &[Push]) -> Vec<Task<'_>> {
    let mut tasks: Vec<Task<'_>> = Vec::new();
    let mut by_digest: HashMap<&str, usize> = HashMap::new();
    for push in pushes {
        for blob in &push.image.blobs {
            let index = *by_digest.entry(blob.digest.as_str()).or_insert_with(|| {
                tasks.push(Task {
                    blob,
                    repositories: Vec::new(),
                    label: &push.label,
                });
                tasks.len() - 1
            });
            let repositories = &mut tasks[index].repositories;
            if !repositories.contains(&push.repository.as_str()) {
                repositories.push(&push.repository);
            }
        }
    }
    tasks.sort_by_key(|task| std::cmp::Reverse(task.blob.size));
    tasks
}

fn push_blob(
    registry: &Registry,
    task: &Task<'_>,
    progress: &dyn Progress,
) -> Result<(), ClientError> {
    let Blob { digest, size, .. } = task.blob;
    progress.started(digest, *size);
    let mut outcome = Outcome::Present;
    let mut holder: Option<&str> = None;
    for repository in &task.repositories {
        let pushed = (|| {
            if registry.has_blob(repository, digest, progress)? {
                return Ok(None);
            }
            let session = match holder {
                Some(from) => match registry.mount(repository, digest, from, progress)? {
                    None => return Ok(Some(Outcome::Mounted)),
                    session => session,
                },
                None => None,
            };
            registry.upload(repository, task.blob, session, progress)?;
            Ok(Some(Outcome::Uploaded))
        })()
        .map_err(|e: ClientError| {
            e.context(format!(
                "pushing blob {digest} of {} to {repository}",
                task.label
            ))
        })?;
        outcome = outcome.max(pushed.unwrap_or(Outcome::Present));
        holder.get_or_insert(repository);
    }
    progress.finished(digest, *size, outcome);
    Ok(())
}

fn put_manifests(
    registry: &Registry,
    push: &Push,
    progress: &dyn Progress,
) -> Result<(), ClientError> {
    let Some((top, images)) = push.image.manifests.split_last() else {
        return Ok(());
    };
    for manifest in images {
        registry.put_manifest(&push.repository, &manifest.digest, manifest, progress)?;
    }
    registry.put_manifest(&push.repository, &tag(&top.digest), top, progress)
}

/// The tag an image is pushed under: its digest's first 16 hex digits.
fn tag(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("alien-{}", &hex[..hex.len().min(16)])
}
