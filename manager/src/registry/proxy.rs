//! A `/v2` request's whole path through the manager, and the admin's garbage collection.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use hyper::body::Incoming;
use plumbing::clock;
use protocol::registryd::{GC_PATH, GcOptions, GcReport};

use super::Proxy;
use super::access::{self, Need, Verdict};
use super::location::public_base;
use super::path::{Endpoint, RawQuery, Resource};
use super::pulls::Pull;
use super::{session, upstream};
use crate::auth::{Caller, Subject};
use crate::daemons::Call;
use crate::error::{Error, OciError};
use crate::store::Store;
use crate::wire::Platform;

/// The largest answer to a collection that is read: its report is a few numbers.
const GC_REPORT_LIMIT: usize = 64 * 1024;

/// A collection of a large registry takes a while; the admin's request waits for it.
const GC_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

impl Proxy {
    /// Authenticates, authorizes and forwards one `/v2/...` request (all but the version
    /// check) and answers registryd's answer, streamed, with its `Location` made public.
    pub async fn forward(
        &self,
        store: &Store,
        base_url: &str,
        caller: &Caller,
        request: Request,
    ) -> Result<Response, OciError> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        let query = RawQuery::parse(parts.uri.query());
        let endpoint = Endpoint::parse(path);
        let mut keep_mount = true;
        match endpoint {
            // A signed upload session: the signature alone says the request may write there.
            Endpoint::In(repository, Resource::Upload(_))
                if matches!(parts.method, Method::PUT | Method::PATCH)
                    && session::is_signed(&query) =>
            {
                self.sessions
                    .verify(path, repository, &query, unix_now())
                    .map_err(|invalid| OciError::Denied(invalid.reason().into()))?;
                self.route(repository)?;
            }
            Endpoint::Unknown => {
                caller.authenticate(store).await?;
                return Err(OciError::Unsupported(path.to_owned()));
            }
            _ => {
                let subject = caller.authenticate(store).await?;
                let need = access::need(&parts.method, endpoint);
                if let Need::Pull(repository) | Need::Push(repository) | Need::Delete(repository) =
                    need
                {
                    self.route(repository)?;
                }
                self.permit(store, &subject, need).await?;
                if let Endpoint::In(_, Resource::UploadStart) = endpoint
                    && let Some(from) = query.get("from")
                {
                    keep_mount = self.may_mount_from(&subject, &from);
                }
            }
        }
        let forwarded_query = query.without(|name| {
            session::is_session_param(name) || (!keep_mount && matches!(name, "mount" | "from"))
        });
        let target = match forwarded_query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let call = upstream::call(parts.method.clone(), target, &parts.headers, body);
        let response = self.registryd.send(call).await?;
        let base = public_base(&parts.headers, base_url);
        Ok(self.answer(response, &base))
    }

    /// 404 `NAME_UNKNOWN` unless `repository` is the embedded registry's. Routes to a cloud
    /// registry exist for `GET /v1/build-config`; this manager does not proxy them.
    fn route(&self, repository: &str) -> Result<(), OciError> {
        match self.routes.route(repository) {
            Some(Platform::Local) => Ok(()),
            Some(platform) => Err(OciError::NameUnknown(format!(
                "Repository '{repository}' is routed to the {platform} registry, which this manager does not proxy"
            ))),
            None => Err(OciError::NameUnknown(format!(
                "No registry is configured for repository '{repository}'"
            ))),
        }
    }

    /// Whether `subject` may do what the request needs; a deployment's release is read for
    /// it.
    async fn permit(
        &self,
        store: &Store,
        subject: &Subject,
        need: Need<'_>,
    ) -> Result<(), OciError> {
        let (deployment_id, repository) = match access::verdict(subject, need) {
            Verdict::Allow => return Ok(()),
            Verdict::Deny(reason) => return Err(OciError::Denied(reason.into())),
            Verdict::IfReleaseReferences {
                deployment_id,
                repository,
            } => (deployment_id, repository),
        };
        match self.pulls.check(store, deployment_id, repository).await? {
            Pull::Allowed => Ok(()),
            Pull::NotReferenced => Err(OciError::Denied(
                format!(
                    "Deployment '{deployment_id}' may not pull '{repository}': its release does not reference it"
                )
                .into(),
            )),
            Pull::NoDeployment => Err(OciError::NameUnknown(format!(
                "Deployment '{deployment_id}' not found"
            ))),
            Pull::NoRelease => Err(OciError::NameUnknown(format!(
                "Deployment '{deployment_id}' has no release to pull from"
            ))),
        }
    }

    /// A cross-repository mount (`?mount=<digest>&from=<name>`) reads `from`: the caller must
    /// be allowed to pull from it, or the mount is left out and registryd starts an ordinary
    /// upload, which the client then fills, as the distribution spec lets a registry do.
    fn may_mount_from(&self, subject: &Subject, from: &str) -> bool {
        self.routes.route(from) == Some(Platform::Local)
            && access::verdict(subject, Need::Pull(from)) == Verdict::Allow
    }

    /// registryd's answer, streamed, without its connection's headers and with its
    /// `Location` made public.
    fn answer(&self, response: hyper::Response<Incoming>, base: &str) -> Response {
        let (mut parts, body) = response.into_parts();
        upstream::drop_hop_by_hop(&mut parts.headers);
        let location = parts
            .headers
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(|location| self.public_location(location, base, unix_now()));
        if let Some(value) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            parts.headers.insert(LOCATION, value);
        }
        Response::from_parts(parts, Body::new(body))
    }

    /// Runs registryd's garbage collection with `options` and hands back its report. A
    /// collection already running is waited for.
    pub async fn collect_garbage(&self, options: Option<&GcOptions>) -> Result<GcReport, Error> {
        let call = match options {
            Some(options) => Call::post(GC_PATH).json(options)?,
            None => Call::post(GC_PATH),
        };
        let response = self.registryd.send(call.waiting(GC_PATIENCE)).await?;
        let status = response.status();
        let bytes = self.registryd.read(response, GC_REPORT_LIMIT).await?;
        if status == StatusCode::OK {
            return Ok(serde_json::from_slice(&bytes)?);
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if status.is_client_error() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|body| body["errors"][0]["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(Error::RegistryRefused(message));
        }
        Err(Error::RegistryFailed { status, body: text })
    }
}

/// Upload-session signatures count in Unix seconds.
fn unix_now() -> u64 {
    u64::try_from(clock::now_secs()).unwrap_or(0)
}
