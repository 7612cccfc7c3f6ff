//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use plumbing::config::Overrides;
use plumbing::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "alien",
    version,
    about = "alien-manager: ship your product into your customers' clouds",
    long_about = "alien-manager stores releases, rolls them out to deployments, hosts the \
                  registry for their images, routes commands to them and forwards their \
                  telemetry.\n\nStart it with `alien serve`; the first start prints an admin \
                  API key as `export ALIEN_MANAGER_URL=...` and `export ALIEN_API_KEY=...`; \
                  the client commands (whoami, release, releases, deployments, onboard, \
                  commands, tokens) read them.",
    after_long_help = CLIENT_EXIT_STATUSES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The exit statuses of the client commands, for every `--help` of theirs.
pub const CLIENT_EXIT_STATUSES: &str = "Exit status: 0 done; 1 what was asked failed (a \
    deployment that failed, a command that failed or did not finish in time); 2 bad usage \
    (arguments, ALIEN_MANAGER_URL or ALIEN_API_KEY missing or unusable); 3 the manager \
    refused (its code and message are printed); 4 the manager cannot be reached.";

/// How the client commands reach a manager, and how they print.
#[derive(Debug, Clone, Args)]
pub struct ManagerArgs {
    /// The manager's URL, as `alien serve` prints it
    #[arg(long, env = "ALIEN_MANAGER_URL", value_name = "URL", global = true)]
    pub manager_url: Option<String>,
    /// An API key (ax_admin_… for everything; `alien serve` prints one on its first start)
    #[arg(
        long,
        env = "ALIEN_API_KEY",
        value_name = "KEY",
        hide_env_values = true,
        global = true
    )]
    pub api_key: Option<String>,
    /// Print the answer as JSON, for scripts
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = CLIENT_EXIT_STATUSES)]
pub struct WhoamiArgs {
    #[command(flatten)]
    pub manager: ManagerArgs,
}

