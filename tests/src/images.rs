//! OCI images made in the test: layers of files, directories, symlinks, hard links and
//! whiteouts (gzip, zstd or plain tar), an image config, the manifest, written as an OCI
//! image layout and pushed with skopeo as a user would push it. Also [`StaticRegistry`], a
//! registry on a loopback port that serves fixed answers: what no honest registry serves
//! (a blob that is not what its digest says) and the Bearer token exchange.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use images::ImageConfig;
use serde_json::{Value, json};

use crate::registry::{OCI_CONFIG, OCI_MANIFEST, ToolRun, sha256, skopeo_copy};

/// One entry of a layer. Paths are written into the tar exactly as given, `..` and leading
/// `/` included, so that a test can build the layers a hostile image would carry.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    HardLink {
        path: String,
        target: String,
    },
    /// `<dir>/.wh.<name>`: hides `path` of the layers below.
    Whiteout {
        path: String,
    },
    /// `<dir>/.wh..wh..opq`: hides everything the layers below put in `dir`.
    Opaque {
        dir: String,
    },
    Fifo {
        path: String,
    },
}

impl Entry {
    pub fn dir(path: &str, mode: u32) -> Entry {
        Entry::Dir {
            path: path.to_owned(),
            mode,
        }
    }
    pub fn file(path: &str, data: &str, mode: u32) -> Entry {
        Entry::File {
            path: path.to_owned(),
            data: data.as_bytes().to_vec(),
            mode,
        }
    }
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::Symlink {
            path: path.to_owned(),
            target: target.to_owned(),
        }
    }
    pub fn hard_link(path: &str, target: &str) -> Entry {
        Entry::HardLink {
            path: path.to_owned(),
            target: target.to_owned(),
        }
    }
    pub fn whiteout(path: &str) -> Entry {
        Entry::Whiteout {
            path: path.to_owned(),
        }
    }
    pub fn opaque(dir: &str) -> Entry {
        Entry::Opaque {
            dir: dir.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub entries: Vec<Entry>,
    pub compression: Compression,
}

impl Layer {
    pub fn new(compression: Compression, entries: Vec<Entry>) -> Layer {
        Layer {
            entries,
            compression,
        }
    }

    /// The layer's tar, before compression.
    pub fn tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            let (kind, path, link, mode, data): (tar::EntryType, String, &str, u32, &[u8]) =
                match entry {
                    Entry::Dir { path, mode } => {
                        (tar::EntryType::Directory, path.clone(), "", *mode, &[])
                    }
                    Entry::File { path, data, mode } => {
                        (tar::EntryType::Regular, path.clone(), "", *mode, data)
                    }
                    Entry::Symlink { path, target } => {
                        (tar::EntryType::Symlink, path.clone(), target, 0o777, &[])
                    }
                    Entry::HardLink { path, target } => {
                        (tar::EntryType::Link, path.clone(), target, 0o644, &[])
                    }
                    Entry::Whiteout { path } => {
                        let (dir, name) = path
                            .rsplit_once('/')
                            .map_or(("", path.as_str()), |(d, n)| (d, n));
                        let marker = if dir.is_empty() {
                            format!(".wh.{name}")
                        } else {
                            format!("{dir}/.wh.{name}")
                        };
                        (tar::EntryType::Regular, marker, "", 0o644, &[])
                    }
                    Entry::Opaque { dir } => (
                        tar::EntryType::Regular,
                        format!("{dir}/.wh..wh..opq"),
                        "",
                        0o644,
                        &[],
                    ),
                    Entry::Fifo { path } => (tar::EntryType::Fifo, path.clone(), "", 0o644, &[]),
                };
            let mut header = tar::Header::new_gnu();
            // Written byte for byte: the tar crate's setters refuse `..` and absolute paths,
            // which is what some tests are about.
            let old = header.as_old_mut();
            assert!(
                path.len() < old.name.len() && link.len() < old.linkname.len(),
                "{path}: name too long for the test's tar"
            );
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1_700_000_000);
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data).expect("append to the tar");
        }
        builder.into_inner().expect("finish the tar")
    }

    /// The layer's blob: the tar, compressed as asked.
    pub fn blob(&self) -> Vec<u8> {
        let tar = self.tar();
        match self.compression {
            Compression::None => tar,
            Compression::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(&tar).expect("gzip");
                encoder.finish().expect("gzip")
            }
            Compression::Zstd => zstd::encode_all(tar.as_slice(), 3).expect("zstd"),
        }
    }
}

