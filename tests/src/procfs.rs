//! What `/proc` says about a process: the facts the tests check (parent, group, state,
//! command line, owner, pid in each namespace), read the way `ps` would.

use std::path::Path;

/// One process as `/proc/<pid>` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    /// `R`, `S`, `Z`, ... as in `ps`'s STAT column.
    pub state: char,
    pub argv: Vec<String>,
    /// The real user id.
    pub uid: u32,
    /// Its pid in each pid namespace it is in, outermost first (`NSpid:`).
    pub ns_pids: Vec<i32>,
}

impl ProcInfo {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }

    /// Whether the command line holds `words` next to each other, e.g. `["daemon", "manager"]`.
    pub fn has_args(&self, words: &[&str]) -> bool {
        !words.is_empty()
            && self
                .argv
                .windows(words.len())
                .any(|window| window.iter().zip(words).all(|(a, b)| a == b))
    }

    /// Whether the command line holds `--data-dir <dir>`.
    pub fn uses_data_dir(&self, dir: &Path) -> bool {
        dir.to_str()
            .is_some_and(|dir| self.has_args(&["--data-dir", dir]))
    }
}

/// `None` when the process does not exist (any more).
pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may itself contain spaces and parentheses.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::to_owned)
    };
    let uid = field("Uid:")?.split_whitespace().next()?.parse().ok()?;
    let ns_pids = field("NSpid:")
        .map(|pids| {
            pids.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv = cmdline
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    Some(ProcInfo {
        pid,
        ppid,
        pgid,
        state,
        argv,
        uid,
        ns_pids,
    })
}

/// Every process this test can see.
pub fn all_processes() -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_info)
        .collect()
}

/// Running processes: those that exist and are not zombies. A zombie has finished; it only
/// waits for its parent (perhaps init, outside this test's control) to collect its status.
pub fn live_processes() -> Vec<ProcInfo> {
    all_processes()
        .into_iter()
        .filter(|p| !p.is_zombie())
        .collect()
}

/// The running children of `parent`.
pub fn children_of(parent: i32) -> Vec<ProcInfo> {
    live_processes()
        .into_iter()
        .filter(|p| p.ppid == parent)
        .collect()
}

/// Whether `pid` exists and is not a zombie.
pub fn is_running(pid: i32) -> bool {
    proc_info(pid).is_some_and(|p| !p.is_zombie())
}

/// The peak resident memory of `pid` so far (`VmHWM:`), in KiB; `None` when it is gone.
pub fn peak_rss_kib(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
