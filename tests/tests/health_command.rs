//! `alien health`: the manager's `/health` as an exit status, for Docker's HEALTHCHECK.

use std::time::Duration;

use e2e::server::free_port;
use e2e::{Invocation, Options, Server};

fn alien_health(port: u16) -> e2e::Finished {
    Invocation::new(["health", "--port", &port.to_string(), "--host", "127.0.0.1"])
        .run(Duration::from_secs(15))
}

#[test]
fn alien_health_exits_0_for_a_healthy_server_and_1_when_nothing_listens() {
    let mut server = Server::start(Options::default());
    server.wait_healthy(Duration::from_secs(20));

    let healthy = alien_health(server.port());
    assert_eq!(healthy.code(), Some(0), "{healthy:?}");
    assert_eq!(
        healthy.stdout.trim(),
        r#"{"status":"healthy"}"#,
        "{healthy:?}"
    );

    let nobody = free_port();
    let refused = alien_health(nobody);
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    assert!(
        refused.stderr.starts_with(&format!(
            "error: no answer from http://127.0.0.1:{nobody}/health"
        )),
        "{refused:?}"
    );

    // And once the server has stopped, it is refused too.
    server.sigterm();
    assert!(
        server
            .wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    let stopped = alien_health(server.port());
    assert_eq!(stopped.code(), Some(1), "{stopped:?}");
}
