//! The key that signs command response URLs and registry upload sessions. The public
//! manager derives it from the admin token (and `alien serve` leaves it empty); ours is 32
//! random bytes made on first start and kept in the data directory, so that it survives
//! restarts and token changes, and is never derived from anything a client holds.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::commands::signing::KEY_FILE as FILE;
use tracing::{info, warn};

use crate::StartError;

const LEN: usize = 32;

/// The key. Its `Debug` form is redacted so that it cannot reach a log by accident.
#[derive(Clone)]
pub struct SigningKey(Arc<[u8; LEN]>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

impl SigningKey {
    /// The key in `data_dir`, made there first if there is none.
    pub fn load_or_create(data_dir: &Path) -> Result<SigningKey, StartError> {
        let path = data_dir.join(FILE);
        let failed = |source| StartError::SigningKey {
            path: path.clone(),
            source,
        };
        match File::open(&path) {
            Ok(file) => read(file, &path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut key = [0u8; LEN];
                getrandom::fill(&mut key).map_err(StartError::Random)?;
                write(data_dir, &path, &key).map_err(failed)?;
                info!(path = %path.display(), "generated the signing key for command and upload URLs");
                Ok(SigningKey(Arc::new(key)))
            }
            Err(e) => Err(failed(e)),
        }
    }

    pub fn as_bytes(&self) -> &[u8; LEN] {
        &self.0
    }
}

fn read(mut file: File, path: &Path) -> Result<SigningKey, StartError> {
    let failed = |source| StartError::SigningKey {
        path: path.to_path_buf(),
        source,
    };
    let metadata = file.metadata().map_err(failed)?;
    if metadata.len() != LEN as u64 {
        return Err(StartError::SigningKeyLength {
            path: path.to_path_buf(),
            len: metadata.len(),
            expected: LEN,
        });
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        warn!(path = %path.display(), "the signing key was readable by others; restricting it to its owner");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(failed)?;
    }
    let mut key = [0u8; LEN];
    file.read_exact(&mut key).map_err(failed)?;
    Ok(SigningKey(Arc::new(key)))
}

/// Writes the key so that a crash leaves either no key file or the whole key: a private
/// temporary file, flushed to disk, renamed into place, and the directory entry flushed.
fn write(dir: &Path, path: &Path, key: &[u8; LEN]) -> io::Result<()> {
    let temporary: PathBuf = dir.join(format!("{FILE}.tmp"));
    // A temporary file is only left over from a start that crashed before its rename.
    if let Err(e) = fs::remove_file(&temporary)
        && e.kind() != io::ErrorKind::NotFound
    {
        return Err(e);
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(key)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn the_key_is_made_once_private_and_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = SigningKey::load_or_create(dir.path()).expect("created");
        let path = dir.path().join(FILE);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read(&path).expect("read"), first.as_bytes());
        assert_ne!(first.as_bytes(), &[0u8; LEN]);
        assert!(!dir.path().join(format!("{FILE}.tmp")).exists());

        let again = SigningKey::load_or_create(dir.path()).expect("loaded");
        assert_eq!(again.as_bytes(), first.as_bytes());
        assert_eq!(format!("{again:?}"), "SigningKey(…)");

        let other = tempfile::tempdir().expect("tempdir");
        let different = SigningKey::load_or_create(other.path()).expect("created");
        assert_ne!(different.as_bytes(), first.as_bytes());
    }

    #[test]
    fn a_leftover_temporary_file_is_replaced_and_loose_permissions_are_tightened() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(format!("{FILE}.tmp")), b"partial").expect("write");
        let key = SigningKey::load_or_create(dir.path()).expect("created");
        let path = dir.path().join(FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let loaded = SigningKey::load_or_create(dir.path()).expect("loaded");
        assert_eq!(loaded.as_bytes(), key.as_bytes());
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE);
        fs::write(&path, b"short").expect("write");
        let error = SigningKey::load_or_create(dir.path()).expect_err("refused");
        assert!(
            matches!(error, StartError::SigningKeyLength { len: 5, .. }),
            "{error:?}"
        );
        assert_eq!(fs::read(&path).expect("read"), b"short");
    }
}
