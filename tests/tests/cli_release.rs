//! `alien release` as a vendor runs it: images where a build left them (an OCI image layout,
//! a `docker save` archive, another registry) pushed to the manager's registry and released,
//! and a deployment running them, waited for with `alien deployments wait` and answering
//! `alien commands invoke`; a second release of the same images sends no blob again; a
//! push whose connection breaks in the middle of a layer goes on where the registry stands;
//! a source that cannot be used fails the command before anything is released, saying why.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use client::push::CHUNK;
use e2e::api::{Api, Request};
use e2e::deployments::{LOOPS, Leftovers, endpoint, get, onboard, version, wait_running};
use e2e::images::{Blob, Compression, OciImage, StaticRegistry, TokenAuth};
use e2e::proxy::{Cut, Logged, Proxy};
use e2e::registry::{Cred, OCI_CONFIG, Oci, random_bytes};
use e2e::server::Options;
use e2e::{Finished, Invocation};
use serde_json::{Value, json};

/// How long one `alien release` may take.
const RUN: Duration = Duration::from_secs(180);
const MIB: u64 = 1 << 20;
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// `alien release --stack <stack> [--json]` against the manager at `url` with the admin key.
fn release(api: &Api, url: &str, stack: &Path, json: bool) -> Finished {
    let mut args = vec![
        "release".to_owned(),
        "--stack".to_owned(),
        stack.display().to_string(),
    ];
    if json {
        args.push("--json".to_owned());
    }
    Invocation::client(url, api.admin_token(), args).run(RUN)
}

/// [`release`] with `--json`, which must succeed; its answer.
fn released(api: &Api, url: &str, stack: &Path) -> Value {
    let run = release(api, url, stack, true);
    assert_eq!(
        run.code(),
        Some(0),
        "alien release failed\nstdout:\n{}\nstderr:\n{}\nserver stderr:\n{}",
        run.stdout,
        run.stderr,
        api.server().stderr()
    );
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("--json printed no JSON ({e}):\n{}", run.stdout))
}

/// Writes `stacks` as the stack file in `dir`.
fn stack_file(dir: &Path, stacks: &Value) -> PathBuf {
    let path = dir.join("stacks.json");
    std::fs::write(&path, stacks.to_string()).expect("write the stack file");
    path
}

/// A container `web` running `web` (port 8080) and a command-enabled worker `api` running
/// `api`.
fn web_and_api(web: &str, api: &str) -> Value {
    let mut stack = e2e::deployments::web_stack(web);
    stack["resources"]["api"] = json!({
        "config": {
            "type": "worker", "id": "api", "permissions": "execution",
            "code": {"type": "image", "image": api},
            "links": [], "triggers": [], "commandsEnabled": true
        },
        "lifecycle": "live",
        "dependencies": []
    });
    stack
}

/// The image a release's local stack gives `resource`.
fn image_of(api: &Api, release_id: &str, resource: &str) -> String {
    let release = api.expect(
        &Request::get(format!("/v1/releases/{release_id}")).auth(api.admin()),
        200,
    );
    release["stack"]["local"]["resources"][resource]["config"]["code"]["image"]
        .as_str()
        .unwrap_or_else(|| panic!("no image for {resource}: {release:#}"))
        .to_owned()
}

/// The requests that sent blob bytes or opened, asked about or closed upload sessions.
fn uploads(log: &[Logged]) -> Vec<&Logged> {
    log.iter()
        .filter(|r| r.path.contains("/blobs/uploads/"))
        .collect()
}

