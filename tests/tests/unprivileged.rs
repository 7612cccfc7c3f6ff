//! `alien serve` needs no privileges: as `nobody` (when the tests run as root) with a data
//! directory that user owns, everything runs as that user.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use e2e::procfs;
use e2e::server::{UNPRIVILEGED_UID, running_as_root};
use e2e::{DAEMONS, Options, RunAs, Server};

#[test]
fn runs_as_an_unprivileged_user() {
    let uid = if running_as_root() {
        UNPRIVILEGED_UID
    } else {
        nix::unistd::getuid().as_raw()
    };
    let mut server = Server::start(Options {
        run_as: RunAs::Unprivileged,
        ..Options::default()
    });
    server.wait_healthy(Duration::from_secs(20));
    let token = server.admin_token();
    let whoami = server.get_with_auth("/v1/whoami", &format!("Bearer {token}"));
    assert_eq!(whoami.status, 200, "{}", whoami.body);

    let supervisor = procfs::proc_info(server.supervisor_pid()).expect("supervisor runs");
    assert_eq!(supervisor.uid, uid, "supervisor: {supervisor:?}");
    for name in DAEMONS {
        let pid = server
            .daemon_pid(name)
            .unwrap_or_else(|| panic!("no {name}"));
        let daemon = procfs::proc_info(pid).expect("daemon runs");
        assert_eq!(daemon.uid, uid, "{name}: {daemon:?}");
    }
    for file in ["manager.db", "registry", "commands", "telemetry", "run"] {
        let path = server.data_dir().join(file);
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            meta.uid(),
            uid,
            "{} is owned by {}",
            path.display(),
            meta.uid()
        );
    }

    server.stop_cleanly(Duration::from_secs(10));
}
