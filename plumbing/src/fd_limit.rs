//! The open-file limit. Each client connection, pooled daemon connection and SQLite file is a
//! descriptor; the soft limit a shell or container starts with (often 1024, sometimes 256)
//! is far below what the hard limit allows.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The soft limit before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub from: u64,
    pub to: u64,
}

/// Raises this process's soft limit on open files to its hard limit; children inherit it.
pub fn raise() -> std::io::Result<Raised> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(Raised {
        from: soft,
        to: soft.max(hard),
    })
}

/// The soft limit on open files in force now.
pub fn current() -> std::io::Result<u64> {
    Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0)
}
