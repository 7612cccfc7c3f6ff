//! `alien serve`: check the start conditions, then supervise the daemons.

use std::ffi::OsString;
use std::process::ExitCode;

use plumbing::Config;
use plumbing::logging::{self, LogFormat};
use supervisor::Launch;
use tracing::warn;

use crate::args::ServeArgs;
use crate::{EXIT_CONFIG, fail};

pub fn run(args: ServeArgs) -> ExitCode {
    if args.init {
        print!("{}", plumbing::config::TEMPLATE);
        return ExitCode::SUCCESS;
    }
    let log_format = LogFormat::from(args.log_format);
    let live_view = crate::live_view::wanted(log_format);
    if live_view {
        logging::init_to(log_format, supervisor::console::LogWriter);
    } else {
        logging::init(log_format);
    }
    crate::raise_open_file_limit();
    let config = match plumbing::config::load(&args.config.overrides(args.data_dir.clone())) {
        Ok(config) => config,
        Err(error) => return fail(EXIT_CONFIG, error),
    };
    let prepared = match supervisor::prepare(&config) {
        Ok(prepared) => prepared,
        Err(error) => return fail(1, error),
    };
    if live_view {
        crate::live_view::start(config.database_path());
    }
    if let Err(error) = supervisor::become_subreaper() {
        warn!(%error, "cannot become a child subreaper; orphans of the daemons go to init");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(1, format!("cannot start the async runtime: {error}")),
    };
    let launch = launch(&config, log_format);
    match runtime.block_on(supervisor::supervise(&config, prepared, launch, log_format)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(1, error),
    }
}

/// The daemons run this very executable, through `/proc/self/exe` so that an upgrade that
/// replaces the file on disk cannot make a restarted daemon a different version.
fn launch(config: &Config, log_format: LogFormat) -> Launch {
    let mut args: Vec<OsString> = vec![
        "--data-dir".into(),
        config.data_dir().into(),
        "--port".into(),
        config.server.port.to_string().into(),
        "--host".into(),
        config.server.host.clone().into(),
        "--log-format".into(),
        log_format.as_str().into(),
    ];
    // The loops' switches may come from flags, which the daemons do not see otherwise.
    if config.server.disable_deployment_loop {
        args.push("--disable-deployment-loop".into());
    }
    if config.server.disable_heartbeat_loop {
        args.push("--disable-heartbeat-loop".into());
    }
    if let Some(file) = &config.source {
        args.extend(["--config".into(), file.into()]);
    }
    Launch {
        binary: "/proc/self/exe".into(),
        arg0: "alien".into(),
        args,
    }
}
