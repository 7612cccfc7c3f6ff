//! Real registry clients against the manager's public port with the admin token, as
//! `alien release` and users push: skopeo (Debian) copies multi-layer images in and back out
//! with every digest unchanged; the Python oras client (PyPI) pushes an artifact and a
//! referrer of it, which the referrers API finds. Both must be installed (`tests/run` does):
//! without them these tests fail and say how to install them.

use std::process::Command;

use e2e::api::{Api, Request};
use e2e::registry::{
    Cred, Image, OCI_INDEX, OCI_MANIFEST, Oci, REPOSITORY, oras_python, read_oci_layout,
    run_skopeo, run_tool, skopeo_copy,
};
use serde_json::{Value, json};

#[test]
fn skopeo_copies_multi_layer_images_in_and_out_with_the_same_digests() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let creds = format!("token:{}", api.admin_token());
    let scratch = api.server().work_dir().join("skopeo");
    let host = oci.host();
    // Layers of a few sizes: one over skopeo's chunk size, one tiny; the same image again in
    // a nested repository, where skopeo finds its layers known (HEAD or mount).
    let first = Image::generate(1, &[3 << 20, 300 * 1024, 4096, 17]);
    let second = Image::generate(2, &[512 * 1024, 1024]);
    let pushes = [
        (&first, REPOSITORY.to_owned(), "v1"),
        (&first, format!("{REPOSITORY}/team/app"), "v1"),
        (&second, format!("{REPOSITORY}/team/app"), "v2"),
        (
            &second,
            format!("{REPOSITORY}/team/app/deeper/still"),
            "latest",
        ),
    ];
    for (i, (image, repo, tag)) in pushes.iter().enumerate() {
        let source = scratch.join(format!("source-{i}"));
        image.write_oci_layout(&source, tag);
        let reference = format!("docker://{host}/{repo}:{tag}");
        let pushed = skopeo_copy(
            &format!("oci:{}:{tag}", source.display()),
            &reference,
            &creds,
            &scratch,
        );
        assert!(
            pushed.success,
            "skopeo copy to {reference}:\n{}",
            pushed.stderr
        );

        // What the registry serves is exactly what was pushed.
        let raw = run_skopeo(
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                &creds,
                &reference,
            ],
            &scratch,
        );
        assert!(
            raw.success,
            "skopeo inspect --raw {reference}:\n{}",
            raw.stderr
        );
        assert!(
            raw.stdout.as_bytes() == image.manifest.as_slice(),
            "{reference}: the manifest changed on the way:\n{}",
            raw.stdout
        );
        let manifest = oci.manifest(repo, tag, &admin);
        assert_eq!(manifest.status, 200, "{reference}: {}", manifest.summary());
        assert_eq!(
            manifest.header("docker-content-digest"),
            Some(image.digest.as_str())
        );
        for (digest, bytes) in image.blobs() {
            let blob = oci.blob(repo, digest, &admin);
            assert!(
                blob.status == 200 && blob.body == bytes,
                "{repo}: blob {digest}: {}",
                blob.status
            );
        }

        // And it comes back out unchanged, by tag and by digest.
        for (suffix, name) in [
            (format!(":{tag}"), "by-tag"),
            (format!("@{}", image.digest), "by-digest"),
        ] {
            let back = scratch.join(format!("back-{i}-{name}"));
            let pulled = skopeo_copy(
                &format!("docker://{host}/{repo}{suffix}"),
                &format!("oci:{}:out", back.display()),
                &creds,
                &scratch,
            );
            assert!(
                pulled.success,
                "skopeo copy from {repo}{suffix}:\n{}",
                pulled.stderr
            );
            let got = read_oci_layout(&back, "out");
            assert_eq!(got.digest, image.digest, "{repo}{suffix}");
            assert!(
                got.manifest == image.manifest,
                "{repo}{suffix}: manifest bytes"
            );
            assert_eq!(got.config_digest, image.config_digest, "{repo}{suffix}");
            assert_eq!(got.layer_digests, image.layer_digests, "{repo}{suffix}");
        }
    }

    // Nested names are repositories of their own: each lists its own tags only.
    let tags = |repo: &str| {
        let mut tags = oci.tags(repo, &admin);
        tags.sort();
        tags
    };
    assert!(tags(REPOSITORY).contains(&"v1".to_owned()));
    assert!(!tags(REPOSITORY).contains(&"v2".to_owned()));
    assert_eq!(tags(&format!("{REPOSITORY}/team/app")), ["v1", "v2"]);
    assert_eq!(
        tags(&format!("{REPOSITORY}/team/app/deeper/still")),
        ["latest"]
    );
}

/// Run by the venv's Python: pushes an artifact, then a second whose manifest has the first
/// as its `subject`, with the oras client (Basic auth after the registry's 401 challenge,
/// plain HTTP); pulls the first back. Prints what it did as JSON.
const ORAS_SCRIPT: &str = r#"
import json, os, sys
import oras.defaults, oras.oci, oras.provider

registry, repository, work = sys.argv[1:4]
os.chdir(work)
client = oras.provider.Registry(hostname=registry, insecure=True, auth_backend="basic")
target = f"{registry}/{repository}"

def write(name, text):
    with open(name, "w") as f:
        f.write(text)