/// `image` as `docker save` writes it: `manifest.json`, the config as `<hex>.json`, and
/// each layer as `<id>/layer.tar`, here a symbolic link to the layer's bytes under
/// `blobs/sha256/` (where Docker 25 and later keep them).
fn write_docker_archive(image: &OciImage, path: &Path, tag: &str) {
    let file = File::create(path).expect("create the archive");
    let mut builder = tar::Builder::new(file);
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        builder
            .append_data(&mut header, name, bytes)
            .expect("append to the archive");
    };
    let hex = |digest: &str| digest.trim_start_matches("sha256:").to_owned();
    let config = format!("{}.json", hex(&image.config.digest));
    add(&config, &image.config.bytes);
    let mut layers = Vec::new();
    for layer in &image.layers {
        add(
            &format!("blobs/sha256/{}", hex(&layer.digest)),
            &layer.bytes,
        );
        layers.push(format!("{}/layer.tar", &hex(&layer.digest)[..16]));
    }
    let manifest = json!([{"Config": config, "RepoTags": [tag], "Layers": layers}]);
    add("manifest.json", manifest.to_string().as_bytes());
    for layer in &image.layers {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_mtime(1_700_000_000);
        builder
            .append_link(
                &mut header,
                format!("{}/layer.tar", &hex(&layer.digest)[..16]),
                format!("../blobs/sha256/{}", hex(&layer.digest)),
            )
            .expect("append a link to the archive");
    }
    builder.finish().expect("finish the archive");
}

#[test]
fn images_from_a_layout_and_a_docker_archive_run_answer_a_command_and_a_second_release_sends_no_blob_again()
 {
    let api = Api::start_with(Options {
        deployment_loops: true,
        config: Some(LOOPS.into()),
        ..Options::default()
    });
    let proxy = Proxy::start(api.server().port(), None);
    let host = proxy.url().trim_start_matches("http://").to_owned();
    let (web_version, api_version) = (version("web"), version("api"));
    let leftovers = Leftovers::of(&api, &[&web_version, &api_version]);
    let dir = tempfile::tempdir().expect("temp dir");
    let web = e2e::workloads::image("alien-test-web", &web_version, &[]);
    web.write_layout(&dir.path().join("web-layout"), "v1");
    let worker =
        e2e::workloads::image_with(Compression::None, "alien-test-worker", &api_version, &[]);
    write_docker_archive(&worker, &dir.path().join("api.tar"), "api:v1");
    let stacks = stack_file(
        dir.path(),
        &json!({"local": web_and_api("oci:web-layout:v1", "docker-archive:api.tar:api:v1")}),
    );

    let answer = released(&api, &proxy.url(), &stacks);
    let first = answer["releaseId"].as_str().unwrap_or_default().to_owned();
    assert!(first.starts_with("rel_"), "{answer:#}");
    assert_eq!(
        answer,
        json!({"success": true, "releaseId": first, "project": "default",
               "workspace": "default", "platforms": ["local"]})
    );
    let blobs = web.layers.len() + worker.layers.len() + 2;
    let posts = uploads(&proxy.log())
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, blobs, "{:#?}", proxy.log());
    let web_image = image_of(&api, &first, "web");
    assert_eq!(
        web_image,
        format!("{host}/artifacts/default/web@{}", web.digest())
    );
    let api_image = image_of(&api, &first, "api");
    assert!(
        api_image.starts_with(&format!("{host}/artifacts/default/api@sha256:")),
        "{api_image}"
    );

    // As a vendor goes on: wait for the customer's deployment, then invoke a command on it.
    let deployment = onboard(&api);
    let client = |args: &[&str]| {
        Invocation::client(&api.base_url(), api.admin_token(), args.iter().copied()).run(RUN)
    };
    let waited = client(&[
        "deployments",
        "wait",
        &deployment.id,
        "--timeout",
        "120",
        "--json",
    ]);
    assert_eq!(waited.code(), Some(0), "{}", waited.stderr);
    let waited: Value = serde_json::from_str(&waited.stdout).expect("the record as JSON");
    assert_eq!(waited["currentReleaseId"], first.as_str(), "{waited:#}");
    let params = json!({"from": "alien commands invoke"});
    let invoked = client(&[
        "commands",
        "invoke",
        "--deployment",
        &deployment.id,
        "--command",
        "echo",
        "--params",
        &params.to_string(),
        "--target",
        "api",
    ]);
    assert_eq!(invoked.code(), Some(0), "{}", invoked.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&invoked.stdout).expect("the answer as JSON"),
        json!({"echo": params, "version": api_version})
    );
    let running = wait_running(&api, &deployment.id, &first);
    assert_eq!(
        get(&endpoint(&running, "web")),
        Some((200, web_version.clone()))
    );
    assert_eq!(
        get(&endpoint(&running, "api")),
        Some((200, api_version.clone()))
    );

    let before = proxy.log().len();
    let second = released(&api, &proxy.url(), &stacks)["releaseId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let log = proxy.log();
    let again = &log[before..];
    assert_eq!(uploads(again), Vec::<&Logged>::new(), "{again:#?}");
    let heads = again.iter().filter(|r| r.method == "HEAD").count();
    assert_eq!(heads, blobs, "{again:#?}");
    assert_ne!(second, first);
    assert_eq!(image_of(&api, &second, "web"), web_image);
    assert_eq!(image_of(&api, &second, "api"), api_image);
    let running = wait_running(&api, &deployment.id, &second);
    assert_eq!(get(&endpoint(&running, "api")), Some((200, api_version)));

    leftovers.delete(&api, &deployment.id);
}

