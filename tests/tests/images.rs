//! The image cache (`images` crate) against real registries: images built here are pushed to
//! the manager's `/v2` with skopeo and pulled back with a deployment's token into root
//! filesystems, which are checked file by file. Hostile layers, blobs that are not what their
//! digest says and the Bearer token exchange are served by a registry on a loopback port.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use e2e::api::{Api, NewDeployment};
use e2e::images::{Blob, Compression, Entry, Layer, OciImage, Route, StaticRegistry, TokenAuth};
use e2e::registry::{Oci, REPOSITORY, create_release_with_images};
use images::{Auth, Error, ImageConfig, ImageStore};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every path under `dir`, relative, sorted; symlinks are not followed.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            if let Ok(relative) = path.strip_prefix(dir) {
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn version(n: u32) -> ImageConfig {
    ImageConfig {
        entrypoint: vec!["/bin/tool".to_owned()],
        cmd: vec!["--serve".to_owned(), format!("v{n}")],
        working_dir: "/srv".to_owned(),
        env: vec!["PORT=8080".to_owned(), format!("VERSION={n}")],
        user: "1000:1000".to_owned(),
        exposed_ports: vec!["8080/tcp".to_owned()],
        labels: BTreeMap::from([("version".to_owned(), n.to_string())]),
    }
}

/// Three layers, one per compression, that exercise every kind of entry and both whiteouts.
fn layered_image(n: u32) -> OciImage {
    let base = Layer::new(
        Compression::Gzip,
        vec![
            Entry::dir("etc", 0o755),
            Entry::file("etc/keep", "keep v1\n", 0o644),
            Entry::file("etc/gone", "hidden by the next layer\n", 0o644),
            Entry::dir("data", 0o750),
            Entry::file("data/old", "old\n", 0o644),
            Entry::file("data/sub/deep", "deep\n", 0o644),
            Entry::file("bin/tool", "#!/bin/sh\necho tool\n", 0o755),
            Entry::dir("readonly", 0o555),
            Entry::file("readonly/first", "first\n", 0o444),
            Entry::dir("scratch", 0o755),
            Entry::file("scratch/x", "x\n", 0o644),
            Entry::Fifo {
                path: "run-fifo".to_owned(),
            },
        ],
    );
    let middle = Layer::new(
        Compression::Zstd,
        vec![
            Entry::whiteout("etc/gone"),
            Entry::file("data/new", "new\n", 0o600),
            Entry::opaque("data"),
            Entry::hard_link("bin/tool-link", "bin/tool"),
            Entry::symlink("etc/link", "keep"),
            Entry::symlink("etc/hostname-link", "/etc/hostname"),
            Entry::file("etc/keep", &format!("keep v{n}\n"), 0o600),
        ],
    );
    let top = Layer::new(
        Compression::None,
        vec![
            Entry::file("readonly/second", "second\n", 0o644),
            Entry::whiteout("scratch"),
            Entry::file("srv/version", &format!("{n}\n"), 0o644),
        ],
    );
    OciImage::build(&[base, middle, top], &version(n))
}

/// Every path of [`layered_image`]'s root filesystem.
const LAYERED_TREE: [&str; 14] = [
    "bin",
    "bin/tool",
    "bin/tool-link",
    "data",
    "data/new",
    "etc",
    "etc/hostname-link",
    "etc/keep",
    "etc/link",
    "readonly",
    "readonly/first",
    "readonly/second",
    "srv",
    "srv/version",
];

/// The store's image directories (`sha256/<hex>`) and its unfinished work (`tmp/*`).
fn store_contents(root: &Path) -> (Vec<String>, Vec<String>) {
    let names = |dir: PathBuf| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    (names(root.join("sha256")), names(root.join("tmp")))
}

#[test]
fn images_pushed_to_the_manager_unpack_into_cached_roots_with_every_entry_applied() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let host = oci.host().to_owned();
    let scratch = api.server().work_dir().join("images");
    let admin_creds = format!("token:{}", api.admin_token());
    let repo = format!("{REPOSITORY}/layered");
    let v1 = layered_image(1);
    let v2 = layered_image(2);
    v1.push(&host, &repo, "v1", &admin_creds, &scratch);
    v2.push(&host, &repo, "v2", &admin_creds, &scratch);
    create_release_with_images(
        &api,
        &[&format!("{host}/{repo}:v1"), &format!("{host}/{repo}:v2")],
    );
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let auth = Auth::basic("deployment", &deployment.token);

    let root = scratch.join("store");
    let store = ImageStore::open(&root).expect("open the store");
    let image = store
        .pull(&format!("{host}/{repo}:v1"), &auth)
        .expect("pull v1 with the deployment's token");
    assert_eq!(image.digest, v1.digest());
    assert_eq!(image.config_digest, v1.config.digest);
    let config = &image.config;
    assert_eq!(config.entrypoint, ["/bin/tool"]);
    assert_eq!(config.cmd, ["--serve", "v1"]);
    assert_eq!(config.working_dir, "/srv");
    assert_eq!(config.env, ["PORT=8080", "VERSION=1"]);
    assert_eq!(config.user, "1000:1000");
    assert_eq!(config.exposed_ports, ["8080/tcp"]);
    assert_eq!(config.labels.get("version").map(String::as_str), Some("1"));

    let rootfs = &image.rootfs;
    assert!(rootfs.starts_with(&root), "{}", rootfs.display());
    // An upper layer's file replaces the lower one, content and mode.
    assert_eq!(read(&rootfs.join("etc/keep")), "keep v1\n");
    assert_eq!(mode(&rootfs.join("etc/keep")), 0o600);
    assert_eq!(mode(&rootfs.join("bin/tool")), 0o755);
    assert_eq!(mode(&rootfs.join("data")), 0o750);
    // A read-only directory of a lower layer keeps its mode and gets an upper layer's file.
    assert_eq!(mode(&rootfs.join("readonly")), 0o555);
    assert_eq!(read(&rootfs.join("readonly/first")), "first\n");
    assert_eq!(mode(&rootfs.join("readonly/first")), 0o444);
    assert_eq!(read(&rootfs.join("readonly/second")), "second\n");
    // A directory implied by a file's path is made, traversable by everyone.
    assert_eq!(mode(&rootfs.join("srv")), 0o755);
    // Hard link: the same file.
    let tool = std::fs::metadata(rootfs.join("bin/tool")).expect("bin/tool");
    let link = std::fs::metadata(rootfs.join("bin/tool-link")).expect("bin/tool-link");
    assert_eq!((tool.dev(), tool.ino()), (link.dev(), link.ino()));
    // Symlinks are kept as they are, absolute ones included (they resolve inside the
    // container).
    assert_eq!(
        std::fs::read_link(rootfs.join("etc/link")).expect("etc/link"),
        Path::new("keep")
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("etc/hostname-link")).expect("etc/hostname-link"),
        Path::new("/etc/hostname")
    );
    // Whiteouts: a file, a directory, and an opaque directory that keeps only its own layer's
    // entries; no marker is left behind; the fifo is skipped.
    assert_eq!(tree(rootfs), LAYERED_TREE, "the root filesystem of v1");

    // A re-pull reuses the root: what was added to it is still there.
    let sentinel = rootfs.join("srv/sentinel");
    std::fs::write(&sentinel, "left by the test").expect("write the sentinel");
    let again = store
        .pull(&format!("{host}/{repo}:v1"), &auth)
        .expect("pull v1 again");
    assert_eq!(again, image);
    let by_digest = store
        .pull(&format!("{host}/{repo}@{}", v1.digest()), &auth)
        .expect("pull v1 by digest");
    assert_eq!(by_digest, image);
    assert!(sentinel.exists(), "v1 was unpacked again");

    // Another tag of other content gets a root of its own, v1's untouched.
    let second = store
        .pull(&format!("{host}/{repo}:v2"), &auth)
        .expect("pull v2");
    assert_eq!(second.digest, v2.digest());
    assert_ne!(second.rootfs, image.rootfs);
    assert_eq!(read(&second.rootfs.join("etc/keep")), "keep v2\n");
    assert_eq!(second.config.env, ["PORT=8080", "VERSION=2"]);
    assert_eq!(read(&image.rootfs.join("etc/keep")), "keep v1\n");
    let mut listed: Vec<String> = store
        .list()
        .expect("list")
        .into_iter()
        .map(|i| i.digest)
        .collect();
    listed.sort();
    let mut both = vec![v1.digest().to_owned(), v2.digest().to_owned()];
    both.sort();
    assert_eq!(listed, both);

    // One store per directory.
    assert!(
        matches!(ImageStore::open(&root), Err(Error::Locked { .. })),
        "a second store opened on the same directory"
    );

    // Garbage collection keeps what it is told to, read-only directories notwithstanding.
    let removed = store.remove_unused(&[v2.digest()]).expect("remove unused");
    assert_eq!(removed, [v1.digest()]);
    assert!(!image.rootfs.exists(), "v1's root is still there");
    assert_eq!(store.get(v1.digest()).expect("get v1"), None);
    assert_eq!(
        store.get(v2.digest()).expect("get v2"),
        Some(second.clone())
    );
    assert_eq!(
        store_contents(&root),
        (vec![v2.digest()["sha256:".len()..].to_owned()], vec![])
    );
    drop(store);

    // Reopened, the cache is still there.
    let store = ImageStore::open(&root).expect("reopen the store");
    assert_eq!(store.get(v2.digest()).expect("get v2"), Some(second));
}

