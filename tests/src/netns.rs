//! A network namespace of its own for a process under test, joined to this machine by a veth
//! pair on a private /30: the process reaches this machine only at [`Netns::host`], as an
//! agent on a customer's machine reaches a manager only over the network. Needs root and
//! `ip` (iproute2); removed with everything in it when dropped.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

#[derive(Debug)]
pub struct Netns {
    name: String,
    outside: String,
    host: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e} (is iproute2 installed?)"));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// A namespace with loopback up and one veth link to this machine.
    pub fn create() -> Netns {
        let pid = std::process::id();
        let name = format!("alien-e2e-{pid}");
        // Interface names hold at most 15 bytes.
        let (outside, inside) = (
            format!("ae{}a", pid % 100_000),
            format!("ae{}b", pid % 100_000),
        );
        let subnet = (pid % 250) as u8;
        let host = Ipv4Addr::new(10, 231, subnet, 1);
        let guest = Ipv4Addr::new(10, 231, subnet, 2);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &outside]).output();
        ip(&["netns", "add", &name]);
        let netns = Netns {
            name,
            outside,
            host,
        };
        ip(&[
            "link",
            "add",
            &netns.outside,
            "type",
            "veth",
            "peer",
            "name",
            &inside,
        ]);
        ip(&["link", "set", &inside, "netns", &netns.name]);
        ip(&["addr", "add", &format!("{host}/30"), "dev", &netns.outside]);
        ip(&["link", "set", &netns.outside, "up"]);
        let inside_ip = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &netns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside_ip(&["addr", "add", &format!("{guest}/30"), "dev", &inside]);
        inside_ip(&["link", "set", &inside, "up"]);
        inside_ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// This machine's address on the link, as the namespace sees it.
    pub fn host(&self) -> Ipv4Addr {
        self.host
    }

    /// The words that run a command in the namespace (`ip netns exec NAME`).
    pub fn exec_prefix(&self) -> Vec<OsString> {
        ["ip", "netns", "exec", &self.name]
            .map(OsString::from)
            .to_vec()
    }

    /// Listens on the link side of this machine, on a free port: the namespace's way in.
    /// Connections are passed on once [`Front::forward_to`] names where.
    pub fn front(&self) -> Front {
        let listener = TcpListener::bind((self.host, 0)).expect("bind the link address");
        let address = listener.local_addr().expect("address");
        let backend = Arc::new(AtomicU16::new(0));
        let to = backend.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let port = to.load(Ordering::SeqCst);
                let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
                    continue;
                };
                pipe(client, server);
            }
        });
        Front { address, backend }
    }
}

/// This machine's side of the link, passing connections to a port on 127.0.0.1.
#[derive(Debug)]
pub struct Front {
    address: SocketAddr,
    backend: Arc<AtomicU16>,
}

impl Front {
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Passes the connections to `127.0.0.1:port` from now on.
    pub fn forward_to(&self, port: u16) {
        self.backend.store(port, Ordering::SeqCst);
    }
}

/// Copies both ways between `a` and `b` until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let mut buffer = [0u8; 64 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buffer) {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    };
    if let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) {
        copy(a, b2);
        copy(b, a2);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.outside])
            .output();
    }
}