/// The image config blob of an image run as `run` says, whose layers' tars have `diff_ids`.
fn config_json(run: &ImageConfig, diff_ids: &[String]) -> Value {
    let ports: serde_json::Map<String, Value> = run
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    json!({
        "architecture": images::host_architecture(),
        "os": "linux",
        "config": {
            "Entrypoint": run.entrypoint,
            "Cmd": run.cmd,
            "WorkingDir": run.working_dir,
            "Env": run.env,
            "User": run.user,
            "ExposedPorts": ports,
            "Labels": run.labels,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
}

/// A blob and its descriptor's fields.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_owned(),
            digest: sha256(&bytes),
            bytes,
        }
    }

    pub fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// An image built here: config, layers and the manifest that lists them.
#[derive(Debug, Clone)]
pub struct OciImage {
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Blob,
}

impl OciImage {
    pub fn build(layers: &[Layer], run: &ImageConfig) -> OciImage {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256(&l.tar())).collect();
        let layers: Vec<Blob> = layers
            .iter()
            .map(|l| Blob::new(l.compression.media_type(), l.blob()))
            .collect();
        let config = Blob::new(
            OCI_CONFIG,
            config_json(run, &diff_ids).to_string().into_bytes(),
        );
        OciImage::assemble(config, layers)
    }

    /// An image of these blobs as they are, whatever they hold.
    pub fn assemble(config: Blob, layers: Vec<Blob>) -> OciImage {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        let manifest = Blob::new(OCI_MANIFEST, manifest.to_string().into_bytes());
        OciImage {
            config,
            layers,
            manifest,
        }
    }

    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// Every blob: config, layers, manifest.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config)
            .chain(&self.layers)
            .chain([&self.manifest])
    }

    /// Writes the image as `tag` of an OCI image layout in `dir`.
    pub fn write_layout(&self, dir: &Path, tag: &str) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).expect("create the layout's blobs/sha256");
        for blob in self.blobs() {
            let hex = blob.digest.trim_start_matches("sha256:");
            std::fs::write(blobs.join(hex), &blob.bytes).expect("write a layout blob");
        }
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        let mut descriptor = self.manifest.descriptor();
        descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let index = json!({"schemaVersion": 2, "manifests": [descriptor]});
        std::fs::write(dir.join("index.json"), index.to_string()).expect("write index.json");
    }

    /// `skopeo copy` of the image to `docker://<host>/<repo>:<tag>` with `creds`
    /// (`user:token`); fails the test unless it succeeds.
    pub fn push(&self, host: &str, repo: &str, tag: &str, creds: &str, scratch: &Path) {
        let run = self.try_push(host, repo, tag, creds, scratch);
        assert!(
            run.success,
            "skopeo copy to {host}/{repo}:{tag}:\n{}",
            run.stderr
        );
    }

    pub fn try_push(
        &self,
        host: &str,
        repo: &str,
        tag: &str,
        creds: &str,
        scratch: &Path,
    ) -> ToolRun {
        let layout = scratch.join(format!(
            "layout-{}",
            &self.digest()["sha256:".len()..][..16]
        ));
        self.write_layout(&layout, tag);
        skopeo_copy(
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{host}/{repo}:{tag}"),
            creds,
            scratch,
        )
    }
}

/// One fixed answer of a [`StaticRegistry`].
#[derive(Debug, Clone)]
pub struct Route {
    pub content_type: String,
    pub body: Vec<u8>,
}

/// A registry that serves fixed bodies by path on a loopback port, for what the manager's
/// registry never does. With a token, every `/v2/` route wants `Bearer <token>` and answers
/// a `401` challenge naming `/token`, which gives the token for Basic `user:password`.
#[derive(Debug)]
pub struct StaticRegistry {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub user: String,
    pub password: String,
    pub token: String,
}

impl StaticRegistry {
    pub fn serve(routes: BTreeMap<String, Route>, auth: Option<TokenAuth>) -> StaticRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = answer(stream, port, &routes, auth.as_ref());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        StaticRegistry {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:<port>`, as a reference names the registry.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Routes that serve `image` as `repo:tag` (and by digest).
    pub fn routes_of(image: &OciImage, repo: &str, tag: &str) -> BTreeMap<String, Route> {
        let mut routes = BTreeMap::new();
        let manifest = Route {
            content_type: OCI_MANIFEST.to_owned(),
            body: image.manifest.bytes.clone(),
        };
        routes.insert(format!("/v2/{repo}/manifests/{tag}"), manifest.clone());
        routes.insert(format!("/v2/{repo}/manifests/{}", image.digest()), manifest);
        for blob in std::iter::once(&image.config).chain(&image.layers) {
            routes.insert(
                format!("/v2/{repo}/blobs/{}", blob.digest),
                Route {
                    content_type: "application/octet-stream".to_owned(),
                    body: blob.bytes.clone(),
                },
            );
        }
        routes
    }
}

impl Drop for StaticRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request from `stream` and answers it; one request per connection.
fn answer(
    stream: TcpStream,
    port: u16,
    routes: &BTreeMap<String, Route>,
    auth: Option<&TokenAuth>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let (path, _query) = target.split_once('?').unwrap_or((&target, ""));
    let (status, headers, body): (u16, Vec<(String, String)>, Vec<u8>) = match auth {
        Some(auth) if path == "/token" => {
            let expected = format!(
                "Basic {}",
                crate::api::base64(format!("{}:{}", auth.user, auth.password).as_bytes())
            );
            if authorization.as_deref() == Some(expected.as_str()) {
                (
                    200,
                    vec![],
                    json!({"token": auth.token}).to_string().into_bytes(),
                )
            } else {
                (401, vec![], b"{}".to_vec())
            }
        }
        Some(auth)
            if authorization.as_deref() != Some(format!("Bearer {}", auth.token).as_str()) =>
        {
            let challenge = format!(
                "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"static\",scope=\"repository:any:pull\""
            );
            (
                401,
                vec![("WWW-Authenticate".to_owned(), challenge)],
                b"{}".to_vec(),
            )
        }
        _ => match routes.get(path) {
            Some(route) => (
                200,
                vec![("Content-Type".to_owned(), route.content_type.clone())],
                route.body.clone(),
            ),
            None => (
                404,
                vec![],
                b"{\"errors\":[{\"code\":\"NOT_FOUND\"}]}".to_vec(),
            ),
        },
    };
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(&body)?;
    out.flush()
}
