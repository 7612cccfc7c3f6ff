//! Who may read the data directory: the service user alone. It holds raw deployment tokens
//! (`manager.db`), the signing key, command payloads and registry blobs, so files are 0600 and
//! directories 0700 whatever umask the process was started with (a bare shell and Docker
//! both start with 022, which would make every new file world-readable).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};

/// The permission bits of group and others, which nothing in the data directory keeps.
const SHARED_BITS: u32 = 0o077;

/// Makes everything this process and its children create private to its user: files 0600,
/// directories 0700, sockets 0700. Called first in every process, before anything is
/// created; children inherit it.
pub fn restrict_umask() {
    umask(Mode::from_bits_truncate(SHARED_BITS));
}

/// What [`tighten`] did.
#[derive(Debug, Default)]
pub struct Tightened {
    /// Files and directories whose group and other bits were removed.
    pub changed: u64,
    /// Entries that could not be read or changed, and the first reason.
    pub failed: u64,
    pub first_failure: Option<(PathBuf, io::Error)>,
}

impl Tightened {
    fn fail(&mut self, path: &Path, error: io::Error) {
        self.failed += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some((path.to_path_buf(), error));
        }
    }
}

/// Removes the group and other permission bits of `root` and of everything below it, so that
/// files made before [`restrict_umask`] existed (or copied in by hand) become private too.
/// Symbolic links are neither followed nor changed; the owner's bits are kept as they are. A
/// missing `root` is nothing to do. A directory in `sealed` is made private itself but not
/// entered: what is below it keeps its modes (the unpacked images, whose files' modes are the
/// image's, behind a directory no other user can enter).
pub fn tighten(root: &Path, sealed: &[&Path]) -> Tightened {
    let mut done = Tightened::default();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => {
                done.fail(&path, error);
                continue;
            }
        };
        if metadata.file_type().is_symlink() {
            continue;
        }
        let mode = metadata.permissions().mode();
        if mode & SHARED_BITS != 0 {
            let private = std::fs::Permissions::from_mode(mode & !SHARED_BITS);
            match std::fs::set_permissions(&path, private) {
                Ok(()) => done.changed += 1,
                Err(error) => done.fail(&path, error),
            }
        }
        if metadata.is_dir() && !sealed.contains(&path.as_path()) {
            match std::fs::read_dir(&path) {
                Ok(entries) => {
                    for entry in entries {
                        match entry {
                            Ok(entry) => pending.push(entry.path()),
                            Err(error) => done.fail(&path, error),
                        }
                    }
                }
                Err(error) => done.fail(&path, error),
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn group_and_other_bits_are_removed_below_the_root_and_nothing_else_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("data");
        let nested = root.join("registry").join("blobs");
        std::fs::create_dir_all(&nested).expect("mkdir");
        let database = root.join("manager.db");
        let blob = nested.join("blob");
        let private = root.join("signing-key");
        for file in [&database, &blob, &private] {
            std::fs::write(file, b"x").expect("write");
        }
        set_mode(&root, 0o755);
        set_mode(&root.join("registry"), 0o750);
        set_mode(&nested, 0o777);
        set_mode(&database, 0o644);
        set_mode(&blob, 0o664);
        set_mode(&private, 0o400);
        // A link out of the data directory is not followed: its target keeps its mode.
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"x").expect("write");
        set_mode(&outside, 0o644);
        std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");

        let sealed = root.join("images");
        let image_file = sealed.join("rootfs-file");
        std::fs::create_dir_all(&sealed).expect("mkdir");
        std::fs::write(&image_file, b"x").expect("write");
        set_mode(&sealed, 0o755);
        set_mode(&image_file, 0o755);

        let done = tighten(&root, &[&sealed]);

        assert_eq!(done.changed, 6, "{done:?}");
        assert_eq!(done.failed, 0, "{done:?}");
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("registry")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&database), 0o600);
        assert_eq!(mode(&blob), 0o600);
        assert_eq!(mode(&private), 0o400, "already private: untouched");
        assert_eq!(mode(&outside), 0o644, "the link's target is outside");
        assert_eq!(mode(&sealed), 0o700);
        assert_eq!(
            mode(&image_file),
            0o755,
            "below a sealed directory: untouched"
        );
        assert_eq!(
            tighten(&root, &[&sealed]).changed,
            0,
            "a second pass has nothing to do"
        );
        assert_eq!(tighten(&dir.path().join("missing"), &[]).changed, 0);
    }
}
