//! `alien agent`, the pull-mode agent, end to end: a real agent process reaches the manager
//! over TCP (plain, HTTPS through a TLS front with a private CA, or from a network namespace
//! of its own over a veth link), sets itself up with a deployment-group token, runs the
//! release on this machine, takes the next release at once through the long-poll without a
//! failed request, survives its own kill -9 (mid-update too) and restarts without setting
//! itself up twice, tears everything down on a delete, brings commands to every kind of
//! workload, and loses no telemetry while the manager is away.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use e2e::agent::{Agent, AgentOptions};
use e2e::api::{Api, Request, unique};
use e2e::deployments::{endpoint, get, release, web_stack, worker_stack};
use e2e::hammer::{Hammer, port_of};
use e2e::netns::Netns;
use e2e::telemetry::{Backend, log};
use e2e::tls::TlsFront;
use e2e::wait_for;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use prost::Message;
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(90);
/// Longer than any wait in these tests (syncs and health checks alike): only the long-poll
/// brings a release sooner.
const SYNC_INTERVAL_SECS: u64 = 25;

/// The group's deployments, as the admin lists them.
fn deployments_of(api: &Api, group_id: &str) -> Vec<Value> {
    let listed = api.expect(
        &Request::get(format!("/v1/deployments?deploymentGroupId={group_id}")).auth(api.admin()),
        200,
    );
    listed["items"].as_array().cloned().unwrap_or_default()
}

/// The id of the deployment the agent sets up in group `group_id`, once there is one.
fn deployment_of(api: &Api, agent: &Agent, group_id: &str) -> String {
    wait_for(SETTLE, || {
        deployments_of(api, group_id)
            .first()
            .and_then(|d| d["id"].as_str().map(str::to_owned))
    })
    .unwrap_or_else(|| panic!("no deployment appeared\nagent log:\n{}", agent.log()))
}

/// Invokes `echo` with `params` on `target` of deployment `id` and checks the answer of
/// the test workload of `version`.
fn assert_echoes(api: &Api, agent: &Agent, id: &str, target: &str, params: &Value, version: &str) {
    let (_, answer) = e2e::commands::echo(api, id, target, params, SETTLE);
    assert_eq!(
        answer,
        json!({"echo": params, "version": version}),
        "agent log:\n{}",
        agent.log()
    );
}

/// Starts an agent for a new group of `api`, and waits until the deployment it creates runs
/// `release_id`: the agent, the deployment's id and its record.
fn start_agent(api: &Api, release_id: &str) -> (Agent, String, Value) {
    let group = api.create_group();
    let agent = Agent::start(AgentOptions {
        sync_url: api.base_url(),
        token: group.token.clone(),
        name: unique("host"),
        data_dir: api.server().work_dir().join(unique("agent")),
        sync_interval_secs: SYNC_INTERVAL_SECS,
        heartbeat_interval_secs: SYNC_INTERVAL_SECS,
        ca_file: None,
        exec_through: Vec::new(),
    });
    let id = deployment_of(api, &agent, &group.id);
    let running = wait_running(api, &agent, &id, release_id);
    (agent, id, running)
}

/// Waits until the deployment's record says it runs `release_id`.
fn wait_running(api: &Api, agent: &Agent, id: &str, release_id: &str) -> Value {
    let mut last = Value::Null;
    wait_for(SETTLE, || {
        last = api.deployment(id);
        (last["status"] == "running" && last["currentReleaseId"] == release_id)
            .then(|| last.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "{id} did not run {release_id}: {last:#}\nagent log:\n{}",
            agent.log()
        )
    })
}

/// Waits until `url` answers `body`; returns when it did.
fn wait_answer(agent: &Agent, url: &str, body: &str, within: Duration) -> Instant {
    wait_for(within, || {
        (get(url) == Some((200, body.to_owned()))).then(Instant::now)
    })
    .unwrap_or_else(|| {
        panic!(
            "{url} did not answer {body} (last: {:?})\nagent log:\n{}",
            get(url),
            agent.log()
        )
    })
}

