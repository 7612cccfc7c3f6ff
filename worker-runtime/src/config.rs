//! What the caller tells a runtime: `RuntimeConfig`, read from a JSON file the caller writes
//! (mode 0600; it holds the commands token, so it is never logged).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// The bounds of `timeoutSeconds`, as the public runtime accepts them.
pub const TIMEOUT_SECONDS: std::ops::RangeInclusive<u64> = 1..=3600;

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The worker's resource id: the only `target.resourceId` a command may name.
    pub worker_id: String,
    /// The only `deploymentId` a command may name.
    pub deployment_id: String,
    /// A command's budget at most (1..=3600).
    pub timeout_seconds: u64,
    /// The app's gRPC server, on 127.0.0.1.
    pub grpc_port: u16,
    /// The worker's HTTP address (the proxy and `/_alien/commands`), on 127.0.0.1.
    pub transport_port: u16,
    /// Ours: the app gets `PORT` set to it, and while it has registered no HTTP server the
    /// proxy forwards there, so that a plain image that listens on `PORT` and never speaks
    /// the runtime protocol is served too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_port: Option<u16>,
    /// Enables `POST /_alien/commands`: the bearer a push must carry, and the bearer of the
    /// response the runtime submits. Never passed to the app.
    #[serde(default)]
    pub commands_token: Option<String>,
    pub app: App,
    /// The app's stdout is appended to this file.
    pub stdout: PathBuf,
    /// The app's stderr is appended to this file.
    pub stderr: PathBuf,
    /// Where the runtime keeps [`crate::RuntimeState`] for a caller that restarts.
    pub state_file: PathBuf,
    /// What else invokes the app: the worker's queue, storage and schedule triggers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<TriggerSource>,
}

/// One trigger of the worker, with where its source lives on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum TriggerSource {
    /// Each message of the queue resource `queue`, whose store is in `dir`.
    Queue { queue: String, dir: PathBuf },
    /// Objects created or deleted under `dir`, the root of the storage resource `storage`;
    /// only the event types in `events` (all when empty).
    Storage {
        storage: String,
        dir: PathBuf,
        events: Vec<String>,
    },
    /// A 5-field cron expression (UTC); `state_dir` keeps the last fire time, shared by the
    /// worker's versions so that none fires a time another one did.
    Schedule { cron: String, state_dir: PathBuf },
}

impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("worker_id", &self.worker_id)
            .field("deployment_id", &self.deployment_id)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("grpc_port", &self.grpc_port)
            .field("transport_port", &self.transport_port)
            .field("plain_port", &self.plain_port)
            .field(
                "commands_token",
                &self.commands_token.as_ref().map(|_| "<secret>"),
            )
            .field("app", &self.app)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .field("state_file", &self.state_file)
            .field("triggers", &self.triggers)
            .finish()
    }
}

/// How the app is started. Either way the runtime adds the protocol's variables to the
/// environment given here and nothing of its own.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum App {
    /// A host process: `argv[0]` with the rest as arguments, in `cwd`, with exactly `env`.
    Process {
        argv: Vec<String>,
        cwd: PathBuf,
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
    /// An OCI bundle run in the foreground by `runtime` (runc or crun): the runtime writes its
    /// variables into `<bundle>/config.json` and runs `<runtime> run --bundle DIR ID`.
    #[serde(rename_all = "camelCase")]
    OciBundle {
        runtime: PathBuf,
        bundle: PathBuf,
        container_id: String,
    },
    /// Started by the caller once the runtime's ports are bound (the state file says so),
    /// with the protocol's variables ([`crate::app_env`]): deployd runs the app detached, so
    /// that the app and the runtime each outlive the other's caller. The runtime then never
    /// exits by itself, and leaves stopping the app to the caller.
    External,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            App::Process { argv, cwd, env } => f
                .debug_struct("Process")
                .field("argv", argv)
                .field("cwd", cwd)
                .field("env", &env.keys().collect::<Vec<_>>())
                .finish(),
            App::OciBundle {
                runtime,
                bundle,
                container_id,
            } => f
                .debug_struct("OciBundle")
                .field("runtime", runtime)
                .field("bundle", bundle)
                .field("container_id", container_id)
                .finish(),
            App::External => f.write_str("External"),
        }
    }
}

