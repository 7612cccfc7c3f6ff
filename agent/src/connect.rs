//! How the agent reaches its manager: plain HTTP, or HTTPS trusting the system's roots and
//! the certificates of `--ca-file` (a private CA, or a self-signed manager). One connector,
//! shared by the agent's own requests and by the relay that carries the workloads'.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tracing::{debug, warn};

use crate::AgentError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub type Connector = HttpsConnector<HttpConnector>;

/// A connector for `http://` and `https://` URLs. The system's roots that cannot be read
/// are skipped (a machine may have none, with `--ca-file` naming the one that matters); an
/// unreadable `ca_file`, or one without a certificate, is refused.
pub fn connector(ca_file: Option<&Path>) -> Result<Connector, AgentError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        debug!(%error, "a system certificate cannot be read");
    }
    let (_, unusable) = roots.add_parsable_certificates(native.certs);
    if unusable > 0 {
        debug!(unusable, "system certificates that are not usable as roots");
    }
    if let Some(path) = ca_file {
        let refused =
            |why: String| AgentError::Config(format!("--ca-file {}: {why}", path.display()));
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| refused(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refused(e.to_string()))?;
        if certificates.is_empty() {
            return Err(refused("holds no PEM certificate".into()));
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|e| refused(format!("a certificate is not usable as a root: {e}")))?;
        }
    }
    if roots.is_empty() {
        warn!("no trusted certificates: HTTPS to the manager will fail; give --ca-file");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| AgentError::Config(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    // HTTPS URLs need their scheme kept for the TLS layer.
    http.enforce_http(false);
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}