#[test]
fn an_agent_runs_its_release_takes_the_next_at_once_and_keeps_its_identity_and_workloads() {
    let api = Api::start();
    let tag = format!("agent-p{}", std::process::id());
    let (v1, v2, v3) = (
        format!("{tag}-v1"),
        format!("{tag}-v2"),
        format!("{tag}-v3"),
    );
    let first = release(
        &api,
        web_stack(&e2e::workloads::push(&api, "alien-test-web", &v1, &[])),
    );
    let group = api.create_group();
    let work = api.server().work_dir().join("agent");
    let mut agent = Agent::start(AgentOptions {
        sync_url: api.base_url(),
        token: group.token.clone(),
        name: unique("host"),
        data_dir: work.clone(),
        sync_interval_secs: SYNC_INTERVAL_SECS,
        heartbeat_interval_secs: SYNC_INTERVAL_SECS,
        ca_file: None,
        exec_through: Vec::new(),
    });

    // The first start creates the deployment and keeps its own token, privately.
    let id = deployment_of(&api, &agent, &group.id);
    let running = wait_running(&api, &agent, &id, &first);
    let url = endpoint(&running, "web");
    wait_answer(&agent, &url, &v1, Duration::from_secs(5));
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&work), 0o700);
    let identity: Value = serde_json::from_slice(
        &std::fs::read(work.join("identity.json")).expect("the agent's identity"),
    )
    .expect("identity JSON");
    assert_eq!(mode(&work.join("identity.json")), 0o600);
    assert_eq!(identity["deploymentId"], id.as_str());
    let own_token = identity["token"].as_str().expect("a token").to_owned();
    assert!(own_token.starts_with("ax_deploy_"), "{own_token}");

    // The next release reaches the waiting agent at once, not after its sync interval, and
    // not one request to the address fails while it switches.
    let image = e2e::workloads::push(&api, "alien-test-web", &v2, &[]);
    let hammer = Hammer::start(port_of(&url), &[v1.clone(), v2.clone()]);
    let released = Instant::now();
    let second = release(&api, web_stack(&image));
    let answered = wait_answer(&agent, &url, &v2, Duration::from_secs(SYNC_INTERVAL_SECS));
    let took = answered - released;
    eprintln!("a new release answered through the agent after {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "the release took {took:?}: the agent waited for its sync interval"
    );
    wait_running(&api, &agent, &id, &second);
    for client in hammer.finish() {
        eprintln!(
            "{} requests on {} connections during the switch, none failed",
            client.requests, client.connections
        );
        assert_eq!(client.versions, [v1.clone(), v2.clone()]);
    }

    // kill -9: the workload keeps running; a new agent serves it again at once and does not
    // set itself up a second time.
    agent.kill9();
    agent.start_again();
    let back = Instant::now();
    wait_answer(&agent, &url, &v2, Duration::from_secs(10));
    eprintln!(
        "after a kill -9 the address answered again in {:?}",
        back.elapsed()
    );

    // kill -9 in the middle of the next update: the new agent finishes it.
    let updates = |agent: &Agent| agent.log().matches("to=Updating").count();
    let before = updates(&agent);
    let image = e2e::workloads::push(&api, "alien-test-web", &v3, &[]);
    let third = release(&api, web_stack(&image));
    wait_for(SETTLE, || (updates(&agent) > before).then_some(()))
        .unwrap_or_else(|| panic!("the update to {v3} did not start:\n{}", agent.log()));
    agent.kill9();
    agent.start_again();
    wait_answer(&agent, &url, &v3, SETTLE);
    wait_running(&api, &agent, &id, &third);

    // An orderly stop stops the workloads; the next start brings them back.
    let stopped = agent.stop();
    assert!(
        stopped.is_some_and(|s| s.success()),
        "SIGTERM: {stopped:?}\n{}",
        agent.log()
    );
    agent.start_again();
    wait_answer(&agent, &url, &v3, Duration::from_secs(30));
    assert_eq!(
        deployments_of(&api, &group.id).len(),
        1,
        "a restart set the agent up again"
    );
    let kept: Value =
        serde_json::from_slice(&std::fs::read(work.join("identity.json")).expect("identity"))
            .expect("identity JSON");
    assert_eq!(kept["token"], own_token.as_str());

    // A delete asked on the manager tears the workloads down on this machine.
    e2e::deployments::request_delete(&api, &id);
    let gone = wait_for(SETTLE, || {
        let reply = api.send(&Request::get(format!("/v1/deployments/{id}")).auth(api.admin()));
        let finished = reply.status == 404 || reply.json()["status"] == "deleted";
        (finished && get(&url).is_none_or(|(status, _)| status != 200)).then_some(())
    });
    assert!(
        gone.is_some(),
        "the delete did not finish: {:#}\nagent log:\n{}",
        api.deployment(&id),
        agent.log()
    );
    assert!(
        !work.join("deployments").join(&id).exists(),
        "the deployment's directory is left"
    );
}

