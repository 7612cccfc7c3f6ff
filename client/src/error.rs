//! What goes wrong for a client, told so that the user knows what to do, and the exit status
//! each kind ends the command with (documented in `alien --help`).

/// Exit statuses of the client commands.
pub mod exit {
    /// What was asked failed: a deployment that failed, a command that failed or expired,
    /// a wait that ran out.
    pub const FAILED: u8 = 1;
    /// The command line or the environment cannot be used (as clap's own usage errors).
    pub const USAGE: u8 = 2;
    /// The manager answered, and refused (4xx, 5xx).
    pub const REFUSED: u8 = 3;
    /// The manager could not be reached.
    pub const UNREACHABLE: u8 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// What the user gave cannot be used: a missing setting, a bad deployment spec, an
    /// unreadable file.
    #[error("{0}")]
    Usage(String),
    #[error("cannot connect to the manager at {url}: {reason}; is the manager running at {url}?")]
    Unreachable { url: String, reason: String },
    #[error("{}", refusal(.method, .path, *.status, .code, .message))]
    Refused {
        method: String,
        path: String,
        status: u16,
        /// The error envelope's code, or empty for a plain-text answer.
        code: String,
        message: String,
    },
    /// The manager's answer is not what the API promises.
    #[error("the manager's answer to {path} is not understood: {reason}")]
    Answer { path: String, reason: String },
    #[error("{0}")]
    Failed(String),
    /// `source`, with what the client was doing when it happened, and what to do about it
    /// when that depends on what was being done.
    #[error("{doing}: {source}")]
    Context {
        doing: String,
        source: Box<ClientError>,
        hint: Option<String>,
    },
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => exit::USAGE,
            ClientError::Unreachable { .. } => exit::UNREACHABLE,
            ClientError::Refused { .. } | ClientError::Answer { .. } => exit::REFUSED,
            ClientError::Failed(_) => exit::FAILED,
            ClientError::Context { source, .. } => source.exit_code(),
        }
    }

    /// `self`, saying what the client was doing.
    pub fn context(self, doing: impl Into<String>) -> ClientError {
        ClientError::Context {
            doing: doing.into(),
            source: Box::new(self),
            hint: None,
        }
    }

    /// What to do about it, when the status or the context says.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ClientError::Context { hint, source, .. } => hint.as_deref().or_else(|| source.hint()),
            ClientError::Refused { status: 401, .. } => Some(
                "the manager does not know this API key: check ALIEN_API_KEY (alien serve prints \
                 it on its first start)",
            ),
            ClientError::Refused { status: 403, .. } => {
                Some("this API key may not do that: use an admin key (ax_admin_…)")
            }
            ClientError::Refused { status: 404, .. } => {
                Some("check the name or id (alien deployments ls, alien releases ls)")
            }
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            ClientError::Context { source, .. } => source.status(),
            _ => None,
        }
    }
}

fn refusal(method: &str, path: &str, status: u16, code: &str, message: &str) -> String {
    let mut text = format!("the manager refused {method} {path} ({status})");
    if !code.is_empty() {
        text.push_str(&format!(": {code}"));
    }
    if !message.is_empty() {
        text.push_str(&format!(": {message}"));
    }
    text
}
