//! What the registry tests share: an OCI distribution client for the manager's public `/v2`
//! (docs/compatibility.md, Registry proxy), the images and blobs they push, and the outside
//! clients they drive (skopeo from Debian, oras from PyPI).
//!
//! Everything goes through the manager's public port, as a registry client would: the
//! manager authenticates and forwards to registryd over its Unix socket. `Location`s come
//! back absolute (rewritten for the public base URL), possibly with query parameters of
//! their own, so a client follows them as given and appends `digest=` with `?` or `&`.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{Api, base64, shorten};

/// The manager's admin route that runs registryd's garbage collection (`POST /gc` on its
/// socket, forwarded). One place, so that the tests follow the route wherever it settles.
pub const GC_ROUTE: &str = "/v1/registry/gc";

/// The embedded registry's repository prefix, which `GET /v1/build-config?platform=local`
/// names: every name the tests push lives under it, so that the proxy's routing table sends
/// it to registryd.
pub const REPOSITORY: &str = "artifacts/default";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A request that takes longer than this is a hang (large blobs included: they are at most
/// a few hundred MiB, on loopback).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an outside client (skopeo, oras) may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(180);

/// The `Authorization` header of a registry request, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cred(Option<String>);

impl Cred {
    pub fn none() -> Cred {
        Cred(None)
    }

    pub fn bearer(token: &str) -> Cred {
        Cred(Some(format!("Bearer {token}")))
    }

    /// `Basic user:token`, as registry clients send it (the user part is ignored).
    pub fn basic(user: &str, token: &str) -> Cred {
        Cred(Some(format!(
            "Basic {}",
            base64(format!("{user}:{token}").as_bytes())
        )))
    }

    /// The header's whole value, as given.
    pub fn header(value: &str) -> Cred {
        Cred(Some(value.to_owned()))
    }
}

/// An answer of the registry proxy: status, headers and the raw body.
#[derive(Debug, Clone)]
pub struct OciReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl OciReply {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, or `Value::Null`.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The `code` of the first entry of an OCI error body `{"errors":[{"code",...}]}`.
    pub fn code(&self) -> Option<String> {
        self.json()["errors"][0]["code"].as_str().map(str::to_owned)
    }

    /// Short, for assertion messages.
    pub fn summary(&self) -> String {
        format!("{} {}", self.status, shorten(&self.text(), 300))
    }
}

/// A client of the manager's `/v2` (and of its other routes, for the GC).
#[derive(Debug, Clone)]
pub struct Oci {
    base: String,
    http: ureq::Agent,
}

impl Oci {
    pub fn new(api: &Api) -> Oci {
        Oci::at(&api.base_url())
    }

    /// A client of the server at `base` (`http://host:port`).
    pub fn at(base: &str) -> Oci {
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        Oci {
            base: base.trim_end_matches('/').to_owned(),
            http,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `host:port`, as image references name the registry.
    pub fn host(&self) -> &str {
        self.base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, host)| host)
    }

    /// `target` as a URL: a path is taken relative to the server, a URL as it is.
    pub fn url(&self, target: &str) -> String {
        if target.starts_with("http://") || target.starts_with("https://") {
            target.to_owned()
        } else {
            format!("{}{target}", self.base)
        }
    }

    /// Sends a request; fails the test if no HTTP answer comes back.
    pub fn call(
        &self,
        method: &str,
        target: &str,
        cred: &Cred,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> OciReply {
        self.try_call(method, target, cred, headers, body)
            .unwrap_or_else(|e| panic!("{method} {target}: no answer: {e}"))
    }

    pub fn try_call(
        &self,
        method: &str,
        target: &str,
        cred: &Cred,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Result<OciReply, ureq::Error> {
        let request = self.request(method, target, cred, headers);
        self.finish(self.http.run(request.body(body.into())?)?)
    }

    /// Sends a request whose body is read from `reader` as it is sent (chunked transfer
    /// encoding): a body that is made on the fly, or that stalls and fails on purpose.
    pub fn call_streaming(
        &self,
        method: &str,
        target: &str,
        cred: &Cred,
        headers: &[(&str, &str)],
        reader: impl Read + 'static,
    ) -> Result<OciReply, ureq::Error> {
        let request = self.request(method, target, cred, headers);
        let body = ureq::SendBody::from_owned_reader(reader);
        self.finish(self.http.run(request.body(body)?)?)
    }

    /// Sends one request on a connection of its own, reading the answer while the body is
    /// still being written: a server may answer before it has read the whole body and stop
    /// reading it (a 413 for a body too large comes that way), which a client that writes its
    /// whole body before reading, like ureq, sees only as a broken pipe. `chunked` sends the
    /// body without a `Content-Length`.
    pub fn call_reading_early(
        &self,
        method: &str,
        path: &str,
        cred: &Cred,
        headers: &[(&str, &str)],
        body: &[u8],
        chunked: bool,
    ) -> OciReply {
        use std::net::{Shutdown, TcpStream};
        let host = self.host().to_owned();
        let mut stream =
            TcpStream::connect(&host).unwrap_or_else(|e| panic!("connect to {host}: {e}"));
        stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .expect("read timeout");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        if let Some(value) = &cred.0 {
            head.push_str(&format!("Authorization: {value}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if chunked {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        } else {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        }
        let mut writer = stream.try_clone().expect("clone the connection");
        let mut raw = Vec::new();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                // Write errors are expected: the server may have answered and closed.
                let _ = (|| -> io::Result<()> {
                    writer.write_all(head.as_bytes())?;
                    if chunked {
                        for chunk in body.chunks(64 * 1024) {
                            writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                            writer.write_all(chunk)?;
                            writer.write_all(b"\r\n")?;
                        }
                        writer.write_all(b"0\r\n\r\n")?;
                    } else {
                        writer.write_all(body)?;
                    }
                    writer.flush()
                })();
            });
            let mut buf = [0u8; 64 * 1024];
            // Until the server closes (or resets) the connection: what came before stays.
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&buf[..n]);
            }
            let _ = stream.shutdown(Shutdown::Both);
        });
        parse_response(&raw).unwrap_or_else(|| {
            panic!(
                "{method} {path}: no HTTP answer: {:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(300)])
            )
        })
    }

    fn request(
        &self,
        method: &str,
        target: &str,
        cred: &Cred,
        headers: &[(&str, &str)],
    ) -> ureq::http::request::Builder {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(target));
        if let Some(value) = &cred.0 {
            builder = builder.header("Authorization", value);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
    }

    fn finish(&self, response: ureq::http::Response<ureq::Body>) -> Result<OciReply, ureq::Error> {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .with_config()
            .limit(1024 * 1024 * 1024)
            .read_to_vec()?;
        Ok(OciReply {
            status,
            headers,
            body,
        })
    }

    pub fn get(&self, target: &str, cred: &Cred) -> OciReply {
        self.call("GET", target, cred, &[], Vec::new())
    }

    pub fn head(&self, target: &str, cred: &Cred) -> OciReply {
        self.call("HEAD", target, cred, &[], Vec::new())
    }

    /// `POST /v2/<repo>/blobs/uploads/`; the session's `Location`. Fails the test unless 202.
    pub fn start_upload(&self, repo: &str, cred: &Cred) -> String {
        let reply = self.call(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            cred,
            &[],
            Vec::new(),
        );
        assert_eq!(
            reply.status,
            202,
            "POST /v2/{repo}/blobs/uploads/: {}",
            reply.summary()
        );
        location(&reply)
    }

    /// A blob pushed as `POST` then a monolithic `PUT ?digest=`, as the CLI pushes, which must
    /// succeed; the blob's digest.
    pub fn push_blob(&self, repo: &str, blob: &[u8], cred: &Cred) -> String {
        let digest = sha256(blob);
        let session = self.start_upload(repo, cred);
        let reply = self.call(
            "PUT",
            &with_digest(&session, &digest),
            cred,
            &[("content-type", "application/octet-stream")],
            blob,
        );
        assert_eq!(
            reply.status,
            201,
            "pushing {digest} to {repo}: {}",
            reply.summary()
        );
        assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()));
        digest
    }

    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        manifest: &[u8],
        cred: &Cred,
    ) -> OciReply {
        self.call(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            cred,
            &[("content-type", media_type)],
            manifest,
        )
    }

    pub fn blob(&self, repo: &str, digest: &str, cred: &Cred) -> OciReply {
        self.get(&format!("/v2/{repo}/blobs/{digest}"), cred)
    }

    pub fn blob_status(&self, repo: &str, digest: &str, cred: &Cred) -> u16 {
        self.head(&format!("/v2/{repo}/blobs/{digest}"), cred)
            .status
    }

    pub fn manifest(&self, repo: &str, reference: &str, cred: &Cred) -> OciReply {
        self.call(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            cred,
            &[("accept", &format!("{OCI_MANIFEST}, {OCI_INDEX}"))],
            Vec::new(),
        )
    }

    /// The tags of `repo` (none when the repository is unknown).
    pub fn tags(&self, repo: &str, cred: &Cred) -> Vec<String> {
        let reply = self.get(&format!("/v2/{repo}/tags/list"), cred);
        match reply.status {
            200 => reply.json()["tags"]
                .as_array()
                .unwrap_or_else(|| panic!("tags/list of {repo}: {}", reply.summary()))
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            404 if reply.code().as_deref() == Some("NAME_UNKNOWN") => Vec::new(),
            _ => panic!("tags/list of {repo}: {}", reply.summary()),
        }
    }

    /// The manager's garbage collection ([`GC_ROUTE`]), with `body` as registryd's options.
    pub fn gc(&self, body: &str, cred: &Cred) -> OciReply {
        self.call(
            "POST",
            GC_ROUTE,
            cred,
            &[("content-type", "application/json")],
            body,
        )
    }
}

