//! Replacing a small file so that a reader, or a crash, sees the old content or the new one,
//! never a mix, and the new one survives a crash once this returns.

use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to a temporary file beside `path` (mode 0600), fsyncs it, renames it over
/// `path` and fsyncs the directory, so that the rename itself is durable.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("record.json");
        replace(&path, b"old").expect("first write");
        replace(&path, b"new").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("read_dir").collect();
        assert_eq!(left.len(), 1, "a temporary file is left: {left:?}");
    }
}