#[test]
fn a_push_broken_in_the_middle_of_a_layer_goes_on_where_the_registry_stands() {
    let api = Api::start();
    let tail = 24 * MIB;
    let layer = Blob::new(
        LAYER_TAR,
        random_bytes(7, usize::try_from(CHUNK + tail).expect("size")),
    );
    let config = Blob::new(
        OCI_CONFIG,
        json!({"architecture": images::host_architecture(), "os": "linux",
               "rootfs": {"type": "layers", "diff_ids": [layer.digest]}})
        .to_string()
        .into_bytes(),
    );
    let image = OciImage::assemble(config, vec![layer.clone()]);
    let dir = tempfile::tempdir().expect("temp dir");
    image.write_layout(&dir.path().join("big"), "v1");
    let stacks = stack_file(
        dir.path(),
        &json!({"local": e2e::deployments::web_stack("oci:big:v1")}),
    );
    // In the second chunk, 8 MiB after its start.
    let proxy = Proxy::start(
        api.server().port(),
        Some(Cut {
            method: "PATCH",
            after: CHUNK + 8 * MIB,
        }),
    );

    let run = release(&api, &proxy.url(), &stacks, false);
    assert_eq!(
        run.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains("resuming at 64.00 MiB"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("Release rel_"), "{}", run.stdout);
    let log = proxy.log();
    let patches: Vec<(u64, bool)> = log
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| (r.body, r.cut))
        .collect();
    assert_eq!(
        patches,
        [(CHUNK, false), (8 * MIB, true), (tail, false)],
        "{log:#?}"
    );
    let session_reads = log
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(session_reads, 1, "{log:#?}");
    let sessions = log
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(sessions, 2, "one per blob, none started over: {log:#?}");
    let oci = Oci::new(&api);
    let admin = Cred::basic("token", api.admin_token());
    let stored = oci.blob("artifacts/default/web", &layer.digest, &admin);
    assert_eq!(stored.status, 200, "{}", stored.summary());
    assert_eq!(stored.body.len() as u64, CHUNK + tail);
}

#[test]
fn an_image_in_another_registry_is_copied_with_its_digest_and_mounted_where_it_is_used_again() {
    let api = Api::start();
    let proxy = Proxy::start(api.server().port(), None);
    let image = e2e::workloads::image("alien-test-web", "v1", &[]);
    let registry = StaticRegistry::serve(StaticRegistry::routes_of(&image, "team/app", "v1"), None);
    let dir = tempfile::tempdir().expect("temp dir");
    let source = format!("docker://{}/team/app:v1", registry.host());
    let stacks = stack_file(dir.path(), &json!({"local": web_and_api(&source, &source)}));
    let answer = released(&api, &proxy.url(), &stacks);
    let id = answer["releaseId"].as_str().unwrap_or_default();
    let host = proxy.url().trim_start_matches("http://").to_owned();
    let oci = Oci::new(&api);
    let admin = Cred::basic("token", api.admin_token());
    for repository in ["web", "api"] {
        assert_eq!(
            image_of(&api, id, repository),
            format!("{host}/artifacts/default/{repository}@{}", image.digest())
        );
        let repository = format!("artifacts/default/{repository}");
        let manifest = oci.manifest(&repository, image.digest(), &admin);
        assert_eq!(manifest.status, 200, "{}", manifest.summary());
        assert_eq!(manifest.body, image.manifest.bytes);
        for blob in std::iter::once(&image.config).chain(&image.layers) {
            assert_eq!(
                oci.blob_status(&repository, &blob.digest, &admin),
                200,
                "{repository} {}",
                blob.digest
            );
        }
    }
    // One repository got the bytes; the other had them mounted (a POST each, nothing sent).
    let log = proxy.log();
    let sessions = |repository: &str| -> Vec<&Logged> {
        uploads(&log)
            .into_iter()
            .filter(|r| {
                r.path
                    .starts_with(&format!("/v2/artifacts/default/{repository}/"))
            })
            .collect()
    };
    let (web, api_uploads) = (sessions("web"), sessions("api"));
    let mounted = if web.iter().all(|r| r.method == "POST" && r.body == 0) {
        web
    } else {
        api_uploads
    };
    assert_eq!(mounted.len(), image.layers.len() + 1, "{log:#?}");
    assert!(
        mounted.iter().all(|r| r.method == "POST" && r.body == 0),
        "{log:#?}"
    );
}

