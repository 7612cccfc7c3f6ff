//! A TLS front before a manager, as an operator puts a reverse proxy before it: it serves
//! `https://localhost:<port>` with a certificate of a CA made for the test, and passes each
//! connection's plaintext to the manager's port. It binds its port first, so that the
//! manager can be started with the front's URL as its base URL.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug)]
pub struct TlsFront {
    port: u16,
    backend: Arc<AtomicU16>,
    ca_file: PathBuf,
}

impl TlsFront {
    /// Makes a CA (its certificate written to `dir/ca.pem`) and a certificate for
    /// `localhost` it signs, and serves TLS on 127.0.0.1 on a free port.
    pub fn start(dir: &Path) -> TlsFront {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alien e2e test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let key = KeyPair::generate().expect("key");
        let certificate = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("certificate");
        std::fs::create_dir_all(dir).expect("TLS directory");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("ca.pem");

        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("TLS server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the TLS front");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let backend = Arc::new(AtomicU16::new(0));
        let to = backend.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(serve(listener, acceptor, to));
        });
        TlsFront {
            port,
            backend,
            ca_file,
        }
    }

    /// The front's URL, by the name its certificate holds.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// The PEM file of the CA that signed the front's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Passes the connections to `port` on 127.0.0.1 from now on.
    pub fn forward_to(&self, port: u16) {
        self.backend.store(port, Ordering::SeqCst);
    }
}

async fn serve(listener: std::net::TcpListener, acceptor: TlsAcceptor, backend: Arc<AtomicU16>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    while let Ok((client, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        let port = backend.load(Ordering::SeqCst);
        tokio::spawn(async move {
            // A client that does not trust the certificate ends its handshake: nothing to pass.
            let Ok(mut client) = acceptor.accept(client).await else {
                return;
            };
            let Ok(mut server) =
                tokio::net::TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await
            else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}
