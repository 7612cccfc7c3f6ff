//! Sockets inside a workload's private network namespace, opened from the host: a thread
//! enters the namespace, creates the socket and leaves; the socket stays in the namespace.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};

use nix::sched::{CloneFlags, setns};

use crate::record::Workload;
use crate::spec::Network;
use crate::{Status, status};

/// Connects to `127.0.0.1:port` as seen by the workload: inside its namespace when its
/// network is private, on the host otherwise.
pub fn connect_in(workload: &Workload, port: u16) -> io::Result<TcpStream> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    in_namespace(workload, move || TcpStream::connect(address))
}

/// Listens on `address` as seen by the workload, e.g. `127.0.0.2:port`, so the workload can
/// reach a service the caller serves from the host side on the returned listener.
pub fn listen_in(workload: &Workload, address: SocketAddr) -> io::Result<TcpListener> {
    in_namespace(workload, move || TcpListener::bind(address))
}

fn in_namespace<T, F>(workload: &Workload, open: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    if workload.network == Network::Host || workload.root_mode().is_none() {
        return open();
    }
    let pid = match status(workload).map_err(io::Error::other)? {
        Status::Running { pid } => pid,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("workload {} is not running: {other:?}", workload.id),
            ));
        }
    };
    let target = File::open(format!("/proc/{pid}/ns/net"))?;
    // setns changes only the calling thread; a thread of our own keeps the caller's and the
    // async runtime's threads where they are.
    std::thread::spawn(move || {
        let original = File::open("/proc/thread-self/ns/net")?;
        setns(&target, CloneFlags::CLONE_NEWNET)?;
        let opened = open();
        // If this fails the thread is ending anyway; the socket is what matters.
        if let Err(error) = setns(&original, CloneFlags::CLONE_NEWNET) {
            tracing::warn!(%error, "leaving a workload's network namespace failed");
        }
        opened
    })
    .join()
    .map_err(|_| io::Error::other("the namespace thread panicked"))?
}