#[test]
fn a_source_that_cannot_be_used_fails_the_release_saying_why() {
    let api = Api::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let one = e2e::workloads::image("alien-test-web", "v1", &[]);
    let two = e2e::workloads::image("alien-test-web", "v2", &[]);
    let layout = dir.path().join("two");
    one.write_layout(&layout, "v1");
    let first: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("read index.json"))
            .expect("index.json");
    two.write_layout(&layout, "v2");
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("read index.json"))
            .expect("index.json");
    index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(first["manifests"][0].clone());
    std::fs::write(layout.join("index.json"), index.to_string()).expect("write index.json");
    std::fs::write(dir.path().join("notes.txt"), "not an archive\n").expect("write");
    let guarded = StaticRegistry::serve(
        StaticRegistry::routes_of(&one, "team/app", "v1"),
        Some(TokenAuth {
            user: "vendor".into(),
            password: "secret".into(),
            token: "t0k3n".into(),
        }),
    );

    let cases: [(String, i32, &[&str]); 6] = [
        (
            "oci:missing".into(),
            2,
            &["cannot read oci:", "missing/index.json", "OCI image layout"],
        ),
        (
            "oci:two".into(),
            2,
            &["holds 2 images", "oci:DIR:TAG", "v2, v1"],
        ),
        (
            "oci:two:v3".into(),
            2,
            &["no image is tagged \"v3\"", "v2, v1"],
        ),
        (
            "docker-archive:notes.txt".into(),
            2,
            &["notes.txt", "docker save"],
        ),
        (
            format!("docker://{}/team/app:v1", guarded.host()),
            1,
            &["cannot read docker://", "refused the credentials"],
        ),
        (
            "docker://Not/Valid".into(),
            2,
            &["the image of web in the local stack", "Not/Valid"],
        ),
    ];
    for (source, code, fragments) in cases {
        let stacks = stack_file(
            dir.path(),
            &json!({"local": e2e::deployments::web_stack(&source)}),
        );
        let run = release(&api, &api.base_url(), &stacks, false);
        run.assert_failed(&source, code, fragments);
    }
    let releases = api.expect(&Request::get("/v1/releases").auth(api.admin()), 200);
    assert_eq!(releases["items"], json!([]), "{releases:#}");
}

#[test]
fn images_named_by_reference_are_released_as_they_are() {
    let api = Api::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let reference = format!(
        "{}/artifacts/default/web@sha256:{}",
        Oci::new(&api).host(),
        "a".repeat(64)
    );
    let stacks = stack_file(
        dir.path(),
        &json!({"local": e2e::deployments::web_stack(&reference)}),
    );
    let run = release(&api, &api.base_url(), &stacks, false);
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.stderr, "", "nothing was pushed, so nothing is reported");
    let id = run
        .stdout
        .split_whitespace()
        .find(|word| word.starts_with("rel_"))
        .unwrap_or_else(|| panic!("no release id in {}", run.stdout));
    assert_eq!(image_of(&api, id, "web"), reference);
}