#[test]
fn a_command_invoked_on_the_manager_reaches_each_kind_of_workload_the_agent_runs_and_comes_back() {
    let api = Api::start();
    let version = format!("agent-cmd-p{}", std::process::id());
    let image = |program| e2e::workloads::push(&api, program, &version, &[]);
    // The worker's commands come through the agent's lease; the container and the daemon
    // lease their own with the variables the agent gives them.
    let stack = json!({
        "id": "commands-app",
        "permissions": {"profiles": {"execution": {}}},
        "resources": {
            "api": {
                "config": {
                    "type": "worker", "id": "api", "permissions": "execution",
                    "code": {"type": "image", "image": image("alien-test-worker")},
                    "links": [], "triggers": [], "commandsEnabled": true
                },
                "lifecycle": "live",
                "dependencies": []
            },
            "web": {
                "config": {
                    "type": "container", "id": "web", "permissions": "execution",
                    "code": {"type": "image", "image": image("alien-test-web")},
                    "links": [], "commandsEnabled": true,
                    "ports": [{"port": 8080}],
                    "cpu": {"min": "0.1", "desired": "0.5"},
                    "memory": {"min": "64Mi", "desired": "128Mi"}
                },
                "lifecycle": "live",
                "dependencies": []
            },
            "ticker": {
                "config": {
                    "type": "daemon", "id": "ticker", "permissions": "execution",
                    "code": {"type": "image", "image": image("alien-test-daemon")},
                    "links": [], "commandsEnabled": true
                },
                "lifecycle": "live",
                "dependencies": []
            }
        }
    });
    let release_id = release(&api, stack);
    let (agent, id, _) = start_agent(&api, &release_id);

    for target in ["api", "web", "ticker"] {
        for n in 0..2 {
            let invoked = Instant::now();
            let params = json!({"target": target, "n": n});
            assert_echoes(&api, &agent, &id, target, &params, &version);
            eprintln!(
                "command {n} to {target} answered in {:?}",
                invoked.elapsed()
            );
        }
    }
}

/// How long the manager is away in the outage test.
const OUTAGE: Duration = Duration::from_secs(60);

/// The address the agent receives the workloads' telemetry on, from its log.
fn receiver_address(agent: &Agent) -> String {
    wait_for(Duration::from_secs(30), || {
        agent.log().lines().find_map(|line| {
            let rest = line.split("address=").nth(1)?;
            line.contains("receiving the workloads' telemetry")
                .then(|| {
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                })
        })
    })
    .unwrap_or_else(|| panic!("the agent does not receive telemetry:\n{}", agent.log()))
}

/// The numbers of the daemon's `tick N` lines the backend received.
fn ticks(backend: &Backend, version: &str) -> Vec<u64> {
    let prefix = format!("alien-test-daemon {version} tick ");
    let mut ticks: Vec<u64> = backend
        .log_bodies()
        .iter()
        .filter_map(|body| body.strip_prefix(&prefix)?.parse().ok())
        .collect();
    ticks.sort_unstable();
    ticks.dedup();
    ticks
}

