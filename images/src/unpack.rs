//! Applies layer tars, in order, to a root filesystem under construction, as an overlay
//! stack would show them: a later layer's entry replaces what a lower one left at its path,
//! and its whiteouts (`.wh.<name>`, `.wh..wh..opq`) hide what lower layers put there.
//!
//! Nothing is ever written outside the root. Entry paths must be relative and free of `..`;
//! a path whose directories go through a symlink is followed only while the symlink is
//! relative and stays inside the root; a hard link's target is held to the same rules and
//! must already exist in the root. Anything else is refused with [`Error::UnsafeEntry`].
//! The entry's own last component is never followed: whatever is there is replaced.
//!
//! Directories stay writable by their owner while layers are applied (a lower layer's
//! read-only directory may receive files from an upper one) and get their final modes in
//! [`Unpacker::finish`]. Device nodes and fifos are skipped: the store may run unprivileged.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::error::{Error, IoContext, Result};
use crate::manifest::Compression;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Symlinks followed while resolving one path, as Linux's own limit.
const MAX_SYMLINK_HOPS: usize = 40;
/// Directories implied by an entry but never listed in the layer get this mode.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// A root filesystem being built from layers.
#[derive(Debug)]
pub(crate) struct Unpacker {
    root: PathBuf,
    /// Final modes of the directories the layers listed, by path inside `root`.
    dir_modes: BTreeMap<PathBuf, u32>,
    /// Ownership is kept only when we may give files away (running as root).
    preserve_owners: bool,
}

/// Why an entry is refused, before the layer's name is attached.
type Refusal = String;

impl Unpacker {
    /// Starts on `root`, an empty directory.
    pub(crate) fn new(root: PathBuf) -> Unpacker {
        Unpacker {
            root,
            dir_modes: BTreeMap::new(),
            preserve_owners: nix::unistd::geteuid().is_root(),
        }
    }

    /// Applies the layer tar in `file` (named `layer` in errors): its whiteouts first, which
    /// hide lower layers' content only, then its entries.
    pub(crate) fn apply(
        &mut self,
        file: &Path,
        compression: Compression,
        layer: &str,
    ) -> Result<()> {
        self.each_entry(file, compression, layer, |this, entry, path| {
            this.whiteout(entry, path)
        })?;
        self.each_entry(file, compression, layer, |this, entry, path| {
            this.write(entry, path)
        })
    }

    /// Gives every listed directory its mode, deepest first, through real directories only.
    pub(crate) fn finish(self) -> Result<()> {
        let mut dirs: Vec<(PathBuf, u32)> = self.dir_modes.into_iter().collect();
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (relative, mode) in dirs {
            if !real_dirs_all_the_way(&self.root, &relative) {
                continue;
            }
            let path = self.root.join(&relative);
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .context(|| format!("setting the mode of {}", path.display()))?;
        }
        Ok(())
    }

