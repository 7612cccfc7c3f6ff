//! Starts the real registryd in-process on a data directory and talks HTTP/1.1 to it over
//! its Unix socket, as the manager does.

#![allow(dead_code)] // Each test binary uses its own part of this.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use plumbing::{Daemon, DaemonContext, DataDir};
use sha2::Digest as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Registry {
    pub ctx: DaemonContext,
    task: Option<JoinHandle<Result<(), registryd::Error>>>,
}

impl Registry {
    /// Starts registryd on `root` and waits until it answers.
    pub async fn start(root: &Path) -> Registry {
        let ctx = DaemonContext {
            config: Default::default(),
            data: DataDir::new(root),
            shutdown: CancellationToken::new(),
        };
        let task = tokio::spawn(registryd::run(ctx.clone()));
        let registry = Registry {
            ctx,
            task: Some(task),
        };
        registry.wait_ready().await;
        registry
    }

    pub fn socket(&self) -> PathBuf {
        self.ctx.data.socket(Daemon::Registryd)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.ctx.data.state_dir(Daemon::Registryd)
    }

    async fn wait_ready(&self) {
        for _ in 0..250 {
            if let Ok((StatusCode::OK, _)) =
                plumbing::uds::get(&self.socket(), "/health", Duration::from_secs(1)).await
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("registryd did not become ready");
    }

    /// Stops registryd as SIGTERM would and waits for it.
    pub async fn stop(mut self) {
        self.ctx.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("joined").expect("clean stop");
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        send(&self.socket(), request).await
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        self.send(request(method, path, headers, body)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, &[], Body::empty()).await
    }

    /// Pushes a blob with POST then PUT; returns its digest.
    pub async fn push_blob(&self, name: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let started = self
            .call(
                "POST",
                &format!("/v2/{name}/blobs/uploads/"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(started.status, 202, "{}", started.text());
        let location = started.header("location");
        let put = self
            .call(
                "PUT",
                &format!("{location}?digest={digest}"),
                &[("content-type", "application/octet-stream")],
                bytes.to_vec(),
            )
            .await;
        assert_eq!(put.status, 201, "{}", put.text());
        digest
    }

    /// Pushes an OCI image manifest of `config` and `layers` under `reference`.
    pub async fn push_manifest(&self, name: &str, reference: &str, body: &str) -> Reply {
        self.call(
            "PUT",
            &format!("/v2/{name}/manifests/{reference}"),
            &[("content-type", OCI_MANIFEST)],
            body.to_owned(),
        )
        .await
    }

    pub async fn gc(&self, options: &str) -> serde_json::Value {
        let reply = self.call("POST", "/gc", &[], options.to_owned()).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.ctx.shutdown.cancel();
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// An OCI image manifest with `config` and `layers` (each given as bytes).
pub fn image_manifest(config: &[u8], layers: &[&[u8]], extra: &str) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}"#,
                sha256(l),
                l.len()
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",{extra}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        sha256(config),
        config.len(),
        layers.join(",")
    )
}

pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path)
        .header("host", "registryd");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).expect("request")
}

pub async fn send(socket: &Path, request: Request<Body>) -> Reply {
    let response = plumbing::uds::send(socket, request).await.expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The first error code of an OCI error body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

/// Every file under `dir` but the database's, relative: what a request left behind.
pub fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .expect("under dir")
                    .to_string_lossy()
                    .into_owned();
                if !rel.starts_with("registry.db") {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    out
}