/// A victim directory outside the store, and what it held before.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Outside {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("secret"), "do not touch").expect("write the secret");
        Outside { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn assert_untouched(&self, case: &str) {
        assert_eq!(
            tree(self.path()),
            ["secret"],
            "{case}: something was written outside"
        );
        assert_eq!(read(&self.path().join("secret")), "do not touch", "{case}");
        assert_eq!(mode(&self.path().join("secret")), 0o644, "{case}");
    }
}

#[test]
fn layers_that_reach_outside_the_root_are_refused_and_write_nothing_there() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let host = oci.host().to_owned();
    let scratch = api.server().work_dir().join("images");
    let admin_creds = format!("token:{}", api.admin_token());
    let auth = Auth::basic("token", api.admin_token());
    let outside = Outside::new();
    let victim = outside.path().display().to_string();
    // The store's root sits a known depth below `/`, so `..`s of a symlink can aim at the
    // victim directory.
    let root = scratch.join("store");
    let climb = "../".repeat(root.components().count() + 3);
    let relative_victim = format!("{climb}{}", victim.trim_start_matches('/'));
    let file = |path: &str| Entry::file(path, "pwned\n", 0o666);
    let cases: Vec<(&str, Vec<Vec<Entry>>, String)> = vec![
        (
            "dot-dot",
            vec![vec![file(&format!("{relative_victim}/x"))]],
            format!("{relative_victim}/x"),
        ),
        (
            "absolute",
            vec![vec![file(&format!("{victim}/x"))]],
            format!("{victim}/x"),
        ),
        (
            "symlink-then-write",
            vec![vec![Entry::symlink("x", &victim), file("x/passwd")]],
            "x/passwd".to_owned(),
        ),
        (
            "symlink-then-write-in-the-next-layer",
            vec![vec![Entry::symlink("x", &victim)], vec![file("x/secret")]],
            "x/secret".to_owned(),
        ),
        (
            "relative-symlink-out",
            vec![vec![Entry::symlink("up", &relative_victim), file("up/x")]],
            "up/x".to_owned(),
        ),
        (
            "hard-link-out",
            vec![vec![Entry::hard_link(
                "stolen",
                &format!("{relative_victim}/secret"),
            )]],
            "stolen".to_owned(),
        ),
        (
            "hard-link-absolute",
            vec![vec![Entry::hard_link(
                "stolen",
                &format!("{victim}/secret"),
            )]],
            "stolen".to_owned(),
        ),
        (
            "hard-link-through-symlink",
            vec![vec![
                Entry::symlink("v", &victim),
                Entry::hard_link("stolen", "v/secret"),
            ]],
            "stolen".to_owned(),
        ),
        (
            "whiteout-through-symlink",
            vec![
                vec![Entry::symlink("v", &victim)],
                vec![Entry::whiteout("v/secret")],
            ],
            "v/.wh.secret".to_owned(),
        ),
    ];
    let store = ImageStore::open(&root).expect("open the store");
    for (i, (case, layers, entry)) in cases.into_iter().enumerate() {
        let layers: Vec<Layer> = layers
            .into_iter()
            .map(|entries| Layer::new(Compression::Gzip, entries))
            .collect();
        let image = OciImage::build(&layers, &version(1));
        let repo = format!("{REPOSITORY}/escape");
        let tag = format!("case{i}");
        image.push(&host, &repo, &tag, &admin_creds, &scratch);
        match store.pull(&format!("{host}/{repo}:{tag}"), &auth) {
            Err(Error::UnsafeEntry {
                entry: named,
                layer,
                ..
            }) => {
                assert_eq!(named, entry, "{case}: the refusal names the entry");
                assert!(
                    image.layers.iter().any(|l| l.digest == layer),
                    "{case}: layer {layer}"
                );
            }
            other => panic!("{case}: expected UnsafeEntry, got {other:?}"),
        }
        outside.assert_untouched(case);
        assert_eq!(
            store_contents(&root),
            (vec![], vec![]),
            "{case}: a refused image left files"
        );
    }
}

