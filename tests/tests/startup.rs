//! A first start: the four daemons come up as separate processes, the admin key is printed
//! once on stdout, and the API accepts it.

use std::time::Duration;

use e2e::procfs;
use e2e::{DAEMONS, Options, Server};

const START: Duration = Duration::from_secs(20);

/// `export ALIEN_API_KEY=ax_admin_<32 hex>`.
fn is_admin_key(token: &str) -> bool {
    token
        .strip_prefix("ax_admin_")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn health_turns_healthy_and_whoami_accepts_the_printed_admin_token() {
    let mut server = Server::start(Options::default());
    server.wait_healthy(START);
    let health = server.get("/health");
    assert_eq!(health.json(), serde_json::json!({"status": "healthy"}));

    let token = server.admin_token();
    assert!(is_admin_key(&token), "not an admin key: {token:?}");
    let expected_stdout = format!(
        "Admin token generated (save this securely):\n\
         export ALIEN_MANAGER_URL=http://localhost:{}\n\
         export ALIEN_API_KEY={token}\n",
        server.port()
    );
    assert_eq!(server.stdout(), expected_stdout);

    let whoami = server.get_with_auth("/v1/whoami", &format!("Bearer {token}"));
    assert_eq!(whoami.status, 200, "{}", whoami.body);
    let body = whoami.json();
    let id = body["id"].as_str().unwrap_or_default();
    assert!(id.starts_with("tok_"), "id {id:?} in {body}");
    assert_eq!(
        body,
        serde_json::json!({
            "kind": "serviceAccount",
            "id": id,
            "workspaceId": "default",
            "workspaceName": "default",
            "role": "workspace.admin",
            "scope": {"type": "workspace"},
        })
    );
}

#[test]
fn whoami_refuses_requests_without_the_admin_token() {
    let mut server = Server::start(Options::default());
    server.wait_healthy(START);
    let token = server.admin_token();
    // A key of the right shape that was never issued: the token with its last digit changed.
    let mut forged = token.clone();
    let last = forged.pop().expect("non-empty token");
    forged.push(if last == '0' { '1' } else { '0' });
    let cases: [(&str, Option<String>); 5] = [
        ("no Authorization header", None),
        ("a key never issued", Some(format!("Bearer {forged}"))),
        ("garbage", Some("Bearer not-a-token".to_owned())),
        ("the right key without Bearer", Some(token.clone())),
        ("an empty bearer", Some("Bearer ".to_owned())),
    ];
    for (case, authorization) in cases {
        let reply = match &authorization {
            Some(value) => server.get_with_auth("/v1/whoami", value),
            None => server.get("/v1/whoami"),
        };
        assert_eq!(reply.status, 401, "{case}: {}", reply.body);
        assert_eq!(
            reply.json()["code"],
            "UNAUTHORIZED",
            "{case}: {}",
            reply.body
        );
        assert!(
            !reply.body.contains(&token),
            "{case}: the answer shows the admin key: {}",
            reply.body
        );
    }
}

#[test]
fn base_url_changes_the_printed_manager_url() {
    let mut server = Server::start(Options {
        env: vec![("BASE_URL".into(), "https://manager.example.test/".into())],
        ..Options::default()
    });
    server.wait_healthy(START);
    let token = server.admin_token();
    assert!(
        server
            .stdout()
            .lines()
            .any(|l| l == "export ALIEN_MANAGER_URL=https://manager.example.test"),
        "stdout:\n{}",
        server.stdout()
    );
    let whoami = server.get_with_auth("/v1/whoami", &format!("Bearer {token}"));
    assert_eq!(whoami.status, 200, "{}", whoami.body);
}

#[test]
fn the_admin_key_is_printed_once_and_survives_a_restart() {
    let state = e2e::server::temp_dir();
    let data_dir = state.path().join("data");
    let options = Options {
        data_dir: Some(data_dir.clone()),
        ..Options::default()
    };

    let mut first = Server::start(options.clone());
    first.wait_healthy(START);
    let token = first.admin_token();
    let bearer = format!("Bearer {token}");
    assert_eq!(first.get_with_auth("/v1/whoami", &bearer).status, 200);
    let first_id = first.get_with_auth("/v1/whoami", &bearer).json()["id"].clone();
    first.sigterm();
    let status = first.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "first server: {status:?}\n{}",
        first.stderr()
    );
    drop(first);

    let mut second = Server::start(options);
    second.wait_healthy(START);
    let whoami = second.get_with_auth("/v1/whoami", &bearer);
    assert_eq!(whoami.status, 200, "{}", whoami.body);
    assert_eq!(whoami.json()["id"], first_id, "another token answered");
    // By now the manager has started and decided; an admin key would have been printed.
    second.wait_log_line(START, |line| line.contains("alien-manager is ready"));
    assert_eq!(
        second.stdout(),
        "",
        "a restart printed something (a new key?)"
    );
}

#[test]
fn the_daemons_are_separate_processes_in_their_own_process_groups() {
    let mut server = Server::start(Options::default());
    server.wait_healthy(START);
    let supervisor = procfs::proc_info(server.supervisor_pid()).expect("supervisor runs");
    let mut pids = Vec::new();
    for name in DAEMONS {
        let pid = server.daemon_pid(name).unwrap_or_else(|| {
            panic!(
                "no {name} process among the supervisor's children: {:?}",
                procfs::children_of(server.supervisor_pid())
            )
        });
        let info = procfs::proc_info(pid).expect("daemon runs");
        assert_eq!(info.ppid, supervisor.pid, "{name}: {info:?}");
        assert_eq!(
            info.pgid, pid,
            "{name} leads its own process group: {info:?}"
        );
        assert_ne!(
            info.pgid, supervisor.pgid,
            "{name} shares the supervisor's group"
        );
        assert!(
            info.uses_data_dir(server.data_dir()),
            "{name} is not given the data directory: {:?}",
            info.argv
        );
        pids.push(pid);
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(
        pids.len(),
        DAEMONS.len(),
        "one process per daemon: {pids:?}"
    );
}
