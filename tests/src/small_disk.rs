//! A small file system of its own (tmpfs) for a server's data directory, so that a test can
//! fill it, see what the server does on a full disk, and free it again. Mounting needs root:
//! without it the test fails and says so, rather than passing without having run.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::wait_for;

/// A tmpfs mounted on a temporary directory, lazily unmounted when dropped (so that a
/// failing test, whose server may still hold files open, leaves no mount behind).
#[derive(Debug)]
pub struct SmallDisk {
    mount: TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` bytes.
    pub fn mount(bytes: u64) -> SmallDisk {
        let mount = crate::server::temp_dir();
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0755"),
                "tmpfs",
            ])
            .arg(mount.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            output.status.success(),
            "this test needs a small file system of its own and cannot mount one at {} \
             (it must run as root): mount said {}",
            mount.path().display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        SmallDisk { mount }
    }

    pub fn path(&self) -> &Path {
        self.mount.path()
    }

    /// Where a server keeps its data on this file system.
    pub fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    /// The bytes still free.
    pub fn free(&self) -> u64 {
        free(self.path())
    }

    /// Writes a file that leaves at most `leave` bytes free (less if the server writes
    /// meanwhile); deleting it with [`Filler::remove`] gives the space back.
    pub fn fill(&self, leave: u64) -> Filler {
        let path = self.path().join("filler");
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        let chunk = vec![0xf1u8; 1024 * 1024];
        let mut written = 0u64;
        // Bounded: a tmpfs of n MiB takes at most n chunks.
        for _ in 0..4096 {
            let free = self.free();
            if free <= leave {
                break;
            }
            let n = usize::try_from(free - leave).map_or(chunk.len(), |n| n.min(chunk.len()));
            if let Err(e) = file.write_all(&chunk[..n]) {
                assert_eq!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOSPC),
                    "filling {}: {e}",
                    path.display()
                );
                break;
            }
            written += n as u64;
        }
        Filler {
            path,
            file,
            written,
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn free(path: &Path) -> u64 {
    let stat = nix::sys::statvfs::statvfs(path)
        .unwrap_or_else(|e| panic!("statvfs {}: {e}", path.display()));
    stat.blocks_available() * stat.fragment_size()
}

/// The file that fills a [`SmallDisk`].
#[derive(Debug)]
pub struct Filler {
    path: PathBuf,
    file: File,
    written: u64,
}

impl Filler {
    /// Deletes the file and returns once its space is free again. That can take a moment:
    /// a process this one is starting holds a copy of the file's descriptor until it runs
    /// its program.
    pub fn remove(self) {
        let Filler {
            path,
            file,
            written,
        } = self;
        let disk = path.parent().unwrap_or(&path).to_path_buf();
        let before = free(&disk);
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
        drop(file);
        // Half of it is enough to tell: it comes back all at once, and the server under test
        // may take some of it at once.
        let freed = wait_for(Duration::from_secs(10), || {
            (free(&disk) >= before + written / 2).then_some(())
        });
        assert!(
            freed.is_some(),
            "{} bytes of {} were not freed within 10 s",
            written,
            path.display()
        );
    }
}