#[test]
fn telemetry_sent_while_the_manager_is_away_for_a_minute_all_arrives_once_it_is_back() {
    let backend = Backend::start();
    let api = e2e::telemetry::start_api(e2e::telemetry::config(Some(&backend.url()), ""));
    let version = format!("agent-otel-p{}", std::process::id());
    let image = e2e::workloads::push(&api, "alien-test-daemon", &version, &[]);
    let stack = json!({
        "id": "daemon-app",
        "permissions": {"profiles": {"execution": {}}},
        "resources": {
            "ticker": {
                "config": {
                    "type": "daemon", "id": "ticker", "permissions": "execution",
                    "code": {"type": "image", "image": image}, "links": []
                },
                "lifecycle": "live",
                "dependencies": []
            }
        }
    });
    let release_id = release(&api, stack);
    let (agent, id, _) = start_agent(&api, &release_id);
    let receiver = receiver_address(&agent);
    backend.wait(SETTLE, "the daemon's first ticks", |b| {
        ticks(b, &version).len() >= 2
    });

    // The manager stops answering; the daemon goes on ticking and a workload sends logs of
    // its own to the agent, which keeps them.
    let manager = api
        .server()
        .daemon_pid("manager")
        .expect("the manager's pid");
    kill(Pid::from_raw(manager), Signal::SIGSTOP).expect("SIGSTOP");
    let stopped_at = ticks(&backend, &version).last().copied().unwrap_or(0);
    let sent: Vec<String> = (0..3).map(|n| unique(&format!("away-{n}"))).collect();
    let agent_http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for body in &sent {
        let mut reply = agent_http
            .post(format!("http://{receiver}/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .send(log(body, 200).encode_to_vec())
            .expect("the agent's receiver answers while the manager is away");
        assert_eq!(reply.status().as_u16(), 200);
        let answer: Value = reply.body_mut().read_json().expect("JSON");
        assert_eq!(answer, json!({"accepted": true}));
        std::thread::sleep(OUTAGE / 4);
    }
    std::thread::sleep(OUTAGE / 4);
    let during = ticks(&backend, &version).last().copied().unwrap_or(0);
    kill(Pid::from_raw(manager), Signal::SIGCONT).expect("SIGCONT");
    assert!(
        during <= stopped_at + 1,
        "ticks reached the backend while the manager was stopped: {stopped_at} then {during}"
    );

    // Everything comes through once it is back: the workload's logs, and every tick.
    backend.wait(SETTLE, "the logs sent while the manager was away", |b| {
        let bodies = b.log_bodies();
        sent.iter().all(|s| bodies.contains(s))
    });
    let after_outage = stopped_at + OUTAGE.as_secs();
    backend.wait(SETTLE, "the ticks of the outage", |b| {
        ticks(b, &version)
            .last()
            .is_some_and(|&last| last > after_outage)
    });
    let seen = ticks(&backend, &version);
    let first = seen[0];
    let missing: Vec<u64> = (first..=after_outage)
        .filter(|n| !seen.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "ticks lost: {missing:?}\nagent log:\n{}",
        agent.log()
    );
    assert_eq!(api.deployment(&id)["status"], "running");
}

/// Waits until the deployment's record has `status`.
fn wait_status(api: &Api, agent: &Agent, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    wait_for(SETTLE, || {
        last = api.deployment(id);
        (last["status"] == status).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("{id} never {status}: {last:#}\nagent log:\n{}", agent.log()))
}

#[test]
fn a_broken_release_leaves_the_last_one_serving_and_the_next_good_one_goes_through_a_manager_restart()
 {
    let api = Api::start();
    let tag = format!("agent-fail-p{}", std::process::id());
    let (v1, v2, v3) = (
        format!("{tag}-v1"),
        format!("{tag}-v2"),
        format!("{tag}-v3"),
    );
    let first = release(
        &api,
        web_stack(&e2e::workloads::push(&api, "alien-test-web", &v1, &[])),
    );
    let (agent, id, running) = start_agent(&api, &first);
    let url = endpoint(&running, "web");
    wait_answer(&agent, &url, &v1, Duration::from_secs(5));

    // A release that never comes up: the update fails on this machine, v1 keeps serving, and
    // the manager hears why.
    let broken = e2e::workloads::push(&api, "alien-test-web", &v2, &["--exit-at-start"]);
    release(&api, web_stack(&broken));
    let failed = wait_status(&api, &agent, &id, "update-failed");
    let message = failed["stackState"]["resources"]["web"]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("exiting at start"), "{failed:#}");
    assert_eq!(
        get(&url),
        Some((200, v1.clone())),
        "the last release stopped serving"
    );
    // The agent waits in a held sync even though the manager keeps naming the failed
    // release: the retry reaches it at once, not at its next sync.
    let retried = Instant::now();
    api.expect(
        &Request::post_empty(format!("/v1/deployments/{id}/retry")).auth(api.admin()),
        200,
    );
    wait_for(Duration::from_secs(SYNC_INTERVAL_SECS / 2), || {
        let log = agent.log();
        (log.matches("to=UpdateFailed").count() >= 2).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the retry did not reach the agent at once:\n{}",
            agent.log()
        )
    });
    eprintln!(
        "a retry was retried by the agent after {:?}",
        retried.elapsed()
    );
    assert_eq!(get(&url), Some((200, v1.clone())));

    // A good release, with the manager killed while the agent rolls it out.
    let good = e2e::workloads::push(&api, "alien-test-web", &v3, &[]);
    let third = release(&api, web_stack(&good));
    let manager = api
        .server()
        .daemon_pid("manager")
        .expect("the manager's pid");
    kill(Pid::from_raw(manager), Signal::SIGKILL).expect("kill -9 the manager");
    wait_answer(&agent, &url, &v3, SETTLE);
    wait_running(&api, &agent, &id, &third);

    // A redeploy reaches the waiting agent at once, which rolls the release out again.
    let asked = Instant::now();
    api.expect(
        &Request::post_empty(format!("/v1/deployments/{id}/redeploy")).auth(api.admin()),
        200,
    );
    wait_for(Duration::from_secs(SYNC_INTERVAL_SECS / 2), || {
        agent
            .log()
            .contains("the manager asked for a redeploy")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the redeploy did not reach the agent:\n{}", agent.log()));
    eprintln!("a redeploy reached the agent after {:?}", asked.elapsed());
    wait_for(SETTLE, || {
        let record = api.deployment(&id);
        (record["status"] == "running"
            && record["currentReleaseId"] == third.as_str()
            && record["desiredReleaseId"].is_null())
        .then_some(())
    })
    .unwrap_or_else(|| panic!("the redeploy did not finish: {:#}", api.deployment(&id)));
    assert_eq!(get(&url), Some((200, v3.clone())));
}

#[test]
fn a_second_agent_of_the_same_name_gets_a_token_of_its_own_for_the_same_deployment() {
    let api = Api::start();
    let group = api.create_group();
    let name = unique("host");
    let identity = |agent: &Agent| -> Value {
        let path = agent.data_dir().join("identity.json");
        wait_for(SETTLE, || {
            std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        })
        .unwrap_or_else(|| panic!("no identity:\n{}", agent.log()))
    };
    let options = |dir: &str| AgentOptions {
        sync_url: api.base_url(),
        token: group.token.clone(),
        name: name.clone(),
        data_dir: api.server().work_dir().join(dir),
        sync_interval_secs: SYNC_INTERVAL_SECS,
        heartbeat_interval_secs: SYNC_INTERVAL_SECS,
        ca_file: None,
        exec_through: Vec::new(),
    };
    let first = Agent::start(options("first"));
    let first_identity = identity(&first);
    let second = Agent::start(options("second"));
    let second_identity = identity(&second);
    assert_eq!(
        first_identity["deploymentId"],
        second_identity["deploymentId"]
    );
    assert_ne!(first_identity["token"], second_identity["token"]);
    assert_eq!(deployments_of(&api, &group.id).len(), 1);
}

#[test]
fn an_agent_reaches_a_manager_over_https_with_its_ca_file_and_relays_it_to_its_workloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let front = TlsFront::start(dir.path());
    // The manager knows itself by the front's URL, as behind an operator's TLS proxy: the
    // release's images and the commands' URLs name that origin.
    let api = Api::start_with(e2e::Options {
        env: vec![("BASE_URL".into(), front.url())],
        ..e2e::Options::default()
    });
    front.forward_to(api.server().port());
    let origin = front.url().trim_start_matches("https://").to_owned();
    let version = format!("agent-tls-p{}", std::process::id());
    let image = e2e::workloads::push_via(&api, &origin, "alien-test-worker", &version, &[]);
    let stack = worker_stack(&image);
    let release_id = release(&api, stack);
    let group = api.create_group();
    let options = |name: &str, ca_file| AgentOptions {
        sync_url: front.url(),
        token: group.token.clone(),
        name: name.to_owned(),
        data_dir: api.server().work_dir().join(name),
        sync_interval_secs: SYNC_INTERVAL_SECS,
        heartbeat_interval_secs: SYNC_INTERVAL_SECS,
        ca_file,
        exec_through: Vec::new(),
    };

    // Without the CA the manager's certificate is not trusted, and the agent says so.
    let untrusting = Agent::start(options("untrusting", None));
    wait_for(SETTLE, || {
        untrusting.log().contains("UnknownIssuer").then_some(())
    })
    .unwrap_or_else(|| panic!("no certificate error in the log:\n{}", untrusting.log()));
    drop(untrusting);
    assert!(deployments_of(&api, &group.id).is_empty());

    // With it, the agent sets itself up, pulls the image and runs the worker, all through
    // the front; the worker's runtime answers a command through the agent's relay.
    let agent = Agent::start(options("trusting", Some(front.ca_file().to_path_buf())));
    let id = deployment_of(&api, &agent, &group.id);
    wait_running(&api, &agent, &id, &release_id);
    assert_echoes(&api, &agent, &id, "api", &json!({"over": "tls"}), &version);
}

#[test]
fn an_agent_in_a_network_namespace_of_its_own_reaches_the_manager_only_over_the_link() {
    if !e2e::server::running_as_root() {
        eprintln!("a network namespace needs root: run the suite as root, as CI does");
        return;
    }
    // The customer's machine: a namespace whose only way out is a veth link to this one,
    // where the manager is reached at its base URL.
    let netns = Netns::create();
    let front = netns.front();
    let api = Api::start_with(e2e::Options {
        env: vec![("BASE_URL".into(), format!("http://{}", front.address()))],
        ..e2e::Options::default()
    });
    front.forward_to(api.server().port());
    let version = format!("agent-netns-p{}", std::process::id());
    // Pushed from this machine; the release names the image by the manager's base URL, the
    // only address the namespace has for it.
    let pushed = e2e::workloads::push(&api, "alien-test-worker", &version, &[]);
    let image = format!(
        "{}/{}",
        front.address(),
        pushed.split_once('/').expect("a registry host").1
    );
    let release_id = release(&api, worker_stack(&image));
    let group = api.create_group();
    let agent = Agent::start(AgentOptions {
        sync_url: format!("http://{}", front.address()),
        token: group.token.clone(),
        name: unique("host"),
        data_dir: api.server().work_dir().join("netns-agent"),
        sync_interval_secs: SYNC_INTERVAL_SECS,
        heartbeat_interval_secs: SYNC_INTERVAL_SECS,
        ca_file: None,
        exec_through: netns.exec_prefix(),
    });
    let id = deployment_of(&api, &agent, &group.id);
    wait_running(&api, &agent, &id, &release_id);
    assert_echoes(
        &api,
        &agent,
        &id,
        "api",
        &json!({"over": "the link"}),
        &version,
    );
}
