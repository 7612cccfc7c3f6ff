//! What every request shares: the metadata, the files, and the upload sessions in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

use crate::digest::Hasher;
use crate::meta::Meta;
use crate::storage::Storage;

#[derive(Debug)]
pub struct Registry {
    pub meta: Meta,
    pub storage: Arc<Storage>,
    pub sessions: Sessions,
    /// One collection at a time.
    pub gc: tokio::sync::Mutex<()>,
}

/// Per-session locks, so that the requests of one upload run one at a time, and the hasher
/// each session keeps between requests. Losing this (a restart) loses nothing durable: the
/// hash is recomputed from the file.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Live>>>>,
}

#[derive(Debug, Default)]
pub struct Live {
    /// The hash of the session's first `.0` bytes.
    pub hasher: Option<(u64, Hasher)>,
}

impl Sessions {
    fn entry(&self, id: &str) -> Arc<tokio::sync::Mutex<Live>> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(live.entry(id.to_owned()).or_default())
    }

    pub async fn lock(&self, id: &str) -> OwnedMutexGuard<Live> {
        self.entry(id).lock_owned().await
    }

    /// The session's lock if no request holds it.
    pub fn try_lock(&self, id: &str) -> Option<OwnedMutexGuard<Live>> {
        self.entry(id).try_lock_owned().ok()
    }

    /// Drops the entry of a session whose row is gone (finished, cancelled, collected or
    /// never there); whoever still waits on the old lock will find no row either.
    pub fn forget(&self, id: &str) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.remove(id);
    }
}