#[test]
fn blobs_that_are_not_what_their_digest_says_are_refused() {
    let image = OciImage::build(
        &[Layer::new(
            Compression::Gzip,
            vec![Entry::file("a", "a\n", 0o644)],
        )],
        &version(1),
    );
    let layer = image.layers[0].digest.clone();
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open the store");
    let tamper = |path: String, body: Vec<u8>| {
        let mut routes = StaticRegistry::routes_of(&image, "app", "v1");
        routes.get_mut(&path).expect("a served route").body = body;
        routes
    };
    let blob_route = |digest: &str| format!("/v2/app/blobs/{digest}");
    let mut flipped = image.layers[0].bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let mut longer = image.layers[0].bytes.clone();
    longer.extend_from_slice(b"more");
    let mut other_config = image.config.bytes.clone();
    other_config[0] = b' ';
    let cases = [
        (
            "layer of other bytes",
            tamper(blob_route(&layer), flipped),
            layer.clone(),
        ),
        (
            "layer longer than its descriptor",
            tamper(blob_route(&layer), longer),
            layer.clone(),
        ),
        (
            "layer cut short",
            tamper(blob_route(&layer), image.layers[0].bytes[..10].to_vec()),
            layer.clone(),
        ),
        (
            "config of other bytes",
            tamper(blob_route(&image.config.digest), other_config),
            image.config.digest.clone(),
        ),
    ];
    for (case, routes, digest) in cases {
        let registry = StaticRegistry::serve(routes, None);
        match store.pull(&format!("{}/app:v1", registry.host()), &Auth::None) {
            Err(Error::BlobMismatch { digest: named, .. }) => assert_eq!(named, digest, "{case}"),
            other => panic!("{case}: expected BlobMismatch, got {other:?}"),
        }
        assert_eq!(store_contents(store_dir.path()), (vec![], vec![]), "{case}");
    }

    // A manifest asked for by digest must be that digest.
    let other = OciImage::build(
        &[Layer::new(
            Compression::Gzip,
            vec![Entry::file("b", "b\n", 0o644)],
        )],
        &version(2),
    );
    let mut routes = StaticRegistry::routes_of(&image, "app", "v1");
    routes.insert(
        format!("/v2/app/manifests/{}", image.digest()),
        Route {
            content_type: e2e::registry::OCI_MANIFEST.to_owned(),
            body: other.manifest.bytes.clone(),
        },
    );
    let registry = StaticRegistry::serve(routes, None);
    match store.pull(
        &format!("{}/app@{}", registry.host(), image.digest()),
        &Auth::None,
    ) {
        Err(Error::BlobMismatch { digest, .. }) => assert_eq!(digest, image.digest()),
        other => panic!("a manifest of another digest: expected BlobMismatch, got {other:?}"),
    }

    // The untampered image pulls: the refusals above were about the tampering.
    let registry = StaticRegistry::serve(StaticRegistry::routes_of(&image, "app", "v1"), None);
    let pulled = store
        .pull(&format!("{}/app:v1", registry.host()), &Auth::None)
        .expect("pull");
    assert_eq!(read(&pulled.rootfs.join("a")), "a\n");
}

