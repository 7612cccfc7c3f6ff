//! The state directory and output files, the same for both backends.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::record::RECORD_FILE;
use crate::spec::WorkloadSpec;

/// How often a stop looks whether the workload is gone.
pub(crate) const POLL: Duration = Duration::from_millis(50);
/// How long a SIGKILLed workload may take to disappear before stop reports it.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(10);

/// Checks the spec and returns the absolute state directory, created and holding no
/// workload yet.
pub(crate) fn prepare_state_dir(spec: &WorkloadSpec) -> Result<PathBuf> {
    if spec.args.is_empty() {
        return Err(Error::InvalidSpec("the command is empty".into()));
    }
    let valid_id = !spec.id.is_empty()
        && spec
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid_id {
        return Err(Error::InvalidSpec(format!(
            "id {:?} must be letters, digits, '_', '-' or '.'",
            spec.id
        )));
    }
    let state_dir = std::path::absolute(&spec.state_dir).at(&spec.state_dir)?;
    fs::create_dir_all(&state_dir).at(&state_dir)?;
    if state_dir.join(RECORD_FILE).exists() {
        return Err(Error::StateDirInUse(state_dir));
    }
    Ok(state_dir)
}

/// The workload's stdout and stderr, opened for appending.
pub(crate) fn open_output(spec: &WorkloadSpec) -> Result<(File, File)> {
    Ok((append(&spec.stdout)?, append(&spec.stderr)?))
}

fn append(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).at(parent)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .at(path)
}

/// Removes the record and `extra` entries of the state directory, then the directory if
/// nothing else (the caller's files) is left in it.
pub(crate) fn remove_state(state_dir: &Path, extra: &[&str]) -> Result<()> {
    for name in extra.iter().chain([&RECORD_FILE]) {
        let path = state_dir.join(name);
        let removed = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(error) => Err(error),
        };
        match removed {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error).at(&path),
            _ => {}
        }
    }
    match fs::remove_dir(state_dir) {
        Err(error)
            if !matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
            ) =>
        {
            Err(error).at(state_dir)
        }
        _ => Ok(()),
    }
}