#[derive(Debug, Args)]
#[command(after_help = CLIENT_EXIT_STATUSES)]
pub struct ReleasesArgs {
    #[command(flatten)]
    pub manager: ManagerArgs,
    #[command(subcommand)]
    pub command: ReleasesCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReleasesCommand {
    /// List the releases, newest first
    Ls,
    /// One release, with its stacks
    Get {
        /// The release's id (rel_…)
        id: String,
    },
}

#[derive(Debug, Args)]
#[command(after_help = CLIENT_EXIT_STATUSES)]
pub struct DeploymentsArgs {
    #[command(flatten)]
    pub manager: ManagerArgs,
    #[command(subcommand)]
    pub command: DeploymentsCommand,
}

#[derive(Debug, Subcommand)]
pub enum DeploymentsCommand {
    /// List the deployments
    Ls,
    /// One deployment: its status, releases and resources
    Get {
        /// The deployment: its id (dep_…) or group/name
        deployment: String,
    },
    /// Wait until a deployment reaches a status; fails at once when it fails, printing why
    Wait {
        /// The deployment: its id (dep_…) or group/name
        deployment: String,
        /// The status to wait for
        #[arg(long, default_value = "running", value_name = "STATUS")]
        status: String,
        /// Give up after this many seconds
        #[arg(long, default_value_t = 600, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Try a failed deployment's last step again
    Retry {
        /// The deployment: its id (dep_…) or group/name
        deployment: String,
    },
    /// Roll the deployment's release out again
    Redeploy {
        /// The deployment: its id (dep_…) or group/name
        deployment: String,
    },
    /// Delete a deployment: tear its workloads down, then forget it
    Delete {
        /// The deployment: its id (dep_…) or group/name
        deployment: String,
    },
}

#[derive(Debug, Args)]
#[command(after_help = CLIENT_EXIT_STATUSES)]
pub struct OnboardArgs {
    #[command(flatten)]
    pub manager: ManagerArgs,
    /// The customer's name, which names the deployment group
    pub name: String,
    /// How many deployments the group may have
    #[arg(long, value_name = "N")]
    pub max_deployments: Option<u32>,
}

#[derive(Debug, Args)]
#[command(after_help = CLIENT_EXIT_STATUSES)]
pub struct CommandsArgs {
    #[command(flatten)]
    pub manager: ManagerArgs,
    #[command(subcommand)]
    pub command: CommandsCommand,
}

#[derive(Debug, Subcommand)]
pub enum CommandsCommand {
    /// Invoke a command and print its answer (JSON, pretty-printed, when it is JSON)
    Invoke {
        /// The deployment: its id (dep_…) or group/name; it must be running
        #[arg(long, value_name = "DEPLOYMENT")]
        deployment: String,
        /// The command's name
        #[arg(long, value_name = "NAME")]
        command: String,
        /// The command's params: JSON, or @FILE to read them from a file
        #[arg(long, default_value = "{}", value_name = "JSON|@FILE")]
        params: String,
        /// The resource to send it to [default: the manager picks the deployment's first
        /// command-enabled workload]
        #[arg(long, value_name = "RESOURCE")]
        target: Option<String>,
        /// Seconds to wait for the answer
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        timeout: u64,
    },
}

#[derive(Debug, Args)]
#[command(after_help = CLIENT_EXIT_STATUSES)]
pub struct TokensArgs {
    #[command(flatten)]
    pub manager: ManagerArgs,
    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// List the tokens (never their secrets)
    Ls,
    /// Revoke a token: it stops working at once
    Revoke {
        /// The token's id, as `alien tokens ls` lists it
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the manager: starts otelfwd, registryd, commandd, the manager and deployd, restarts them if
    /// they die, and stops them in order on SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Ask a running manager whether it is healthy: exit 0 if it is, 1 if not (for Docker's
    /// HEALTHCHECK and load balancer scripts).
    Health(HealthArgs),
    /// Run this machine's deployment for a manager that cannot reach it: the pull-mode agent.
    /// It reaches out to the manager, takes its deployment's release and runs it here, and
    /// keeps the workloads running (and restarts those that die) while the manager is away.
    Agent(AgentArgs),
    /// Who the API key is: its role and scope
    Whoami(WhoamiArgs),
    /// Push the images a release's stacks name where a build left them (an OCI layout, a
    /// docker archive, another registry), then create the release
    Release(ReleaseArgs),
    /// The releases stored on the manager
    Releases(ReleasesArgs),
    /// The deployments, and what to do with one: wait for it, retry, redeploy, delete
    Deployments(DeploymentsArgs),
    /// Create a deployment group for a customer and print the command that installs their
    /// agent
    Onboard(OnboardArgs),
    /// Invoke a command on a deployment's workload and print its answer
    Commands(CommandsArgs),
    /// The manager's API tokens: list them, revoke one
    Tokens(TokensArgs),
    /// Print a shell completion script (bash, zsh or fish) on stdout
    Completions(CompletionsArgs),
    /// Run one daemon in the foreground (what `alien serve` starts; also for systemd units).
    #[command(hide = true)]
    Daemon(DaemonArgs),
    /// Run one worker's runtime in the foreground (what deployd starts for each worker
    /// version): the app, its gRPC runtime protocol and its transport port.
    #[command(hide = true)]
    WorkerRuntime(WorkerRuntimeArgs),
}

/// Where the configuration comes from; shared by every subcommand.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration file [default: ./alien-manager.toml if present]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Port of the public API [default: 8080; env: PORT]
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Address to listen on [default: 0.0.0.0; env: HOST]
    #[arg(long, value_name = "ADDR")]
    pub host: Option<String>,
    /// Do not roll releases out to push deployments [env: DISABLE_DEPLOYMENT_LOOP]
    #[arg(long)]
    pub disable_deployment_loop: bool,
    /// Do not health-check or heal running push deployments [env: DISABLE_HEARTBEAT_LOOP]
    #[arg(long)]
    pub disable_heartbeat_loop: bool,
}

impl ConfigArgs {
    pub fn overrides(&self, data_dir: Option<PathBuf>) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            port: self.port,
            host: self.host.clone(),
            data_dir,
            disable_deployment_loop: self.disable_deployment_loop,
            disable_heartbeat_loop: self.disable_heartbeat_loop,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print a commented configuration template with every key and exit
    #[arg(long)]
    pub init: bool,
    /// Directory for all state [default: ./alien-data; env: ALIEN_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Format of log lines on stderr
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
#[command(after_help = CLIENT_EXIT_STATUSES)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub manager: ManagerArgs,
    /// The release's stacks keyed by platform, as the `stack` of `POST /v1/releases`; an
    /// image may be `oci:DIR[:TAG]`, `docker-archive:FILE[:REF]` or `docker://REF`, pushed
    /// to the manager and named by digest; other references are left as they are
    #[arg(long, value_name = "FILE")]
    pub stack: PathBuf,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Which daemon to run
    #[arg(value_enum)]
    pub daemon: DaemonName,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Directory for all state [default: ./alien-data; env: ALIEN_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Format of log lines on stderr
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
    /// (manager) An inherited, listening TCP socket to serve on instead of binding one
    #[arg(long, value_name = "FD")]
    pub listen_fd: Option<i32>,
}

#[derive(Debug, Args)]
pub struct WorkerRuntimeArgs {
    /// The runtime's JSON config, written by the caller (mode 0600: it holds a secret)
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Format of log lines on stderr
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
}

#[derive(Debug, Args)]
#[command(
    after_help = "The first start sets the agent up with the manager: with a \
    deployment-group token it creates (or takes over, by name) a deployment in that group \
    and keeps its id and the deployment's own token in DATA_DIR (0700; files 0600); later \
    starts use only those. Exit status: 0 after SIGTERM or Ctrl-C, 2 for a configuration \
    that cannot be used (or a token the manager refuses), 1 otherwise."
)]
pub struct AgentArgs {
    /// The manager's URL, as this machine reaches it (http://host:port or https://host)
    #[arg(long, env = "SYNC_URL", value_name = "URL")]
    pub sync_url: String,
    /// Certificates (PEM) to trust for an https:// SYNC_URL besides the system's: a private
    /// CA's, or the manager's own when it is self-signed
    #[arg(long, env = "SYNC_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The token: a deployment-group token (ax_dg_…) on the first start, or a deployment's
    /// own; prefer --sync-token-file, which keeps it out of the process list
    #[arg(
        long,
        env = "SYNC_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        conflicts_with = "sync_token_file"
    )]
    pub sync_token: Option<String>,
    /// A file holding the token (mode 0600 or 0400)
    #[arg(long, env = "SYNC_TOKEN_FILE", value_name = "FILE")]
    pub sync_token_file: Option<PathBuf>,
    /// The deployment this agent runs, when it already exists (then the token is its own)
    #[arg(long, env = "DEPLOYMENT_ID", value_name = "ID")]
    pub deployment_id: Option<String>,
    /// The deployment's name in its group [default: the host name]
    #[arg(long, env = "OPERATOR_NAME", value_name = "NAME")]
    pub operator_name: Option<String>,
    /// The platform the agent deploys to; only `local` (this machine)
    #[arg(
        long,
        env = "PLATFORM",
        default_value = "local",
        value_name = "PLATFORM"
    )]
    pub platform: String,
    /// Where the agent keeps its identity, its deployment's state, images and workloads
    #[arg(
        long,
        env = "DATA_DIR",
        default_value = "/var/lib/alien-agent",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// Seconds a sync waits at the manager for news (a new release reaches the agent at
    /// once); the pause between syncs with a manager that does not hold them
    #[arg(
        long,
        env = "SYNC_INTERVAL",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub sync_interval: u64,
    /// Seconds between checks of the running workloads (one that died is started again)
    #[arg(
        long,
        env = "HEARTBEAT_INTERVAL",
        default_value_t = 60,
        value_name = "SECONDS"
    )]
    pub heartbeat_interval: u64,
    /// The release a deployment this agent creates starts with: `active` (the latest) or
    /// `none` (the next one released)
    #[arg(long = "initial-desired-release", env = "OPERATOR_INITIAL_DESIRED_RELEASE", value_enum, default_value_t = InitialReleaseArg::Active)]
    pub initial_release: InitialReleaseArg,
    /// Sync every SYNC_INTERVAL instead of asking the manager to hold a sync until there is
    /// news (for a proxy that cuts requests idle for 30 s)
    #[arg(long, env = "SYNC_NO_LONG_POLL")]
    pub no_long_poll: bool,
    /// Address of the OTLP/HTTP receiver for the workloads' own telemetry, which the agent
    /// queues on disk and forwards to the manager
    #[arg(
        long,
        env = "OTLP_HOST",
        default_value = "127.0.0.1",
        value_name = "ADDR"
    )]
    pub otlp_host: std::net::IpAddr,
    /// Port of that receiver (0: any free port)
    #[arg(long, env = "OTLP_PORT", default_value_t = 4318, value_name = "PORT")]
    pub otlp_port: u16,
    /// Format of log lines on stderr
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InitialReleaseArg {
    Active,
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DaemonName {
    Otelfwd,
    Registryd,
    Commandd,
    Manager,
    Deployd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}
