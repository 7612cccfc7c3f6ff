use std::path::PathBuf;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn the_template_parses_back_to_the_defaults() {
    let parsed = parse_str(TEMPLATE).expect("template parses");
    assert_eq!(parsed, Config::default());
}

#[test]
fn the_template_documents_every_key() {
    let keys = [
        "port",
        "host",
        "base-url",
        "releases-url",
        "deployment-interval-secs",
        "heartbeat-interval-secs",
        "disable-deployment-loop",
        "disable-heartbeat-loop",
        "max-connections",
        "header-read-timeout-secs",
        "body-read-timeout-secs",
        "keep-alive-timeout-secs",
        "state-dir",
        "path",
        "encryption-key",
        "[artifact-registry.aws]",
        "[artifact-registry.gcp]",
        "[artifact-registry.azure]",
        "kv",
        "storage",
        "[impersonation.aws]",
        "[impersonation.gcp]",
        "otlp-endpoint",
        "[telemetry.headers]",
        "max-body-bytes",
        "max-decompressed-bytes",
        "queue-max-bytes",
        "queue-segment-bytes",
        "batch-max-items",
        "batch-max-bytes",
        "batch-timeout-ms",
        "retry-initial-ms",
        "retry-max-ms",
        "request-timeout-secs",
        "restart-backoff-initial-ms",
        "restart-backoff-max-secs",
        "restart-stable-secs",
        "crash-loop-restarts",
        "crash-loop-window-secs",
        "start-timeout-secs",
        "stop-timeout-secs",
    ];
    for key in keys {
        let documented =
            TEMPLATE.contains(&format!("# {key}")) || TEMPLATE.contains(&format!("\n{key}\n"));
        assert!(documented, "template lacks {key}");
    }
}

#[test]
fn a_full_public_manager_file_parses() {
    let text = r#"
[server]
port = 9000
host = "127.0.0.1"
base-url = "https://m.example.com/"
[database]
state-dir = "/data"
encryption-key = "k"
[artifact-registry.aws]
service = "ecr"
repositoryPrefix = "p"
[commands]
kv = { service = "dynamodb", tableName = "t", region = "us-east-1" }
storage = { service = "s3", bucketName = "b" }
[impersonation.gcp]
service = "gcpserviceaccount"
email = "e@x"
uniqueId = "1"
[telemetry]
otlp-endpoint = "https://otlp.example.com"
[telemetry.headers]
x-api-key = "secret-value"
"#;
    let config = parse_str(text).expect("parses");
    assert_eq!(config.server.port, 9000);
    assert_eq!(config.base_url(), "https://m.example.com");
    assert!(matches!(
        config.commands.kv,
        Some(KvBinding::Dynamodb { ref table_name, .. }) if table_name == "t"
    ));
    assert!(
        !format!("{config:?}").contains("secret-value"),
        "headers leak through Debug"
    );
}

