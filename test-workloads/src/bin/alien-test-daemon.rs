//! A daemon: a line a second on stdout and on stderr; serves like the web server on `$PORT`
//! when it is set; leases and answers its own commands when it is command-enabled.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut stop = test_workloads::Stop::install();
    let args = test_workloads::Args::from_env();
    test_workloads::commands::receive(&args.version);
    let version = args.version.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for n in 0u64.. {
            tick.tick().await;
            // A closed stdout or stderr is the reader's business; the daemon goes on.
            let _ = writeln!(std::io::stdout(), "alien-test-daemon {version} tick {n}");
            let _ = writeln!(std::io::stderr(), "alien-test-daemon {version} tock {n}");
        }
    });
    let port = std::env::var("PORT")
        .ok()
        .and_then(|port| port.parse::<u16>().ok());
    let version = args.version;
    match port {
        Some(port) => {
            let listener =
                test_workloads::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await;
            test_workloads::serve(listener, &mut stop, move |request| {
                test_workloads::plain_answer(&version, request)
            })
            .await;
        }
        None => stop.wait().await,
    }
}
