//! The volumes the requests the manager serves write to, and which of them is full, for
//! `/health`: the data directory (the sidecars' files, and the database unless
//! `[database] path` moves it elsewhere) and the database's directory.
//!
//! A volume becomes full when a response says so: the manager's own
//! [`Error::StorageFull`](crate::Error::StorageFull) (which carries the volume as an
//! extension), or a sidecar's `507` passed on to the client (registryd's, commandd's). It
//! stops being full once it has room again ([`plumbing::disk::Volume`]), which `/health`
//! looks at each time it is asked.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use plumbing::disk::{FullVolume, Volume};

use crate::error::StorageVolume;

#[derive(Debug, Clone)]
pub struct Volumes {
    data: Volume,
    /// The same as `data` when the database lives in the data directory.
    database: Volume,
}

impl Volumes {
    pub fn new(data_dir: &Path, database: &Path) -> Volumes {
        let data = Volume::new(data_dir);
        let database = match database.parent() {
            Some(dir) if !dir.starts_with(data_dir) && !dir.as_os_str().is_empty() => {
                Volume::new(dir)
            }
            _ => data.clone(),
        };
        Volumes { data, database }
    }

    fn volume(&self, which: StorageVolume) -> &Volume {
        match which {
            StorageVolume::Data => &self.data,
            StorageVolume::Database => &self.database,
        }
    }

    /// The volumes full now, each read afresh.
    pub async fn full(&self) -> Vec<FullVolume> {
        let volumes = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut full: Vec<FullVolume> = volumes.data.check().into_iter().collect();
            if volumes.database.path() != volumes.data.path() {
                full.extend(volumes.database.check());
            }
            full
        })
        .await
        .unwrap_or_default()
    }
}

/// Marks the volume a response found full. A `507` without the manager's own mark is a
/// sidecar's, passed on as it is, and all sidecars keep their files in the data directory.
pub async fn watch(State(volumes): State<Volumes>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let full = response
        .extensions()
        .get::<StorageVolume>()
        .copied()
        .or((response.status() == StatusCode::INSUFFICIENT_STORAGE).then_some(StorageVolume::Data));
    if let Some(which) = full {
        let volume = volumes.volume(which).clone();
        // Reads the room left, off the reactor; a failure to learn it changes no answer.
        let _ = tokio::task::spawn_blocking(move || volume.report_full()).await;
    }
    response
}
