//! What the agent is told: the manager to reach and the token to reach it with, which
//! deployment it is, where it keeps its state, and how often it looks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::AgentError;

/// Which release a deployment the agent creates starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitialRelease {
    /// The group's latest release.
    #[default]
    Active,
    /// None until one is released after it.
    None,
}

impl InitialRelease {
    pub fn as_str(self) -> &'static str {
        match self {
            InitialRelease::Active => "active",
            InitialRelease::None => "none",
        }
    }
}

/// A token: never printed, whatever prints the struct that holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token as given inline: trimmed, and refused when empty.
    pub fn new(text: &str, origin: &str) -> Result<Token, AgentError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(AgentError::Config(format!("{origin} is empty")));
        }
        Ok(Token(token.to_owned()))
    }

    /// A token read from a file only its owner can read and write (0600, 0400, 0640 or 0440
    /// pass; a file others may read or anyone may change is refused, since the token gives
    /// the deployment's rights).
    pub fn from_file(path: &Path) -> Result<Token, AgentError> {
        let unusable =
            |why: String| AgentError::Config(format!("the token file {}: {why}", path.display()));
        let metadata = std::fs::metadata(path).map_err(|e| unusable(e.to_string()))?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o400 == 0 || mode & 0o137 != 0 {
            return Err(unusable(format!(
                "mode {mode:04o} lets others read or change it; use 0600 (chmod 600 {})",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| unusable(e.to_string()))?;
        Token::new(&text, &format!("the token file {}", path.display()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<secret>)")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The manager's base URL (`http(s)://host[:port]`, maybe with a path prefix).
    pub sync_url: String,
    /// A deployment-group token (the first start turns it into a deployment's own) or a
    /// deployment token.
    pub token: Token,
    /// The deployment this agent runs, when it is already known.
    pub deployment_id: Option<String>,
    /// The deployment's name in its group.
    pub name: String,
    pub data_dir: PathBuf,
    /// How long a sync waits for news at the manager (the long-poll); also the pause
    /// between syncs with a manager that answers at once.
    pub sync_interval: Duration,
    /// How often the running workloads are checked and restarted if they died.
    pub heartbeat_interval: Duration,
    pub initial_release: InitialRelease,
    /// Where the workloads' own OTLP/HTTP telemetry is received (port 0: any free one).
    pub otlp: std::net::SocketAddr,
    /// Whether a sync with nothing to report asks the manager to hold it until there is news.
    pub long_poll: bool,
    /// Certificates (PEM) trusted for an `https://` manager besides the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Config {
    /// The rules the flags cannot express.
    pub fn check(&self) -> Result<(), AgentError> {
        let url = &self.sync_url;
        let Some(rest) = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
        else {
            return Err(AgentError::Config(format!(
                "SYNC_URL {url} must start with http:// or https://"
            )));
        };
        if rest.trim_end_matches('/').is_empty() {
            return Err(AgentError::Config(format!("SYNC_URL {url} names no host")));
        }
        if self.name.trim().is_empty() {
            return Err(AgentError::Config("OPERATOR_NAME is empty".into()));
        }
        if self.sync_interval.is_zero() || self.heartbeat_interval.is_zero() {
            return Err(AgentError::Config(
                "SYNC_INTERVAL and the heartbeat interval must be at least 1 second".into(),
            ));
        }
        Ok(())
    }

    /// The manager's base URL without a trailing `/`, which every path is joined to.
    pub fn base_url(&self) -> &str {
        self.sync_url.trim_end_matches('/')
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A configuration with the defaults, for the manager at `url`.
    pub(crate) fn config(url: &str) -> Config {
        Config {
            sync_url: url.into(),
            token: Token::new("ax_dg_x", "SYNC_TOKEN").expect("token"),
            deployment_id: None,
            name: "host-1".into(),
            data_dir: "/d".into(),
            sync_interval: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(60),
            initial_release: InitialRelease::Active,
            otlp: "127.0.0.1:4318".parse().expect("address"),
            long_poll: true,
            ca_file: None,
        }
    }

    #[test]
    fn urls_are_checked_and_joined_one_way() {
        assert!(config("http://m:8080").check().is_ok());
        assert!(config("https://m").check().is_ok());
        assert!(config("ftp://m").check().is_err());
        assert!(config("http://").check().is_err());
        assert!(config("https:///").check().is_err());
        assert_eq!(config("http://m:8080/").base_url(), "http://m:8080");
        assert_eq!(config("https://m/a/").base_url(), "https://m/a");
    }

    #[test]
    fn token_files_must_be_private_and_not_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, " ax_deploy_1 \n").expect("write");
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, true),
            (0o644, false),
            (0o700, false),
            (0o660, false),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let read = Token::from_file(&path);
            assert_eq!(read.is_ok(), ok, "mode {mode:o}: {read:?}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(
            Token::from_file(&path).expect("token").expose(),
            "ax_deploy_1"
        );
        std::fs::write(&path, "\n").expect("write");
        assert!(Token::from_file(&path).is_err());
        assert!(!format!("{:?}", Token::new("ax_dg_hidden", "t")).contains("hidden"));
    }
}
