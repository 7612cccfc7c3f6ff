//! The `alien` client commands against a running manager, as a vendor drives it: every
//! `--json` answer parses and is what the API answers; a deployment named `group/name` is
//! waited for, and a command invoked on it answers; a failed deployment ends a wait with its
//! error; and the errors and exit statuses of no manager, no key, a bad key and an unknown
//! deployment say what to do.

use std::time::Duration;

use e2e::api::{Api, Request};
use e2e::deployments::{LOOPS, onboard, release, web_stack, worker_stack};
use e2e::server::free_port;
use e2e::{Finished, Invocation, Options};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(120);

/// `alien <args>` with the manager's URL and `key` in its environment.
fn alien(api: &Api, key: &str, args: &[&str]) -> Finished {
    Invocation::client(&api.base_url(), key, args.iter().copied()).run(RUN)
}

/// `alien <args> --json` as the admin: its stdout parsed, the run failing the test unless it
/// exits 0.
fn json_of(api: &Api, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let run = alien(api, api.admin_token(), &args);
    assert_eq!(run.code(), Some(0), "alien {args:?}: {}", run.stderr);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("alien {args:?} printed no JSON ({e}):\n{}", run.stdout))
}

fn get(api: &Api, path: &str) -> Value {
    api.expect(&Request::get(path).auth(api.admin()), 200)
}

#[test]
fn every_json_answer_is_the_api_s_and_onboard_gives_a_token_that_works() {
    let api = Api::start();
    let release_id = api.create_release(&["local"])["id"]
        .as_str()
        .expect("release id")
        .to_owned();
    let deployment = onboard(&api);

    assert_eq!(json_of(&api, &["whoami"]), get(&api, "/v1/whoami"));
    assert_eq!(
        json_of(&api, &["releases", "ls"]),
        get(&api, "/v1/releases")["items"]
    );
    assert_eq!(
        json_of(&api, &["releases", "get", &release_id]),
        get(&api, &format!("/v1/releases/{release_id}"))
    );
    assert_eq!(
        json_of(&api, &["deployments", "ls"]),
        get(&api, "/v1/deployments?include=deploymentGroup")["items"]
    );
    let record = get(&api, &format!("/v1/deployments/{}", deployment.id));
    assert_eq!(
        json_of(&api, &["deployments", "get", &deployment.id]),
        record
    );
    // By group/name, the group named by its id or its name.
    let group = get(
        &api,
        &format!("/v1/deployment-groups/{}", deployment.group_id),
    );
    for group_ref in [&deployment.group_id, group["name"].as_str().expect("name")] {
        let spec = format!("{group_ref}/{}", deployment.name);
        assert_eq!(
            json_of(&api, &["deployments", "get", &spec]),
            record,
            "{spec}"
        );
    }
    assert_eq!(
        json_of(&api, &["tokens", "ls"]),
        get(&api, "/v1/tokens")["items"]
    );

    let onboarded = json_of(&api, &["onboard", "Acme Corp", "--max-deployments", "3"]);
    assert_eq!(onboarded["name"], "acme-corp");
    assert_eq!(onboarded["maxDeployments"], 3);
    let token = onboarded["token"].as_str().expect("a token").to_owned();
    assert!(token.starts_with("ax_dg_"), "{onboarded}");
    let group_id = onboarded["deploymentGroupId"].as_str().expect("group id");
    let install = onboarded["installCommand"]
        .as_str()
        .expect("installCommand");
    assert!(
        install.starts_with("curl -fsSL ")
            && install.ends_with(&format!("/install | sh -s -- --token {token}")),
        "{install}"
    );
    let whoami = alien(&api, &token, &["whoami", "--json"]);
    assert_eq!(whoami.code(), Some(0), "{}", whoami.stderr);
    let subject: Value = serde_json::from_str(&whoami.stdout).expect("JSON");
    assert_eq!(subject["scope"]["deploymentGroupId"], group_id);

    // Revoked, the token no longer works: a 401 with the hint about the key.
    let listed = json_of(&api, &["tokens", "ls"]);
    let token_id = listed
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["deploymentGroupId"] == group_id && t["tokenType"] == "deployment-group")
        .and_then(|t| t["id"].as_str())
        .expect("the group's token")
        .to_owned();
    let revoked = json_of(&api, &["tokens", "revoke", &token_id]);
    assert_eq!(revoked, json!({"id": token_id, "revoked": true}));
    alien(&api, &token, &["whoami"]).assert_failed(
        "whoami with the revoked token",
        3,
        &["(401)", "hint:", "ALIEN_API_KEY"],
    );
}

