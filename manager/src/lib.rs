//! The manager: the public HTTP API and the SQLite system of record.

use plumbing::DaemonContext;

#[derive(Debug, thiserror::Error)]
pub enum Error {}

/// Runs the manager until `ctx.shutdown` is cancelled. `listener` is a socket the supervisor
/// bound for us; without one the manager binds `[server] host`/`port` itself.
pub async fn run(_ctx: DaemonContext, _listener: Option<std::net::TcpListener>) -> Result<(), Error> {
    Ok(())
}
