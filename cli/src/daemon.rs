//! `alien daemon <name>`: one daemon in the foreground, as the supervisor or systemd runs it.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::Arc;

use nix::sys::stat::{SFlag, fstat};
use plumbing::logging::{self, LogFormat};
use plumbing::{DaemonContext, DataDir};
use tracing::error;

use crate::args::{DaemonArgs, DaemonName};
use crate::{EXIT_CONFIG, fail};

/// How long a stopping daemon waits for work left on its blocking threads.
const BLOCKING_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

pub fn run(args: DaemonArgs) -> ExitCode {
    logging::init(LogFormat::from(args.log_format));
    crate::raise_open_file_limit();
    let name = format!("{:?}", args.daemon).to_lowercase();
    let config = match plumbing::config::load(&args.config.overrides(args.data_dir.clone())) {
        Ok(config) => config,
        Err(error) => {
            error!(%error, "invalid configuration");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let listener = match args.listen_fd.map(inherited_listener).transpose() {
        Ok(listener) => listener,
        Err(error) => return fail(EXIT_CONFIG, error),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name.clone())
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(1, format!("cannot start the async runtime: {error}")),
    };
    let result = runtime.block_on(async {
        let shutdown =
            plumbing::shutdown::on_signal().map_err(|e| format!("cannot handle signals: {e}"))?;
        let ctx = DaemonContext {
            data: DataDir::new(config.data_dir()),
            config: Arc::new(config),
            shutdown,
        };
        match args.daemon {
            DaemonName::Otelfwd => otelfwd::run(ctx).await.map_err(|e| e.to_string()),
            DaemonName::Registryd => registryd::run(ctx).await.map_err(|e| e.to_string()),
            DaemonName::Commandd => commandd::run(ctx).await.map_err(|e| e.to_string()),
            DaemonName::Manager => manager::run(ctx, listener).await.map_err(|e| e.to_string()),
            DaemonName::Deployd => deployd::run(ctx).await.map_err(|e| e.to_string()),
        }
    });
    // Every write a daemon acknowledged is done by now; what may still run on the blocking
    // pool is work nobody waits for (deployd's probe of the OCI runtime, say), which must not
    // hold up the stop.
    runtime.shutdown_timeout(BLOCKING_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!(%error, "{name} stopped on an error");
            ExitCode::FAILURE
        }
    }
}

/// Takes ownership of descriptor `fd`, which must be a socket: the supervisor passes the
/// public port this way.
fn inherited_listener(fd: i32) -> Result<std::net::TcpListener, String> {
    let stat = fstat(
        // SAFETY: only borrowed for the duration of the call.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
    )
    .map_err(|e| format!("--listen-fd {fd}: {e}"))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(format!("--listen-fd {fd} is not a socket"));
    }
    // SAFETY: the descriptor is open (fstat succeeded), is a socket, and nothing else in this
    // process owns it: it was inherited for exactly this purpose.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(std::net::TcpListener::from(owned))
}