    fn each_entry(
        &mut self,
        file: &Path,
        compression: Compression,
        layer: &str,
        mut apply: impl FnMut(
            &mut Self,
            &mut tar::Entry<'_, Box<dyn Read>>,
            &[OsString],
        ) -> std::result::Result<(), EntryError>,
    ) -> Result<()> {
        let opened = File::open(file).context(|| format!("opening layer {layer}"))?;
        let reader = BufReader::with_capacity(256 * 1024, opened);
        let decoded: Box<dyn Read> = match compression {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(reader)
                    .context(|| format!("starting zstd on layer {layer}"))?,
            ),
        };
        let mut archive = tar::Archive::new(decoded);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_preserve_ownerships(self.preserve_owners);
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(true);
        let invalid = |e: io::Error| Error::InvalidLayer {
            layer: layer.to_owned(),
            reason: e.to_string(),
        };
        for entry in archive.entries().map_err(invalid)? {
            let mut entry = entry.map_err(invalid)?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let refused = |reason: Refusal| Error::UnsafeEntry {
                layer: layer.to_owned(),
                entry: name.clone(),
                reason,
            };
            let components = clean(&raw).map_err(refused)?;
            if components.is_empty() {
                continue;
            }
            match apply(self, &mut entry, &components) {
                Ok(()) => {}
                Err(EntryError::Refused(reason)) => return Err(refused(reason)),
                Err(EntryError::Io(what, source)) => {
                    return Err(Error::Io {
                        context: format!("layer {layer}: entry {name:?}: {what}"),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Pass one: carries out a whiteout entry; leaves every other entry alone.
    fn whiteout(
        &mut self,
        _entry: &mut tar::Entry<'_, Box<dyn Read>>,
        path: &[OsString],
    ) -> Result<(), EntryError> {
        let (name, parents) = split_last(path);
        let Some(hidden) = name.to_str().and_then(|n| n.strip_prefix(WHITEOUT_PREFIX)) else {
            return Ok(());
        };
        if name == OPAQUE_MARKER {
            return self.opaque(parents);
        }
        if hidden.starts_with(WHITEOUT_PREFIX) {
            // Other `.wh..wh.` names are the aufs driver's own bookkeeping.
            return Ok(());
        }
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
            return Err(EntryError::Refused(format!("whiteout of {hidden:?}")));
        }
        let Some(dir) = self.resolve(parents, false)? else {
            return Ok(());
        };
        self.replace(&dir.join(hidden))
    }

    /// Empties `dir` of what lower layers put there. The directory itself is this layer's:
    /// a lower layer's symlink (or file) at its place is replaced by an empty directory,
    /// never followed.
    fn opaque(&mut self, dir: &[OsString]) -> Result<(), EntryError> {
        if dir.is_empty() {
            return Err(EntryError::Refused("an opaque root directory".to_owned()));
        }
        let (name, parents) = split_last(dir);
        let Some(parent) = self.resolve(parents, false)? else {
            return Ok(());
        };
        let relative = parent.join(name);
        let path = self.root.join(&relative);
        if is_dir(&path) {
            let listing = io_error("listing the opaque directory");
            for child in fs::read_dir(&path).map_err(&listing)? {
                self.replace(&relative.join(child.map_err(&listing)?.file_name()))?;
            }
        } else if fs::symlink_metadata(&path).is_ok() {
            self.replace(&relative)?;
            fs::create_dir(&path).map_err(io_error("making the opaque directory"))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(IMPLIED_DIR_MODE))
                .map_err(io_error("making the opaque directory"))?;
        }
        Ok(())
    }

    /// Removes whatever is at `relative` (a directory with its contents), and forgets the
    /// modes of the directories that went with it: a directory made there later is new.
    fn replace(&mut self, relative: &Path) -> Result<(), EntryError> {
        let path = self.root.join(relative);
        if is_dir(&path) {
            self.dir_modes.retain(|dir, _| !dir.starts_with(relative));
        }
        remove_any(&path).map_err(io_error("removing what was there"))
    }

    /// Pass two: writes an entry that is not a whiteout.
    fn write(
        &mut self,
        entry: &mut tar::Entry<'_, Box<dyn Read>>,
        path: &[OsString],
    ) -> Result<(), EntryError> {
        let (name, parents) = split_last(path);
        if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return Ok(());
        }
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::Char | EntryType::Block | EntryType::Fifo) {
            tracing::debug!(entry = ?name, "device node or fifo skipped");
            return Ok(());
        }
        let Some(parent) = self.resolve(parents, true)? else {
            return Err(EntryError::Refused(
                "its directory cannot be created".to_owned(),
            ));
        };
        let relative = parent.join(name);
        let target = self.root.join(&relative);
        let header = entry.header();
        let mode = header.mode().map_err(io_error("reading the mode"))? & 0o7777;
        let owner = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        match kind {
            EntryType::Directory => {
                if !is_dir(&target) {
                    self.replace(&relative)?;
                    fs::DirBuilder::new()
                        .mode(mode | 0o700)
                        .create(&target)
                        .map_err(io_error("creating the directory"))?;
                }
                fs::set_permissions(&target, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(io_error("setting the directory's mode"))?;
                self.chown(&target, owner)?;
                self.dir_modes.insert(relative, mode);
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| EntryError::Refused("a symlink without a target".to_owned()))?
                    .into_owned();
                self.replace(&relative)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target)
                    .map_err(io_error("creating the symlink"))?;
                self.chown(&target, owner)?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| EntryError::Refused("a hard link without a target".to_owned()))?
                    .into_owned();
                let source = self.hard_link_source(&link)?;
                if source != target {
                    self.replace(&relative)?;
                    fs::hard_link(&source, &target).map_err(io_error("creating the hard link"))?;
                }
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.replace(&relative)?;
                entry
                    .unpack(&target)
                    .map_err(io_error("writing the file"))?;
            }
            other => {
                tracing::debug!(entry = ?name, kind = ?other, "entry of an unknown type skipped");
            }
        }
        Ok(())
    }

    /// The file a hard link entry names, which must already be in the root.
    fn hard_link_source(&mut self, link: &[u8]) -> Result<PathBuf, EntryError> {
        let link_text = String::from_utf8_lossy(link);
        let components = clean(link).map_err(|reason| {
            EntryError::Refused(format!("hard link to {link_text:?}: {reason}"))
        })?;
        if components.is_empty() {
            return Err(EntryError::Refused("a hard link to the root".to_owned()));
        }
        let (name, parents) = split_last(&components);
        let missing = || {
            EntryError::Refused(format!(
                "hard link to {link_text:?}, which is not in the root"
            ))
        };
        let parent = self
            .resolve(parents, false)
            .map_err(|e| match e {
                EntryError::Refused(reason) => {
                    EntryError::Refused(format!("hard link to {link_text:?}: {reason}"))
                }
                other => other,
            })?
            .ok_or_else(missing)?;
        let source = self.root.join(parent).join(name);
        match fs::symlink_metadata(&source) {
            Ok(meta) if !meta.is_dir() => Ok(source),
            Ok(_) => Err(EntryError::Refused(format!(
                "hard link to the directory {link_text:?}"
            ))),
            Err(_) => Err(missing()),
        }
    }

    /// The real directory, relative to the root, that `components` name: symlinks among
    /// them are followed while they are relative and stay in the root. `None` when a
    /// directory is missing and `create` is false. Missing directories are made otherwise.
    fn resolve(
        &mut self,
        components: &[OsString],
        create: bool,
    ) -> Result<Option<PathBuf>, EntryError> {
        let mut queue: VecDeque<OsString> = components.iter().cloned().collect();
        let mut at: Vec<OsString> = Vec::new();
        let mut hops = 0;
        while let Some(next) = queue.pop_front() {
            if next == ".." {
                if at.pop().is_none() {
                    return Err(EntryError::Refused(
                        "a symlink on its path leads out of the root".to_owned(),
                    ));
                }
                continue;
            }
            let relative: PathBuf = at.iter().chain([&next]).collect();
            let path = self.root.join(&relative);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => at.push(next),
                Ok(meta) if meta.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(EntryError::Refused(
                            "too many symlinks on its path".to_owned(),
                        ));
                    }
                    let target =
                        fs::read_link(&path).map_err(io_error("reading a symlink on its path"))?;
                    if target.is_absolute() {
                        return Err(EntryError::Refused(format!(
                            "it is written through the symlink {} -> {}, which points outside the root",
                            relative.display(),
                            target.display()
                        )));
                    }
                    for part in target.components().rev() {
                        match part {
                            Component::Normal(p) => queue.push_front(p.to_owned()),
                            Component::ParentDir => queue.push_front("..".into()),
                            _ => {}
                        }
                    }
                }
                Ok(_) => {
                    return Err(EntryError::Refused(format!(
                        "{} on its path is not a directory",
                        relative.display()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    fs::create_dir(&path).map_err(io_error("creating a directory on its path"))?;
                    // Explicitly: the daemons' umask would leave it to its owner alone.
                    fs::set_permissions(&path, fs::Permissions::from_mode(IMPLIED_DIR_MODE))
                        .map_err(io_error("creating a directory on its path"))?;
                    at.push(next);
                }
                Err(e) => return Err(EntryError::Io("looking at its path".to_owned(), e)),
            }
        }
        Ok(Some(at.iter().collect()))
    }

    fn chown(&self, path: &Path, (uid, gid): (u64, u64)) -> Result<(), EntryError> {
        if !self.preserve_owners {
            return Ok(());
        }
        let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
            return Err(EntryError::Refused(format!(
                "owner {uid}:{gid} is out of range"
            )));
        };
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_error("setting the owner"))
    }
}