/// An HTTP/1.1 response read to the end of its connection.
fn parse_response(raw: &[u8]) -> Option<OciReply> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut rest = &raw[end + 4..];
    let is_chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if is_chunked {
        let mut body = Vec::new();
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?.trim(), 16)
                    .ok()?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break body;
            }
            body.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
    } else {
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(rest.len());
        rest.get(..length)?.to_vec()
    };
    Some(OciReply {
        status,
        headers,
        body,
    })
}

/// The `Location` of an answer; fails the test if there is none.
pub fn location(reply: &OciReply) -> String {
    reply
        .header("location")
        .unwrap_or_else(|| panic!("no Location: {:?} {}", reply.headers, reply.summary()))
        .to_owned()
}

/// `target` with `digest=<digest>` added to its query.
pub fn with_digest(target: &str, digest: &str) -> String {
    let separator = if target.contains('?') { '&' } else { '?' };
    format!("{target}{separator}digest={digest}")
}

/// The upload session id at the end of an upload `Location`'s path.
pub fn session_id(location: &str) -> String {
    let path = location.split('?').next().unwrap_or(location);
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

/// `sha256:<hex>` of `bytes`, by coreutils' `sha256sum` (fast in a debug build, and not the
/// code under test).
pub fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let output = std::thread::scope(|scope| {
        scope.spawn(move || stdin.write_all(bytes).expect("write to sha256sum"));
        child.wait_with_output().expect("sha256sum output")
    });
    let text = String::from_utf8_lossy(&output.stdout);
    let hex = text.split_whitespace().next().unwrap_or("");
    assert!(
        output.status.success() && hex.len() == 64,
        "sha256sum: {text}"
    );
    format!("sha256:{hex}")
}

