//! A plain web server, as a container image that never registers with a worker runtime:
//! listens on `0.0.0.0:$PORT` and answers its version; leases and answers its own commands
//! when it is command-enabled.

use std::net::{Ipv4Addr, SocketAddr};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut stop = test_workloads::Stop::install();
    let args = test_workloads::Args::from_env();
    test_workloads::commands::receive(&args.version);
    let port = match std::env::var("PORT").map(|port| port.parse::<u16>()) {
        Ok(Ok(port)) => port,
        _ => {
            eprintln!("PORT must be set to a port number");
            std::process::exit(1)
        }
    };
    let listener = test_workloads::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await;
    println!("alien-test-web {} listening on port {port}", args.version);
    let version = args.version;
    test_workloads::serve(listener, &mut stop, move |request| {
        test_workloads::plain_answer(&version, request)
    })
    .await;
}
