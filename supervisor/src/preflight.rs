//! Everything checked before the first daemon starts, so that a bad start condition is one
//! clear line and leaves nothing half-created: the port is checked before the data directory
//! is touched, and the data directory before anything is written into it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use plumbing::lock::{LockError, LockFile};
use plumbing::uds::UdsError;
use plumbing::{Config, DataDir};
use socket2::{Domain, Socket, Type};
use tracing::warn;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "data directory {} is too deep: the Unix socket {} would be longer than {} bytes; choose a shorter --data-dir",
        data.display(), socket.display(), plumbing::layout::MAX_SOCKET_PATH
    )]
    DataDirTooDeep { data: PathBuf, socket: PathBuf },
    #[error("port {} is already in use on {}: stop what listens there or choose another with --port", addr.port(), addr.ip())]
    PortInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("data directory {} cannot be created: {source}", path.display())]
    CreateDataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {} is not writable: {source}", path.display())]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another alien serve is already running on data directory {}{}", path.display(), holder.map_or(String::new(), |pid| format!(" (pid {pid})")))]
    AlreadyRunning { path: PathBuf, holder: Option<u32> },
    #[error(transparent)]
    Lock(LockError),
    #[error(transparent)]
    RunDir(#[from] UdsError),
}

/// What the checks leave in place for the supervisor.
#[derive(Debug)]
pub struct Prepared {
    pub data: DataDir,
    /// Bound but not yet listening: connections are refused until the manager is about to
    /// start, so the public port opens last.
    pub listener: Socket,
    /// Where the supervisor itself reaches the manager's port.
    pub probe_addr: SocketAddr,
    _lock: LockFile,
}

pub fn prepare(config: &Config) -> Result<Prepared, PreflightError> {
    let data = DataDir::new(config.data_dir());
    if let Err(socket) = data.check_socket_paths() {
        return Err(PreflightError::DataDirTooDeep {
            data: data.root().to_path_buf(),
            socket,
        });
    }
    let (listener, port) = bind_public_port(config)?;
    check_data_dir(&data)?;
    let lock = LockFile::acquire(&data.serve_lock()).map_err(|e| match e {
        LockError::Held { holder, .. } => PreflightError::AlreadyRunning {
            path: data.root().to_path_buf(),
            holder,
        },
        other => PreflightError::Lock(other),
    })?;
    make_private(config, &data);
    plumbing::uds::ensure_run_dir(&data)?;
    Ok(Prepared {
        data,
        listener,
        probe_addr: SocketAddr::new(config.local_addr().ip(), port),
        _lock: lock,
    })
}

/// Binds the public port and returns the port bound (the configured one, or the one the
/// kernel chose for port 0).
fn bind_public_port(config: &Config) -> Result<(Socket, u16), PreflightError> {
    // `validate` has checked that the host is an IP address.
    let ip: IpAddr = config
        .server
        .host
        .parse()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let addr = SocketAddr::new(ip, config.server.port);
    let listen = |source| PreflightError::Listen { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(listen)?;
    // A manager restarted right after a stop must not wait out TIME_WAIT connections.
    socket.set_reuse_address(true).map_err(listen)?;
    socket.set_cloexec(true).map_err(listen)?;
    match socket.bind(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(PreflightError::PortInUse { addr });
        }
        Err(e) => return Err(listen(e)),
    }
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map_or(addr.port(), |a| a.port());
    Ok((socket, port))
}

fn check_data_dir(data: &DataDir) -> Result<(), PreflightError> {
    let path = data.root().to_path_buf();
    std::fs::create_dir_all(&path).map_err(|source| PreflightError::CreateDataDir {
        path: path.clone(),
        source,
    })?;
    let probe = path.join(format!(".write-test-{}", std::process::id()));
    let written = std::fs::File::create(&probe).and_then(|f| f.sync_all());
    let _ = std::fs::remove_file(&probe);
    written.map_err(|source| PreflightError::NotWritable { path, source })
}

/// Files left readable by others (made under a looser umask by an earlier version, or copied
/// in by hand) become private before any daemon starts, while nothing else writes here: the
/// data directory, and the database with its WAL files when `[database] path` puts it
/// elsewhere.
fn make_private(config: &Config, data: &DataDir) {
    let mut roots = vec![data.root().to_path_buf()];
    let database = config.database_path();
    if !database.starts_with(data.root()) {
        for suffix in ["-wal", "-shm"] {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            roots.push(name.into());
        }
        roots.push(database);
    }
    // deployd's trees: the images' own modes, and the workloads' roots and volumes, which
    // they may own as another user, stay as they are; their top directories are private.
    let images = data.images_dir();
    let deployments = data.state_dir(plumbing::Daemon::Deployd);
    let sealed = [images.as_path(), deployments.as_path()];
    let (mut changed, mut failed, mut first_failure) = (0, 0, None);
    for root in roots {
        let done = plumbing::modes::tighten(&root, &sealed);
        changed += done.changed;
        failed += done.failed;
        first_failure = first_failure.or(done.first_failure);
    }
    if changed > 0 {
        warn!(
            count = changed,
            data_dir = %data.root().display(),
            "made files and directories that other users could read private (files 0600, directories 0700)"
        );
    }
    if let Some((path, error)) = first_failure {
        warn!(
            count = failed,
            path = %path.display(),
            %error,
            "cannot make some files of the data directory private"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_for(data: &std::path::Path, port: u16) -> Config {
        let mut config = Config::default();
        config.server.host = "127.0.0.1".into();
        config.server.port = port;
        config.database.state_dir = Some(data.to_path_buf());
        config
    }

    #[test]
    fn a_port_in_use_is_refused_before_the_data_directory_is_created() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let error = prepare(&config_for(&data, port)).expect_err("port in use");
        assert!(matches!(error, PreflightError::PortInUse { .. }), "{error}");
        assert!(!data.exists(), "data directory created despite the failure");
    }

    #[test]
    fn a_second_supervisor_on_the_same_data_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = prepare(&config_for(dir.path(), 0)).expect("first");
        let error = prepare(&config_for(dir.path(), 0)).expect_err("second");
        match error {
            PreflightError::AlreadyRunning { holder, .. } => {
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("expected AlreadyRunning, got {other}"),
        }
        drop(first);
    }
}
