//! `alien-manager.toml`: the schema of the public manager (kebab-case sections and keys,
//! unknown keys rejected) plus our `[supervisor]` section, the environment overrides, and the
//! `--init` template.
//!
//! Resolution: an explicit `-c FILE` (which must exist), else `./alien-manager.toml` when
//! present, else the defaults; then the environment (`PORT`, `HOST`, `BASE_URL`,
//! `OTLP_ENDPOINT`, `ALIEN_DATA_DIR`); then the command-line flags.

mod error;
mod schema;
mod template;

use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use schema::*;
pub use template::TEMPLATE;

/// The config file looked for in the working directory when no `-c` is given.
pub const DEFAULT_FILE: &str = "alien-manager.toml";

/// The data directory when nothing names one, relative to the working directory as the
/// public manager's `alien-data`.
pub const DEFAULT_DATA_DIR: &str = "alien-data";

/// What the command line says, applied over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub port: Option<u16>,
    pub host: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// Flags can only turn a loop off: the file or the environment may already have.
    pub disable_deployment_loop: bool,
    pub disable_heartbeat_loop: bool,
}

/// Loads the configuration the way every daemon and `alien serve` do, from the process
/// environment.
pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
    load_with_env(overrides, |name| std::env::var(name).ok())
}

/// [`load`] with the environment given, so that resolution can be tested without touching
/// the process's own.
pub fn load_with_env(
    overrides: &Overrides,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let cwd = std::env::current_dir().map_err(|source| ConfigError::Read {
        path: PathBuf::from("."),
        source,
    })?;
    let file = match &overrides.config_file {
        Some(path) if !path.exists() => {
            return Err(ConfigError::Missing { path: path.clone() });
        }
        Some(path) => Some(cwd.join(path)),
        None => Some(cwd.join(DEFAULT_FILE)).filter(|p| p.exists()),
    };
    let mut config = match &file {
        Some(path) => parse_file(path)?,
        None => Config::default(),
    };
    config.source = file;

    if let Some(port) = env("PORT").filter(|v| !v.is_empty()) {
        config.server.port = port.trim().parse().map_err(|_| ConfigError::Invalid {
            origin: "environment variable PORT".into(),
            message: format!("{port:?} is not a port number (1-65535)"),
        })?;
    }
    if let Some(host) = env("HOST").filter(|v| !v.is_empty()) {
        config.server.host = host;
    }
    if let Some(url) = env("BASE_URL").filter(|v| !v.is_empty()) {
        config.server.base_url = Some(url);
    }
    if let Some(url) = env("OTLP_ENDPOINT").filter(|v| !v.is_empty()) {
        config.telemetry.otlp_endpoint = Some(url);
    }
    for (name, flag) in [
        (
            "DISABLE_DEPLOYMENT_LOOP",
            &mut config.server.disable_deployment_loop,
        ),
        (
            "DISABLE_HEARTBEAT_LOOP",
            &mut config.server.disable_heartbeat_loop,
        ),
    ] {
        if let Some(value) = env(name).filter(|v| !v.is_empty()) {
            *flag = parse_switch(&value).ok_or_else(|| ConfigError::Invalid {
                origin: format!("environment variable {name}"),
                message: format!("{value:?} is not true, false, 1 or 0"),
            })?;
        }
    }
    if let Some(dir) = env("ALIEN_DATA_DIR").filter(|v| !v.is_empty()) {
        config.database.state_dir = Some(PathBuf::from(dir));
    }

    if let Some(port) = overrides.port {
        config.server.port = port;
    }
    if let Some(host) = &overrides.host {
        config.server.host = host.clone();
    }
    if let Some(dir) = &overrides.data_dir {
        config.database.state_dir = Some(dir.clone());
    }
    config.server.disable_deployment_loop |= overrides.disable_deployment_loop;
    config.server.disable_heartbeat_loop |= overrides.disable_heartbeat_loop;

    let data_dir = config
        .database
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    config.database.state_dir = Some(cwd.join(data_dir));
    if let Some(db) = &config.database.path {
        config.database.path = Some(cwd.join(db));
    }

    config.validate().map_err(|e| match &config.source {
        Some(path) => e.in_file(path),
        None => e,
    })?;
    Ok(config)
}

/// A boolean environment variable, as the public manager reads its switches.
fn parse_switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Parses one config file; the error names the file, the line and the key.
pub fn parse_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(&text).map_err(|e| e.in_file(path))
}

/// Parses config text. Errors carry a line and key but no file name.
pub fn parse_str(text: &str) -> Result<Config, ConfigError> {
    toml::from_str::<Config>(text).map_err(|e| ConfigError::from_toml(text, &e))
}

#[cfg(test)]
mod tests;