impl RuntimeConfig {
    /// Reads and checks the file the caller wrote.
    pub fn load(path: &std::path::Path) -> Result<RuntimeConfig, RuntimeError> {
        let bytes = std::fs::read(path).map_err(|source| RuntimeError::Config {
            reason: format!("cannot read {}: {source}", path.display()),
        })?;
        let config: RuntimeConfig =
            serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Config {
                // serde_json's message names the field and position, never a value.
                reason: format!("{}: {source}", path.display()),
            })?;
        config.check()?;
        Ok(config)
    }

    /// The rules serde cannot express.
    pub fn check(&self) -> Result<(), RuntimeError> {
        let bad = |reason: String| Err(RuntimeError::Config { reason });
        if !TIMEOUT_SECONDS.contains(&self.timeout_seconds) {
            return bad(format!(
                "timeoutSeconds must be within 1..=3600, got {}",
                self.timeout_seconds
            ));
        }
        if self.worker_id.trim().is_empty() || self.deployment_id.trim().is_empty() {
            return bad("workerId and deploymentId must not be empty".into());
        }
        if self
            .commands_token
            .as_ref()
            .is_some_and(|token| token.trim().is_empty())
        {
            return bad("commandsToken must not be empty when given".into());
        }
        if self.grpc_port == 0 || self.transport_port == 0 || self.grpc_port == self.transport_port
        {
            return bad("grpcPort and transportPort must be two distinct non-zero ports".into());
        }
        if let Some(plain) = self.plain_port
            && (plain == 0 || plain == self.grpc_port || plain == self.transport_port)
        {
            return bad("plainPort must be a non-zero port of its own".into());
        }
        match &self.app {
            App::Process { argv, .. } if argv.is_empty() => {
                return bad("app.process.argv is empty".into());
            }
            App::OciBundle { container_id, .. } if container_id.is_empty() => {
                return bad("app.ociBundle.containerId is empty".into());
            }
            _ => {}
        }
        for trigger in &self.triggers {
            if let TriggerSource::Schedule { cron, .. } = trigger {
                crate::triggers::schedule::parse(cron)
                    .map_err(|reason| RuntimeError::Config { reason })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(overrides: serde_json::Value) -> serde_json::Value {
        let mut base = json!({
            "workerId": "api", "deploymentId": "dep_1", "timeoutSeconds": 300,
            "grpcPort": 41001, "transportPort": 41002, "commandsToken": "secret-token",
            "app": {"ociBundle": {"runtime": "/usr/sbin/runc", "bundle": "/b", "containerId": "c"}},
            "stdout": "/o", "stderr": "/e", "stateFile": "/s"
        });
        for (key, value) in overrides.as_object().into_iter().flatten() {
            base[key] = value.clone();
        }
        base
    }

    fn parse(value: serde_json::Value) -> Result<RuntimeConfig, String> {
        let config: RuntimeConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn the_caller_s_json_is_read_and_checked() {
        let parsed = parse(config(json!({}))).expect("a valid config");
        assert!(matches!(parsed.app, App::OciBundle { .. }));
        let process = json!({"process": {"argv": ["/app"], "cwd": "/"}});
        assert!(parse(config(json!({"app": process}))).is_ok());
        let triggers = json!([
            {"type": "queue", "queue": "jobs", "dir": "/q"},
            {"type": "storage", "storage": "files", "dir": "/s", "events": ["created"]},
            {"type": "schedule", "cron": "*/5 * * * *", "stateDir": "/c"},
        ]);
        let parsed = parse(config(json!({"triggers": triggers}))).expect("triggers");
        assert_eq!(parsed.triggers.len(), 3);
        for bad in [
            json!({"timeoutSeconds": 0}),
            json!({"timeoutSeconds": 3601}),
            json!({"commandsToken": "  "}),
            json!({"transportPort": 41001}),
            json!({"workerId": ""}),
            json!({"app": {"process": {"argv": [], "cwd": "/"}}}),
            json!({"unknownField": true}),
            json!({"triggers": [{"type": "schedule", "cron": "* * * *", "stateDir": "/c"}]}),
            json!({"triggers": [{"type": "schedule", "cron": "0 0 * * * *", "stateDir": "/c"}]}),
            json!({"triggers": [{"type": "schedule", "cron": "61 * * * *", "stateDir": "/c"}]}),
            json!({"triggers": [{"type": "queue", "queue": "q", "dir": "/q", "extra": 1}]}),
        ] {
            assert!(parse(config(bad.clone())).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn the_token_never_appears_in_debug_output() {
        let parsed = parse(config(json!({}))).expect("a valid config");
        assert!(!format!("{parsed:?}").contains("secret-token"));
    }
}