write("payload.txt", "an artifact pushed by oras\n")
write("config.json", "{}")
pushed = client.push(
    target=f"{target}:v1",
    files=["payload.txt:application/vnd.example.payload.v1"],
    manifest_config="config.json:application/vnd.example.artifact.config.v1+json",
    quiet=True,
)
subject_digest = pushed.headers["Docker-Content-Digest"]
manifest = client.do_request(
    f"http://{registry}/v2/{repository}/manifests/{subject_digest}", "GET",
    headers={"Accept": oras.defaults.default_manifest_media_type},
)
subject = oras.oci.Subject(
    mediaType=oras.defaults.default_manifest_media_type,
    digest=subject_digest,
    size=len(manifest.content),
)

write("sbom.json", '{"spdxVersion":"SPDX-2.3"}')
write("sbom-config.json", "{}")
referrer = client.push(
    target=f"{target}:sbom",
    files=["sbom.json:application/spdx+json"],
    manifest_config="sbom-config.json:application/vnd.example.sbom.v1+json",
    subject=subject,
    quiet=True,
)

os.makedirs("pulled", exist_ok=True)
files = client.pull(target=f"{target}:v1", outdir="pulled")
print(json.dumps({
    "pushStatus": pushed.status_code,
    "subject": subject_digest,
    "subjectStatus": manifest.status_code,
    "referrerStatus": referrer.status_code,
    "referrer": referrer.headers.get("Docker-Content-Digest"),
    "ociSubject": referrer.headers.get("OCI-Subject"),
    "pulled": {os.path.basename(f): open(f).read() for f in files},
}))
"#;

const SBOM: &str = "application/vnd.example.sbom.v1+json";

#[test]
fn oras_pushes_an_artifact_with_a_subject_that_the_referrers_api_finds() {
    let python = oras_python();
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let repo = format!("{REPOSITORY}/oras/app");
    let scratch = api.server().work_dir().join("oras");
    let work = scratch.join("work");
    std::fs::create_dir_all(&work).expect("create oras's working directory");
    let script = scratch.join("push.py");
    std::fs::write(&script, ORAS_SCRIPT).expect("write the oras script");

    let mut command = Command::new(&python);
    command
        .arg(&script)
        .arg(oci.host())
        .arg(&repo)
        .arg(&work)
        .env("ORAS_USER", "token")
        .env("ORAS_PASS", api.admin_token());
    let run = run_tool(command, &scratch);
    assert!(
        run.success,
        "the oras script failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    let done: Value = serde_json::from_str(run.stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("oras script output ({e}):\n{}\n{}", run.stdout, run.stderr));
    assert_eq!(done["pushStatus"], 201, "{done}");
    assert_eq!(done["subjectStatus"], 200, "{done}");
    assert_eq!(done["referrerStatus"], 201, "{done}");
    assert_eq!(
        done["pulled"],
        json!({"payload.txt": "an artifact pushed by oras\n"}),
        "oras pulled the artifact back: {done}"
    );
    let subject = done["subject"].as_str().expect("subject digest");
    let referrer = done["referrer"].as_str().expect("referrer digest");
    assert_eq!(
        done["ociSubject"], subject,
        "OCI-Subject on the referrer's PUT: {done}"
    );

    // The referrers API, through the manager, lists it with its artifact type (the config's
    // media type: the oras client sets no artifactType of its own).
    let listed = oci.get(&format!("/v2/{repo}/referrers/{subject}"), &admin);
    assert_eq!(listed.status, 200, "{}", listed.summary());
    assert_eq!(listed.header("content-type"), Some(OCI_INDEX));
    let index = listed.json();
    assert_eq!(index["mediaType"], OCI_INDEX, "{index}");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(manifests[0]["digest"], referrer, "{index}");
    assert_eq!(manifests[0]["mediaType"], OCI_MANIFEST, "{index}");
    assert_eq!(manifests[0]["artifactType"], SBOM, "{index}");

    let filtered = oci.get(
        &format!(
            "/v2/{repo}/referrers/{subject}?artifactType={}",
            SBOM.replace('/', "%2F")
        ),
        &admin,
    );
    assert_eq!(filtered.status, 200, "{}", filtered.summary());
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(filtered.json()["manifests"][0]["digest"], referrer);
    let other = oci.get(
        &format!("/v2/{repo}/referrers/{subject}?artifactType=application%2Fvnd.example.other"),
        &admin,
    );
    assert_eq!(other.status, 200, "{}", other.summary());
    assert_eq!(other.json()["manifests"], json!([]), "{}", other.summary());

    // The referrer names its subject, and the subject has no referrers in another repository.
    let pushed = oci.manifest(&repo, referrer, &admin).json();
    assert_eq!(pushed["subject"]["digest"], subject, "{pushed}");
    let elsewhere = oci.get(&format!("/v2/{REPOSITORY}/referrers/{subject}"), &admin);
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.summary());
    assert_eq!(elsewhere.json()["manifests"], json!([]));
}

/// `alien build` asks `GET /v1/build-config` where to push, and that repository takes a push.
#[test]
fn build_config_names_the_repository_that_takes_pushes() {
    let api = Api::start();
    let config = api.expect(
        &Request::get("/v1/build-config?platform=local").auth(api.admin()),
        200,
    );
    assert_eq!(config, json!({"repositoryName": REPOSITORY}));
    let oci = Oci::new(&api);
    let admin = Cred::basic("token", api.admin_token());
    let image = Image::generate(3, &[2048, 512]);
    let repo = config["repositoryName"].as_str().expect("repositoryName");
    image.push(&oci, repo, "api-k3j9x0qz", &admin);
    assert_eq!(
        oci.manifest(repo, "api-k3j9x0qz", &admin).body,
        image.manifest
    );
}
