//! Paths inside an image root, resolved on the host without leaving the root: an absolute
//! symlink such as `/bin/sh -> /bin/busybox` means the root's busybox, not the host's.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Linux's own limit on symlinks followed in one lookup.
const MAX_SYMLINKS: usize = 40;

enum Part {
    Parent,
    Name(OsString),
}

fn parts(path: &Path) -> Vec<Part> {
    path.components()
        .filter_map(|component| match component {
            Component::ParentDir => Some(Part::Parent),
            Component::Normal(name) => Some(Part::Name(name.to_owned())),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// The host path of `inside` (absolute or relative to the root), following symlinks as the
/// workload would see them: `..` and absolute targets stop at `root`. A missing component
/// is kept as written, so the caller's open or exec reports it.
pub(crate) fn resolve(root: &Path, inside: &Path) -> io::Result<PathBuf> {
    let mut pending = parts(inside);
    pending.reverse();
    let mut resolved = PathBuf::new();
    let mut followed = 0;
    while let Some(part) = pending.pop() {
        let name = match part {
            Part::Parent => {
                resolved.pop();
                continue;
            }
            Part::Name(name) => name,
        };
        let candidate = resolved.join(&name);
        let host = root.join(&candidate);
        match fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&host)?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut more = parts(&target);
                more.reverse();
                pending.extend(more);
            }
            Ok(_) => resolved = candidate,
            Err(error) if error.kind() == io::ErrorKind::NotFound => resolved = candidate,
            Err(error) => return Err(error),
        }
    }
    Ok(root.join(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_and_escaping_symlinks_stay_inside_the_root() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir_all(root.join("bin"))?;
        fs::write(root.join("bin/busybox"), b"")?;
        symlink("/bin/busybox", root.join("bin/sh"))?;
        symlink("../../../../etc", root.join("bin/up"))?;
        symlink("loop", root.join("loop"))?;

        assert_eq!(
            resolve(root, Path::new("/bin/sh"))?,
            root.join("bin/busybox")
        );
        assert_eq!(
            resolve(root, Path::new("/bin/up/passwd"))?,
            root.join("etc/passwd")
        );
        assert_eq!(resolve(root, Path::new("/../../x"))?, root.join("x"));
        assert_eq!(
            resolve(root, Path::new("loop")).map_err(|e| e.raw_os_error()),
            Err(Some(libc::ELOOP))
        );
        Ok(())
    }
}