#[test]
fn a_registry_that_asks_for_a_bearer_token_gets_one_for_the_basic_credentials() {
    let image = OciImage::build(
        &[Layer::new(
            Compression::Zstd,
            vec![Entry::file("hello", "hello\n", 0o644)],
        )],
        &version(1),
    );
    let token = TokenAuth {
        user: "puller".to_owned(),
        password: "pull-secret".to_owned(),
        token: "issued-token".to_owned(),
    };
    let registry =
        StaticRegistry::serve(StaticRegistry::routes_of(&image, "app", "v1"), Some(token));
    let reference = format!("{}/app:v1", registry.host());
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open the store");
    for (case, auth) in [
        ("no credentials", Auth::None),
        ("wrong password", Auth::basic("puller", "nope")),
    ] {
        match store.pull(&reference, &auth) {
            Err(Error::Unauthorized { .. }) => {}
            other => panic!("{case}: expected Unauthorized, got {other:?}"),
        }
    }
    let pulled = store
        .pull(&reference, &Auth::basic("puller", "pull-secret"))
        .expect("pull with a token");
    assert_eq!(pulled.digest, image.digest());
    assert_eq!(read(&pulled.rootfs.join("hello")), "hello\n");
}

#[test]
fn an_index_resolves_to_this_machines_platform() {
    let ours = OciImage::build(
        &[Layer::new(
            Compression::Gzip,
            vec![Entry::file("arch", "ours\n", 0o644)],
        )],
        &version(1),
    );
    let theirs = OciImage::build(
        &[Layer::new(
            Compression::Gzip,
            vec![Entry::file("arch", "theirs\n", 0o644)],
        )],
        &version(2),
    );
    let entry = |image: &OciImage, architecture: &str| {
        let mut descriptor = image.manifest.descriptor();
        descriptor["platform"] = serde_json::json!({"os": "linux", "architecture": architecture});
        descriptor
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": e2e::registry::OCI_INDEX,
        "manifests": [entry(&theirs, "s390x"), entry(&ours, images::host_architecture())],
    });
    let index = Blob::new(e2e::registry::OCI_INDEX, index.to_string().into_bytes());
    let mut routes = StaticRegistry::routes_of(&ours, "app", "ours");
    routes.extend(StaticRegistry::routes_of(&theirs, "app", "theirs"));
    routes.insert(
        "/v2/app/manifests/multi".to_owned(),
        Route {
            content_type: index.media_type.clone(),
            body: index.bytes.clone(),
        },
    );
    let registry = StaticRegistry::serve(routes, None);
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open the store");
    let pulled = store
        .pull(&format!("{}/app:multi", registry.host()), &Auth::None)
        .expect("pull the index");
    assert_eq!(pulled.digest, ours.digest());
    assert_eq!(read(&pulled.rootfs.join("arch")), "ours\n");
}