#[test]
fn a_deployment_is_waited_for_by_group_and_name_and_a_command_invoked_on_it_answers() {
    let api = Api::start_with(Options {
        deployment_loops: true,
        config: Some(LOOPS.into()),
        ..Options::default()
    });
    let version = format!("cli-p{}", std::process::id());
    let image = e2e::workloads::push(&api, "alien-test-worker", &version, &[]);
    release(&api, worker_stack(&image));
    let deployment = onboard(&api);
    let spec = format!("{}/{}", deployment.group_id, deployment.name);
    let admin = api.admin_token();

    let waited = alien(
        &api,
        admin,
        &["deployments", "wait", &spec, "--timeout", "120"],
    );
    assert_eq!(waited.code(), Some(0), "{}", waited.stderr);
    assert!(waited.stdout.contains("is running"), "{}", waited.stdout);
    // Not on a terminal: the statuses it went through, one line each, and no colour.
    assert!(waited.stderr.contains("is "), "{}", waited.stderr);
    assert!(!waited.stdout.contains('\x1b'), "colour off a terminal");

    let params = json!({"hello": "cli"});
    let invoked = alien(
        &api,
        admin,
        &[
            "commands",
            "invoke",
            "--deployment",
            &spec,
            "--command",
            "echo",
            "--params",
            &params.to_string(),
            "--target",
            "api",
        ],
    );
    assert_eq!(invoked.code(), Some(0), "{}", invoked.stderr);
    let answer: Value = serde_json::from_str(&invoked.stdout).expect("the answer as JSON");
    assert_eq!(answer, json!({"echo": params, "version": version}));

    // The worker answers `fail` with an error: exit 1, its code and message printed.
    let failed = alien(
        &api,
        admin,
        &[
            "commands",
            "invoke",
            "--deployment",
            &spec,
            "--command",
            "fail",
        ],
    );
    failed.assert_failed("commands invoke fail", 1, &["command fail failed"]);
    // Params that are not JSON are refused before anything is sent.
    let bad = alien(
        &api,
        admin,
        &[
            "commands",
            "invoke",
            "--deployment",
            &spec,
            "--command",
            "echo",
            "--params",
            "{",
        ],
    );
    bad.assert_failed(
        "commands invoke with params that are not JSON",
        2,
        &["--params is not JSON"],
    );

    let redeployed = alien(&api, admin, &["deployments", "redeploy", &spec, "--json"]);
    assert_eq!(redeployed.code(), Some(0), "{}", redeployed.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&redeployed.stdout).expect("JSON"),
        json!({"success": true})
    );
    let deleted = alien(&api, admin, &["deployments", "delete", &spec]);
    assert_eq!(deleted.code(), Some(0), "{}", deleted.stderr);
    assert!(deleted.stdout.contains("Deleting"), "{}", deleted.stdout);
    let gone = alien(
        &api,
        admin,
        &[
            "deployments",
            "wait",
            &deployment.id,
            "--status",
            "deleted",
            "--timeout",
            "120",
        ],
    );
    assert_eq!(gone.code(), Some(0), "{}", gone.stderr);
}

#[test]
fn a_wait_for_a_deployment_whose_release_fails_exits_1_with_its_error() {
    let api = Api::start_with(Options {
        deployment_loops: true,
        config: Some(LOOPS.into()),
        ..Options::default()
    });
    let version = format!("cli-broken-p{}", std::process::id());
    let image = e2e::workloads::push(&api, "alien-test-web", &version, &["--exit-at-start"]);
    release(&api, web_stack(&image));
    let deployment = onboard(&api);
    let run = alien(
        &api,
        api.admin_token(),
        &["deployments", "wait", &deployment.id, "--timeout", "120"],
    );
    run.assert_failed(
        "deployments wait on a failing release",
        1,
        &["-failed", "exiting at start"],
    );
}

#[test]
fn no_manager_no_key_a_bad_key_and_an_unknown_deployment_each_say_what_to_do() {
    let api = Api::start();
    let no_url = Invocation::new(["deployments", "ls"]).run(RUN);
    no_url.assert_failed("no ALIEN_MANAGER_URL", 2, &["ALIEN_MANAGER_URL is not set"]);
    let mut no_key = Invocation::new(["deployments", "ls"]);
    no_key.env = vec![("ALIEN_MANAGER_URL".into(), api.base_url())];
    no_key.run(RUN).assert_failed(
        "no ALIEN_API_KEY",
        2,
        &["ALIEN_API_KEY is required when ALIEN_MANAGER_URL is set."],
    );

    let closed = format!("http://127.0.0.1:{}", free_port());
    let nobody = Invocation::new([
        "whoami",
        "--manager-url",
        &closed,
        "--api-key",
        "ax_admin_x",
    ]);
    nobody.run(RUN).assert_failed(
        "no manager at the URL",
        4,
        &[
            &format!("cannot connect to the manager at {closed}"),
            "is the manager running",
        ],
    );

    let bad_key = alien(&api, "ax_admin_not-a-key", &["deployments", "ls"]);
    bad_key.assert_failed("a key the manager does not know", 3, &["(401)", "hint:"]);
    assert!(!bad_key.stderr.contains("not-a-key"), "the key was printed");

    for spec in ["dep_unknown", "nogroup/nobody"] {
        let unknown = alien(&api, api.admin_token(), &["deployments", "get", spec]);
        unknown.assert_failed(spec, 3, &["(404)", "DEPLOYMENT_NOT_FOUND", "hint:"]);
    }
    let bare = alien(&api, api.admin_token(), &["deployments", "get", "eu-1"]);
    bare.assert_failed("a bare name", 2, &["dep_", "group/name"]);
}

#[test]
fn completions_are_scripts_each_shell_reads() {
    for shell in ["bash", "zsh", "fish"] {
        let run = Invocation::new(["completions", shell]).run(RUN);
        assert_eq!(run.code(), Some(0), "{shell}: {}", run.stderr);
        assert!(
            run.stdout.contains("deployments"),
            "{shell}:\n{}",
            run.stdout
        );
    }
    // bash parses its script.
    let script = Invocation::new(["completions", "bash"]).run(RUN).stdout;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("alien.bash");
    std::fs::write(&path, script).expect("write");
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash -n");
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}
