//! The storage trigger: watches the storage's directory tree (inotify, through `notify`) and
//! delivers a `StorageEvent` task per object created or deleted under it. An object counts
//! as created when a writer closes it or renames it into place, so the size is the final
//! one (the public platform reports a file when it appears, often empty); it counts as
//! deleted when it is removed or renamed away. Directories and the SDK's staging files
//! (`name#<digits>`) are not objects. The app's result is not waited on for more than
//! [`TASK_TIMEOUT`] and changes nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, ModifyKind, RemoveKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{Producer, outcome, timestamp};
use crate::proto::{StorageEvent, task};

const TASK_TIMEOUT: Duration = Duration::from_secs(30);
/// Events the watcher may be ahead of the app by; beyond that they are dropped, with a log.
const BACKLOG: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Deleted,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Deleted => "deleted",
        }
    }
}

pub(super) async fn run(producer: Producer, storage: String, dir: PathBuf, events: Vec<String>) {
    let (sender, mut changes) = mpsc::channel::<Event>(BACKLOG);
    let watcher = notify::recommended_watcher(move |event: notify::Result<Event>| match event {
        Ok(event) => {
            if sender.try_send(event).is_err() {
                tracing::warn!("storage events come faster than the app takes them; one dropped");
            }
        }
        Err(error) => tracing::warn!(%error, "the storage watch reported an error"),
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::error!(storage, %error, "cannot watch the storage; its trigger is off");
            return;
        }
    };
    if let Err(error) = watcher.watch(&dir, RecursiveMode::Recursive) {
        tracing::error!(storage, dir = %dir.display(), %error, "cannot watch the storage; its trigger is off");
        return;
    }
    loop {
        let event = tokio::select! {
            event = changes.recv() => event,
            () = producer.stop.cancelled() => return,
        };
        let Some(event) = event else { return };
        for (change, path) in changes_of(&event) {
            if !(events.is_empty() || events.iter().any(|wanted| wanted == change.name())) {
                continue;
            }
            let Some(key) = object_key(&dir, path) else {
                continue;
            };
            let size = match change {
                Change::Created => match std::fs::metadata(path) {
                    Ok(metadata) if metadata.is_file() => metadata.len(),
                    // Gone again, or not a file: nothing to report.
                    _ => continue,
                },
                Change::Deleted => 0,
            };
            let payload = task::Payload::StorageEvent(StorageEvent {
                key: key.clone(),
                event_type: change.name().into(),
                bucket: storage.clone(),
                size,
                timestamp: Some(timestamp(SystemTime::now())),
                ..StorageEvent::default()
            });
            let result = producer.deliver(payload, TASK_TIMEOUT).await;
            tracing::debug!(
                storage,
                key,
                outcome = outcome(&result),
                "storage event delivered"
            );
        }
    }
}

/// The object changes one watch event stands for.
fn changes_of(event: &Event) -> Vec<(Change, &Path)> {
    let change = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Change::Created,
        EventKind::Remove(RemoveKind::File | RemoveKind::Any)
        | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => Change::Deleted,
        _ => return Vec::new(),
    };
    event
        .paths
        .iter()
        .map(|path| (change, path.as_path()))
        .collect()
}

/// The object's key: its path under the root, `/`-separated; none for a staging file.
fn object_key(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let name = relative.file_name()?.to_str()?;
    if let Some((_, suffix)) = name.rsplit_once('#')
        && !suffix.is_empty()
        && suffix.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let parts: Option<Vec<&str>> = relative.iter().map(|part| part.to_str()).collect();
    Some(parts?.join("/"))
}

#[cfg(test)]
mod tests {
    use notify::event::CreateKind;

    use super::*;

    #[test]
    fn keys_are_relative_and_staging_files_are_not_objects() {
        let root = Path::new("/data/storage/files");
        assert_eq!(
            object_key(root, Path::new("/data/storage/files/a/b.txt")).as_deref(),
            Some("a/b.txt")
        );
        assert_eq!(
            object_key(root, Path::new("/data/storage/files/b.txt#1234")),
            None
        );
        assert_eq!(
            object_key(root, Path::new("/data/storage/files/tag#v2")).as_deref(),
            Some("tag#v2")
        );
        assert_eq!(object_key(root, Path::new("/elsewhere/x")), None);
    }

    #[test]
    fn a_closed_write_or_a_rename_into_place_creates_and_a_removal_deletes() {
        let path = PathBuf::from("/r/x");
        let event = |kind| Event::new(kind).add_path(path.clone());
        let created = [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
        ];
        for kind in created {
            assert_eq!(
                changes_of(&event(kind)),
                vec![(Change::Created, path.as_path())]
            );
        }
        for kind in [
            EventKind::Remove(RemoveKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        ] {
            assert_eq!(
                changes_of(&event(kind)),
                vec![(Change::Deleted, path.as_path())]
            );
        }
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Remove(RemoveKind::Folder),
        ] {
            assert!(changes_of(&event(kind)).is_empty());
        }
    }
}
