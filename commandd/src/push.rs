//! Push delivery to a Worker's HTTP endpoint (the local platform): the envelope is
//! `POST`ed as JSON to the push target the manager knows for the worker's runtime (never one
//! a client reported), and only an exact `202` counts as delivered.

use plumbing::config::Secret;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use protocol::commands::Envelope;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The worker answered `202`.
    Delivered,
    /// The worker certainly did not take it: it could not be reached, or it said no.
    Rejected(String),
    /// It may have taken it: a timeout, a lost answer, a `5xx`.
    Ambiguous(String),
}

/// Sends `envelope` to `url` (an `http://` URL: the local runtime's `/_alien/commands`), with
/// the deployment's token as its bearer when there is one.
pub async fn deliver(url: &str, envelope: &Envelope, token: Option<&Secret>) -> Outcome {
    let uri: Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => return Outcome::Rejected(format!("push target {url:?}: {e}")),
    };
    if uri.scheme_str() != Some("http") {
        return Outcome::Rejected(format!("push target {url:?} is not an http:// URL"));
    }
    let Some(authority) = uri.authority().cloned() else {
        return Outcome::Rejected(format!("push target {url:?} has no host"));
    };
    let port = authority.port_u16().unwrap_or(80);
    let body = match serde_json::to_vec(envelope) {
        Ok(body) => body,
        Err(e) => return Outcome::Rejected(format!("envelope: {e}")),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut request = Request::post(path)
        .header(header::HOST, authority.as_str())
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let request = request.body(Body::from(body));
    let request = match request {
        Ok(request) => request,
        Err(e) => return Outcome::Rejected(format!("request: {e}")),
    };
    let connect = TcpStream::connect((authority.host(), port));
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Outcome::Rejected(format!("connect to {authority}: {e}")),
        Err(_) => return Outcome::Rejected(format!("connect to {authority}: timed out")),
    };
    let exchange = async {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%error, "push connection ended");
            }
        });
        sender.send_request(request).await
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Err(_) => Outcome::Ambiguous(format!("no answer from {url} within {REQUEST_TIMEOUT:?}")),
        Ok(Err(e)) => Outcome::Ambiguous(format!("{url}: {e}")),
        Ok(Ok(response)) => match response.status() {
            StatusCode::ACCEPTED => Outcome::Delivered,
            status if status.is_server_error() => {
                Outcome::Ambiguous(format!("{url} answered {status}"))
            }
            status => Outcome::Rejected(format!("{url} answered {status}")),
        },
    }
}