/// Deterministic bytes that neither compress nor repeat: blob content for the tests.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An OCI image made here: gzipped tar layers, a config, and its manifest.
#[derive(Debug, Clone)]
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
    pub digest: String,
}

impl Image {
    /// One layer per entry of `layer_sizes`, each a tar of one file of that many random bytes,
    /// gzipped; different `seed`s give different images.
    pub fn generate(seed: u64, layer_sizes: &[usize]) -> Image {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, size) in layer_sizes.iter().enumerate() {
            let file = random_bytes(seed * 1000 + i as u64, *size);
            let tar = tar_one_file(&format!("layer{i}/data.bin"), &file);
            diff_ids.push(sha256(&tar));
            layers.push(gzip_stored(&tar));
        }
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"test.seed": seed.to_string()}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
        .to_string()
        .into_bytes();
        Image::assemble(config, layers)
    }

    fn assemble(config: Vec<u8>, layers: Vec<Vec<u8>>) -> Image {
        let config_digest = sha256(&config);
        let layer_digests: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
        let descriptors: Vec<(&str, usize)> = layer_digests
            .iter()
            .map(String::as_str)
            .zip(layers.iter().map(Vec::len))
            .collect();
        let manifest = image_manifest((&config_digest, config.len()), &descriptors);
        let digest = sha256(&manifest);
        Image {
            config,
            layers,
            manifest,
            config_digest,
            layer_digests,
            digest,
        }
    }

    /// Config then layers, with their digests.
    pub fn blobs(&self) -> Vec<(&str, &[u8])> {
        std::iter::once((self.config_digest.as_str(), self.config.as_slice()))
            .chain(
                self.layer_digests
                    .iter()
                    .map(String::as_str)
                    .zip(self.layers.iter().map(Vec::as_slice)),
            )
            .collect()
    }

    /// Pushes blobs and manifest over HTTP; fails the test on any refusal.
    pub fn push(&self, oci: &Oci, repo: &str, tag: &str, cred: &Cred) {
        for (_, blob) in self.blobs() {
            oci.push_blob(repo, blob, cred);
        }
        let reply = oci.push_manifest(repo, tag, OCI_MANIFEST, &self.manifest, cred);
        assert_eq!(
            reply.status,
            201,
            "manifest {repo}:{tag}: {}",
            reply.summary()
        );
        assert_eq!(
            reply.header("docker-content-digest"),
            Some(self.digest.as_str())
        );
    }

    /// Writes an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`) holding
    /// this image as `tag`, for `skopeo copy oci:<dir>:<tag>`.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).expect("create the layout's blobs/sha256");
        let manifest_digest = self.digest.as_str();
        for (digest, bytes) in self
            .blobs()
            .into_iter()
            .chain([(manifest_digest, self.manifest.as_slice())])
        {
            std::fs::write(blobs.join(hex(digest)), bytes).expect("write a layout blob");
        }
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": OCI_MANIFEST,
                "digest": self.digest,
                "size": self.manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(dir.join("index.json"), index.to_string()).expect("write index.json");
    }
}