fn parse_error(text: &str) -> (usize, Option<String>, String) {
    match parse_str(text) {
        Err(ConfigError::Parse {
            line, key, message, ..
        }) => (line, key, message),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn errors_name_the_line_and_the_key() {
    let cases = [
        (
            "[server]\nport = \"x\"\n",
            2,
            Some("server.port"),
            "invalid type",
        ),
        (
            "[server]\n\nfoo = 1\n",
            3,
            Some("server.foo"),
            "unknown field `foo`",
        ),
        (
            "[bogus]\nx = 1\n",
            1,
            Some("bogus"),
            "unknown field `bogus`",
        ),
        (
            "[server]\nport = 70000\n",
            2,
            Some("server.port"),
            "expected u16",
        ),
        ("[server\n", 1, None, "unclosed table"),
        (
            "[commands]\nkv = { service = \"dynamodb\", tableName = \"t\", region = \"r\", extra = 1 }\n",
            2,
            Some("commands.kv"),
            "unknown field `extra`",
        ),
        (
            "[commands]\nstorage = { service = \"ftp\" }\n",
            2,
            Some("commands.storage.service"),
            "unknown variant `ftp`",
        ),
    ];
    for (text, line, key, message) in cases {
        let (got_line, got_key, got_message) = parse_error(text);
        assert_eq!(got_line, line, "{text:?}");
        assert_eq!(got_key.as_deref(), key, "{text:?}");
        assert!(got_message.contains(message), "{text:?}: {got_message}");
    }
}

#[test]
fn the_file_name_appears_in_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("alien-manager.toml");
    std::fs::write(&path, "[server]\nprot = 1\n").expect("write");
    let overrides = Overrides {
        disable_deployment_loop: false,
        disable_heartbeat_loop: false,
        config_file: Some(path.clone()),
        ..Overrides::default()
    };
    let message = load_with_env(&overrides, no_env)
        .expect_err("rejected")
        .to_string();
    assert!(
        message.starts_with(&format!("{}:2:1: key `server.prot`", path.display())),
        "{message}"
    );
}

#[test]
fn an_explicit_file_must_exist() {
    let overrides = Overrides {
        disable_deployment_loop: false,
        disable_heartbeat_loop: false,
        config_file: Some(PathBuf::from("/nonexistent/alien-manager.toml")),
        ..Overrides::default()
    };
    assert!(matches!(
        load_with_env(&overrides, no_env),
        Err(ConfigError::Missing { .. })
    ));
}

#[test]
fn environment_overrides_the_file_and_flags_override_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[server]\nport = 1000\nhost = \"127.0.0.1\"\n").expect("write");
    let env = |name: &str| match name {
        "PORT" => Some("2000".to_owned()),
        "BASE_URL" => Some("https://env.example.com/".to_owned()),
        "OTLP_ENDPOINT" => Some("http://127.0.0.1:4318".to_owned()),
        "ALIEN_DATA_DIR" => Some("/srv/alien".to_owned()),
        _ => None,
    };
    let mut overrides = Overrides {
        disable_deployment_loop: false,
        disable_heartbeat_loop: false,
        config_file: Some(path),
        ..Overrides::default()
    };
    let config = load_with_env(&overrides, env).expect("loads");
    assert_eq!(config.server.port, 2000);
    assert_eq!(config.server.host, "127.0.0.1");
    assert_eq!(config.base_url(), "https://env.example.com");
    assert_eq!(
        config.telemetry.otlp_endpoint.as_deref(),
        Some("http://127.0.0.1:4318")
    );
    assert_eq!(config.data_dir(), std::path::Path::new("/srv/alien"));
    assert_eq!(
        config.database_path(),
        PathBuf::from("/srv/alien/manager.db")
    );

    overrides.port = Some(3000);
    overrides.data_dir = Some(PathBuf::from("/other"));
    let config = load_with_env(&overrides, env).expect("loads");
    assert_eq!(config.server.port, 3000);
    assert_eq!(config.data_dir(), std::path::Path::new("/other"));
}

#[test]
fn defaults_resolve_relative_to_the_working_directory() {
    let config = load_with_env(&Overrides::default(), no_env).expect("loads");
    let cwd = std::env::current_dir().expect("cwd");
    assert_eq!(config.data_dir(), cwd.join("alien-data"));
    assert_eq!(config.base_url(), "http://localhost:8080");
}

#[test]
fn bad_values_are_refused_with_their_origin() {
    let cases: [(&str, &str, &str); 4] = [
        ("PORT", "eighty", "environment variable PORT"),
        ("BASE_URL", "manager.example.com", "server.base-url"),
        ("HOST", "example.com", "server.host"),
        ("OTLP_ENDPOINT", "ftp://x", "telemetry.otlp-endpoint"),
    ];
    for (name, value, origin) in cases {
        let env = |n: &str| (n == name).then(|| value.to_owned());
        let message = load_with_env(&Overrides::default(), env)
            .expect_err(name)
            .to_string();
        assert!(message.contains(origin), "{name}: {message}");
    }
}

#[test]
fn invalid_forwarding_headers_are_refused() {
    let text = "[telemetry.headers]\n\"bad header\" = \"v\"\n";
    let config = parse_str(text).expect("parses");
    let error = config.validate().expect_err("invalid name").to_string();
    assert!(error.contains("telemetry.headers.bad header"), "{error}");
}

#[test]
fn the_local_address_replaces_a_wildcard_with_loopback() {
    let mut config = Config::default();
    let cases = [
        ("0.0.0.0", "127.0.0.1:8080"),
        ("::", "[::1]:8080"),
        ("10.1.2.3", "10.1.2.3:8080"),
    ];
    for (host, expected) in cases {
        config.server.host = host.into();
        assert_eq!(config.local_addr().to_string(), expected);
    }
}

#[test]
fn telemetry_limits_that_cannot_work_are_refused() {
    let cases = [
        (
            "[telemetry]\nbatch-max-items = 0\n",
            "telemetry.batch-max-items",
        ),
        (
            "[telemetry]\nmax-body-bytes = 100\nmax-decompressed-bytes = 10\n",
            "telemetry.max-decompressed-bytes",
        ),
        (
            "[telemetry]\nqueue-max-bytes = 1000\n",
            "telemetry.queue-max-bytes",
        ),
    ];
    for (text, key) in cases {
        let config = parse_str(text).expect("parses");
        let error = config.validate().expect_err(text).to_string();
        assert!(error.contains(key), "{text}: {error}");
    }
}