/// What [`store_as_the_unprivileged_user`] does: `pull <store> <reference>` or
/// `remove-all <store>`.
const CHILD_TASK: &str = "IMAGES_TEST_CHILD_TASK";
const CHILD_TEST: &str = "store_as_the_unprivileged_user";

/// Run by [`an_unprivileged_store_unpacks_and_removes_read_only_directories`] in a process
/// of its own, as the unprivileged user.
#[test]
#[ignore = "run as the unprivileged user by an_unprivileged_store_unpacks_and_removes_read_only_directories"]
fn store_as_the_unprivileged_user() {
    let task = std::env::var(CHILD_TASK).expect("the task, from the parent test");
    let words: Vec<&str> = task.split(' ').collect();
    let store = ImageStore::open(Path::new(words[1])).expect("open the store");
    match words[0] {
        "pull" => {
            let image = store.pull(words[2], &Auth::None).expect("pull");
            println!("ROOTFS={}", image.rootfs.display());
        }
        "remove-all" => {
            store.remove_unused(&[]).expect("remove every image");
        }
        other => panic!("unknown task {other}"),
    }
}

/// Runs [`store_as_the_unprivileged_user`] with `task`, as the unprivileged user; its stdout.
fn as_unprivileged_user(task: &str) -> String {
    let prefix = e2e::server::unprivileged_prefix();
    let exe = std::env::current_exe().expect("the test binary");
    let mut command = match prefix.split_first() {
        Some((program, args)) => {
            let mut command = std::process::Command::new(program);
            command.args(args).arg(&exe);
            command
        }
        None => std::process::Command::new(&exe),
    };
    command
        .args([
            "--exact",
            CHILD_TEST,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_TASK, task);
    let output = command.output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{task}: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn an_unprivileged_store_unpacks_and_removes_read_only_directories() {
    let image = layered_image(1);
    let registry = StaticRegistry::serve(StaticRegistry::routes_of(&image, "app", "v1"), None);
    let dir = e2e::server::temp_dir();
    let root = dir.path().join("store");
    std::fs::create_dir(&root).expect("create the store's directory");
    let uid = if e2e::server::running_as_root() {
        e2e::server::UNPRIVILEGED_UID
    } else {
        nix::unistd::getuid().as_raw()
    };
    std::os::unix::fs::chown(&root, Some(uid), Some(uid)).expect("give the store away");

    let stdout = as_unprivileged_user(&format!(
        "pull {} {}/app:v1",
        root.display(),
        registry.host()
    ));
    let rootfs = stdout
        .lines()
        .find_map(|line| line.split_once("ROOTFS=").map(|(_, path)| path))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no ROOTFS= in {stdout}"));
    assert_eq!(tree(&rootfs), LAYERED_TREE);
    assert_eq!(mode(&rootfs.join("readonly")), 0o555);
    assert_eq!(mode(&rootfs.join("readonly/first")), 0o444);
    assert_eq!(read(&rootfs.join("readonly/second")), "second\n");
    for path in LAYERED_TREE {
        let owner = std::fs::symlink_metadata(rootfs.join(path))
            .expect(path)
            .uid();
        assert_eq!(owner, uid, "{path}: the store's user owns what it unpacked");
    }

    as_unprivileged_user(&format!("remove-all {}", root.display()));
    assert_eq!(store_contents(&root), (vec![], vec![]));
}

#[test]
fn an_opaque_directory_replaces_a_lower_symlink_and_a_recreated_directory_is_new() {
    let lower = Layer::new(
        Compression::Gzip,
        vec![
            Entry::dir("usr", 0o755),
            Entry::dir("usr/lib", 0o755),
            Entry::file("usr/lib/libc", "libc\n", 0o644),
            Entry::symlink("lib", "usr/lib"),
            Entry::dir("old", 0o700),
            Entry::file("old/f", "f\n", 0o644),
        ],
    );
    let upper = Layer::new(
        Compression::Gzip,
        vec![
            Entry::opaque("lib"),
            Entry::file("lib/own", "own\n", 0o644),
            Entry::whiteout("old"),
            Entry::file("old/new", "new\n", 0o644),
        ],
    );
    let image = OciImage::build(&[lower, upper], &version(1));
    let registry = StaticRegistry::serve(StaticRegistry::routes_of(&image, "app", "v1"), None);
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open the store");
    let pulled = store
        .pull(&format!("{}/app:v1", registry.host()), &Auth::None)
        .expect("pull");
    let rootfs = &pulled.rootfs;
    // The symlink's target belongs to the lower layer: the opaque directory does not reach it.
    assert_eq!(read(&rootfs.join("usr/lib/libc")), "libc\n");
    assert_eq!(
        tree(rootfs),
        [
            "lib",
            "lib/own",
            "old",
            "old/new",
            "usr",
            "usr/lib",
            "usr/lib/libc"
        ]
    );
    assert!(
        std::fs::symlink_metadata(rootfs.join("lib"))
            .expect("lib")
            .is_dir()
    );
    // `old` was removed, then made again for `old/new`: it does not keep the removed one's mode.
    assert_eq!(mode(&rootfs.join("old")), 0o755);
}

#[test]
fn docker_schema_2_lists_and_manifests_are_pulled() {
    let oci = OciImage::build(
        &[Layer::new(
            Compression::Gzip,
            vec![Entry::file("docker", "yes\n", 0o644)],
        )],
        &version(1),
    );
    let config = Blob::new(
        "application/vnd.docker.container.image.v1+json",
        oci.config.bytes.clone(),
    );
    let layer = Blob::new(
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        oci.layers[0].bytes.clone(),
    );
    let manifest_type = "application/vnd.docker.distribution.manifest.v2+json";
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    });
    let manifest = Blob::new(manifest_type, manifest.to_string().into_bytes());
    let list_type = "application/vnd.docker.distribution.manifest.list.v2+json";
    let mut entry = manifest.descriptor();
    entry["platform"] =
        serde_json::json!({"os": "linux", "architecture": images::host_architecture()});
    let list =
        serde_json::json!({"schemaVersion": 2, "mediaType": list_type, "manifests": [entry]});
    let list = Blob::new(list_type, list.to_string().into_bytes());
    let route = |blob: &Blob| Route {
        content_type: blob.media_type.clone(),
        body: blob.bytes.clone(),
    };
    let routes = BTreeMap::from([
        ("/v2/app/manifests/latest".to_owned(), route(&list)),
        (
            format!("/v2/app/manifests/{}", manifest.digest),
            route(&manifest),
        ),
        (format!("/v2/app/blobs/{}", config.digest), route(&config)),
        (format!("/v2/app/blobs/{}", layer.digest), route(&layer)),
    ]);
    let registry = StaticRegistry::serve(routes, None);
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open the store");
    // No tag: `latest`.
    let pulled = store
        .pull(&format!("{}/app", registry.host()), &Auth::None)
        .expect("pull the list");
    assert_eq!(pulled.digest, manifest.digest);
    assert_eq!(read(&pulled.rootfs.join("docker")), "yes\n");
    assert_eq!(pulled.config.cmd, ["--serve", "v1"]);
}