/// An OCI image manifest of a config and gzipped layers, each given as (digest, size): the
/// digests need not be of anything pushed, nor the sizes right.
pub fn image_manifest(config: (&str, usize), layers: &[(&str, usize)]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|(digest, size)| json!({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": size}))
        .collect();
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.0, "size": config.1},
        "layers": layers,
    })
    .to_string()
    .into_bytes()
}

/// What an OCI image layout holds for `tag`: the manifest's digest and bytes, and every blob
/// it references, each checked against its name.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    pub digest: String,
    pub manifest: Vec<u8>,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
}

/// Reads `tag` from the OCI image layout in `dir`.
pub fn read_oci_layout(dir: &Path, tag: &str) -> LayoutImage {
    let index: Value = serde_json::from_slice(
        &std::fs::read(dir.join("index.json")).expect("read the layout's index.json"),
    )
    .expect("index.json is JSON");
    let entry = index["manifests"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        })
        .unwrap_or_else(|| panic!("no {tag} in {index}"));
    let digest = entry["digest"].as_str().expect("digest").to_owned();
    let read_blob = |digest: &str| {
        let bytes = std::fs::read(dir.join("blobs/sha256").join(hex(digest)))
            .unwrap_or_else(|e| panic!("blob {digest} of the layout: {e}"));
        assert_eq!(
            sha256(&bytes),
            digest,
            "a layout blob is not what it is named"
        );
        bytes
    };
    let manifest = read_blob(&digest);
    let parsed: Value = serde_json::from_slice(&manifest).expect("manifest is JSON");
    let config_digest = parsed["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_owned();
    read_blob(&config_digest);
    let layer_digests: Vec<String> = parsed["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest").to_owned())
        .collect();
    for layer in &layer_digests {
        read_blob(layer);
    }
    LayoutImage {
        digest,
        manifest,
        config_digest,
        layer_digests,
    }
}

/// Every file registryd keeps under `<data>/registry` (blobs, upload bytes, temporary
/// manifests), relative to it; its SQLite files aside.
pub fn registry_files(data_dir: &Path) -> Vec<String> {
    let root = data_dir.join("registry");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(&root) {
                let relative = relative.to_string_lossy().into_owned();
                if !relative.starts_with("registry.db") {
                    out.push(relative);
                }
            }
        }
    }
    out.sort();
    out
}

