//! Connections into a workload's own network namespace, for the gateway: a blocking thread
//! enters the namespace, connects, and comes back; the socket stays in the namespace. The
//! namespace is opened once per version, not per request.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use nix::sched::{CloneFlags, setns};
use tokio::net::TcpStream;

/// deployd's own network namespace, where every blocking thread returns.
fn home() -> io::Result<&'static File> {
    static HOME: OnceLock<File> = OnceLock::new();
    if let Some(file) = HOME.get() {
        return Ok(file);
    }
    let file = File::open("/proc/self/ns/net")?;
    Ok(HOME.get_or_init(|| file))
}

#[derive(Debug)]
pub struct Namespace {
    file: File,
}

impl Namespace {
    /// The network namespace of process `pid`.
    pub fn of(pid: u32) -> io::Result<Namespace> {
        home()?;
        Ok(Namespace {
            file: File::open(format!("/proc/{pid}/ns/net"))?,
        })
    }

    /// A connection to `127.0.0.1:port` inside the namespace.
    pub async fn connect(&self, port: u16) -> io::Result<TcpStream> {
        let file = self.file.try_clone()?;
        let stream = tokio::task::spawn_blocking(move || {
            let home = home()?;
            setns(&file, CloneFlags::CLONE_NEWNET)?;
            let connected =
                std::net::TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
            // A blocking-pool thread must not stay in a workload's namespace: if it cannot
            // go home, it must not run anything else.
            if setns(home, CloneFlags::CLONE_NEWNET).is_err() {
                std::process::abort();
            }
            connected
        })
        .await
        .map_err(io::Error::other)??;
        stream.set_nonblocking(true)?;
        TcpStream::from_std(stream)
    }
}