/// What went wrong with one entry; the layer and entry names are attached by the caller.
#[derive(Debug)]
enum EntryError {
    Refused(Refusal),
    Io(String, io::Error),
}

fn io_error(what: &'static str) -> impl Fn(io::Error) -> EntryError {
    move |e| EntryError::Io(what.to_owned(), e)
}

/// An entry's path as its normal components: `.` is dropped; an absolute path or a `..`
/// is refused.
fn clean(raw: &[u8]) -> Result<Vec<OsString>, Refusal> {
    let mut out = Vec::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(part) => out.push(part.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err("a `..` component".to_owned()),
            Component::RootDir | Component::Prefix(_) => return Err("an absolute path".to_owned()),
        }
    }
    Ok(out)
}

fn split_last(path: &[OsString]) -> (&OsStr, &[OsString]) {
    match path.split_last() {
        Some((last, parents)) => (last, parents),
        None => (OsStr::new(""), &[]),
    }
}

fn is_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Whether every component of `relative` below `root` is a directory, not a symlink.
fn real_dirs_all_the_way(root: &Path, relative: &Path) -> bool {
    let mut path = root.to_path_buf();
    relative.components().all(|component| {
        path.push(component);
        is_dir(&path)
    })
}

/// Removes whatever is at `path` (a directory with its contents), never following a
/// symlink; nothing there is fine.
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => remove_tree(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes a directory tree whose directories may have lost their owner's write bit (an
/// image's read-only directories), which an unprivileged process needs to empty them.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mode = fs::symlink_metadata(&dir)?.permissions().mode();
        if mode & 0o700 != 0o700 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o700))?;
        }
        for child in fs::read_dir(&dir)? {
            let child = child?;
            if child.file_type()?.is_dir() {
                stack.push(child.path());
            }
        }
    }
    fs::remove_dir_all(path)
}
