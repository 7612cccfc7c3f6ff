//! The manager's signing key as commandd reads it. The key signs the URLs commandd hands out
//! (`protocol::commands::signing`); the manager makes the file and owns it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use protocol::commands::signing::KEY_FILE;

/// The manager's key as commandd reads it: on first use, since commandd starts before the
/// manager makes the key on a first start (any request reaches commandd only through a
/// manager that has it), and again whenever the file is replaced.
#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
    cached: Arc<Mutex<Option<Cached>>>,
}

/// What tells a replaced file from the one read: device, inode, modification time.
type FileId = (u64, u64, i64, i64);

/// The key last read, and the file it was read from.
type Cached = (FileId, Arc<Vec<u8>>);

#[derive(Debug, thiserror::Error)]
#[error("signing key {}: {reason}", path.display())]
pub struct KeyError {
    pub path: PathBuf,
    pub reason: String,
}

impl KeyFile {
    pub fn in_dir(data_dir: &Path) -> KeyFile {
        KeyFile {
            path: data_dir.join(KEY_FILE),
            cached: Arc::default(),
        }
    }

    /// The key's bytes. Blocks on a `stat` (and a read when the file changed).
    pub fn get(&self) -> Result<Arc<Vec<u8>>, KeyError> {
        use std::os::unix::fs::MetadataExt;
        let failed = |reason: String| KeyError {
            path: self.path.clone(),
            reason,
        };
        let meta = std::fs::metadata(&self.path).map_err(|e| failed(e.to_string()))?;
        let id = (meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec());
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, key)) = cached.as_ref()
            && *seen == id
        {
            return Ok(Arc::clone(key));
        }
        let bytes = std::fs::read(&self.path).map_err(|e| failed(e.to_string()))?;
        if bytes.len() != 32 {
            return Err(failed(format!("holds {} bytes, not 32", bytes.len())));
        }
        let key = Arc::new(bytes);
        *cached = Some((id, Arc::clone(&key)));
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_read_on_use_and_again_when_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = KeyFile::in_dir(dir.path());
        assert!(file.get().is_err(), "no key yet");
        std::fs::write(dir.path().join(KEY_FILE), [3u8; 32]).expect("write");
        assert_eq!(file.get().expect("key").as_slice(), &[3u8; 32]);
        std::fs::remove_file(dir.path().join(KEY_FILE)).expect("remove");
        std::fs::write(dir.path().join(KEY_FILE), [4u8; 32]).expect("write");
        assert_eq!(file.get().expect("key").as_slice(), &[4u8; 32]);
        std::fs::write(dir.path().join(KEY_FILE), b"short").expect("write");
        assert!(file.get().is_err());
    }
}