/// `POST /v1/releases` (as the admin) of a local stack with one worker per image reference
/// in `images`; the release.
pub fn create_release_with_images(api: &Api, images: &[&str]) -> Value {
    let resources: serde_json::Map<String, Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let id = format!("worker{i}");
            let resource = json!({
                "config": {"type": "worker", "id": id, "permissions": "execution", "links": [],
                           "triggers": [], "code": {"type": "image", "image": image}},
                "lifecycle": "live",
                "dependencies": [],
            });
            (id, resource)
        })
        .collect();
    let stack = json!({"id": "app", "resources": resources, "permissions": {"profiles": {}}});
    api.expect(
        &crate::api::Request::post(
            "/v1/releases",
            json!({"projectId": "default", "stack": {"local": stack}}),
        )
        .auth(api.admin()),
        201,
    )
}

/// The hex part of `sha256:<hex>`.
fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// A ustar archive of one regular file.
fn tar_one_file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let mut put = |offset: usize, value: &[u8]| {
        header[offset..offset + value.len()].copy_from_slice(value);
    };
    put(0, name.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", data.len()).as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

/// `data` in the gzip format with stored (uncompressed) deflate blocks: a real gzip stream,
/// which clients recognise as a compressed layer, made without a compressor.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let blocks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(65535).collect()
    };
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|n| {
            (0..8).fold(n, |c, _| {
                if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                }
            })
        })
        .collect();
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

// ---- outside clients ----

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives in the workspace")
        .to_path_buf()
}

/// Where `tests/run` installs the Python oras client: a virtual environment under `target/`.
fn oras_venv() -> PathBuf {
    workspace_root().join("target/registry-tools/venv")
}

/// The virtual environment's Python, which has `oras` (PyPI); fails the test, saying how to
/// install it, when it is not there.
pub fn oras_python() -> PathBuf {
    let python = oras_venv().join("bin/python");
    let has_oras = Command::new(&python)
        .args(["-c", "import oras.provider"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_oras,
        "the Python oras client is not installed in {}: run `tests/run`, or \
         `python3 -m venv {venv} && {venv}/bin/pip install oras==0.2.43`",
        python.display(),
        venv = oras_venv().display()
    );
    python
}

/// skopeo (Debian's package); fails the test, saying how to install it, when it is missing.
pub fn skopeo() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("skopeo"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("skopeo is not installed: `apt-get install -y skopeo` (as `tests/run` does)")
        })
}

/// An outside client that ran to its end.
#[derive(Debug)]
pub struct ToolRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` with its own home and temporary directory under `scratch`, so that no
/// credentials, policy or cache of the machine's user play a part; kills it after
/// [`TOOL_TIMEOUT`].
pub fn run_tool(mut command: Command, scratch: &Path) -> ToolRun {
    let home = scratch.join("home");
    let tmp = scratch.join("tmp");
    for dir in [&home, &tmp] {
        std::fs::create_dir_all(dir).expect("create a tool's scratch directory");
    }
    command
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .env("XDG_RUNTIME_DIR", &tmp)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let description = format!("{command:?}");
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = crate::wait_for(TOOL_TIMEOUT, || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{description} still running after {TOOL_TIMEOUT:?}\nstderr:\n{}",
            err.join().unwrap_or_default()
        );
    };
    ToolRun {
        success: status.success(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// `skopeo <args>` with no signature policy to consult (the images are made here), in a
/// scratch directory of its own.
pub fn run_skopeo(args: &[&str], scratch: &Path) -> ToolRun {
    let mut command = Command::new(skopeo());
    command.arg("--insecure-policy").args(args);
    run_tool(command, scratch)
}

/// `skopeo copy` of `from` to `to` (transport-qualified references); `creds` is
/// `user:token` for whichever side is the registry.
pub fn skopeo_copy(from: &str, to: &str, creds: &str, scratch: &Path) -> ToolRun {
    let mut args = vec!["copy", "--preserve-digests", "--retry-times", "0"];
    if from.starts_with("docker://") {
        args.extend(["--src-tls-verify=false", "--src-creds", creds]);
    }
    if to.starts_with("docker://") {
        args.extend(["--dest-tls-verify=false", "--dest-creds", creds]);
    }
    args.extend([from, to]);
    run_skopeo(&args, scratch)
}
