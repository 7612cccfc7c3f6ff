//! Bad input through the manager's `/v2`, as a table: each request gets its distribution-spec
//! error (status and code), and leaves nothing behind: no blob, no tag, no upload bytes, no
//! file under `<data>/registry` that was not there before.

use e2e::api::Api;
use e2e::registry::{
    Cred, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Oci, OciReply, REPOSITORY, image_manifest,
    registry_files, session_id, sha256, with_digest,
};
use serde_json::json;

/// What must hold once a case has run, besides its answer.
#[derive(Debug, Clone)]
enum After {
    /// These blobs are unknown to these repositories.
    NoBlob(Vec<(String, String)>),
    /// This tag is not in this repository's list.
    NoTag(String, String),
    /// The upload session the case used has ended.
    SessionGone,
    /// The upload session the case used acknowledges no byte.
    SessionEmpty,
    /// The other repository's session is untouched.
    ForeignSessionUntouched,
}

#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    method: &'static str,
    /// `{session}`: a new upload session of [`REPO`] made for the case; `{foreign}`: the id
    /// of a session of [`FOREIGN`].
    path: String,
    /// `?digest=` (or `&digest=`) added once the path is known.
    digest: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Send the body without a `Content-Length` (chunked), as a streaming client does.
    chunked: bool,
    /// Read the answer while the body is still being sent: the server may refuse it early.
    early: bool,
    status: u16,
    code: &'static str,
    after: Vec<After>,
}

fn case(name: &'static str, method: &'static str, path: impl Into<String>) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        digest: None,
        headers: Vec::new(),
        body: Vec::new(),
        chunked: false,
        early: false,
        status: 0,
        code: "",
        after: Vec::new(),
    }
}

impl Case {
    fn digest(mut self, digest: &str) -> Case {
        self.digest = Some(digest.to_owned());
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Case {
        self.body = body.into();
        self
    }
    fn chunked(mut self) -> Case {
        self.chunked = true;
        self
    }
    fn early(mut self) -> Case {
        self.early = true;
        self
    }
    fn error(mut self, status: u16, code: &'static str) -> Case {
        self.status = status;
        self.code = code;
        self
    }
    fn no_blob(self, repo: &str, blob: &[u8]) -> Case {
        self.no_digest(repo, &sha256(blob))
    }
    fn no_digest(mut self, repo: &str, digest: &str) -> Case {
        match self
            .after
            .iter_mut()
            .find(|a| matches!(a, After::NoBlob(_)))
        {
            Some(After::NoBlob(list)) => list.push((repo.to_owned(), digest.to_owned())),
            _ => self
                .after
                .push(After::NoBlob(vec![(repo.to_owned(), digest.to_owned())])),
        }
        self
    }
    fn no_tag(mut self, repo: &str, tag: &str) -> Case {
        self.after
            .push(After::NoTag(repo.to_owned(), tag.to_owned()));
        self
    }
    fn then(mut self, after: After) -> Case {
        self.after.push(after);
        self
    }
}

const REPO: &str = "artifacts/default/input";
const FOREIGN: &str = "artifacts/default/input-other";

fn cases(config: &[u8], layer: &[u8]) -> Vec<Case> {
    let body = b"the bytes actually sent".to_vec();
    let other = b"the bytes the digest is of".to_vec();
    let d_other = sha256(&other);
    let d_layer = sha256(layer);
    let missing = b"a layer never pushed".to_vec();
    let config_digest = sha256(config);
    let config = (config_digest.as_str(), config.len());
    let dangling = image_manifest(config, &[(&sha256(&missing), missing.len())]);
    let wrong_size = image_manifest(config, &[(&d_layer, layer.len() + 1)]);
    let good = image_manifest(config, &[(&d_layer, layer.len())]);
    let big = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.0, "size": config.1},
        "layers": [],
        "annotations": {"pad": "x".repeat(4 * 1024 * 1024)},
    })
    .to_string()
    .into_bytes();
    let broken = b"{\"schemaVersion\":2,\"layers\":[".to_vec();
    let v2 = |rest: &str| format!("/v2/{REPO}/{rest}");

    vec![
        // Digests.
        case(
            "single POST, digest of other bytes",
            "POST",
            v2(&format!("blobs/uploads/?digest={d_other}")),
        )
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .error(400, "DIGEST_INVALID")
        .no_blob(REPO, &body)
        .no_digest(REPO, &d_other),
        case("monolithic PUT, digest of other bytes", "PUT", "{session}")
            .digest(&d_other)
            .header("content-type", "application/octet-stream")
            .body(body.clone())
            .error(400, "DIGEST_INVALID")
            .no_blob(REPO, &body)
            .no_digest(REPO, &d_other)
            .then(After::SessionGone),
        case("streamed PUT, digest of other bytes", "PUT", "{session}")
            .digest(&d_other)
            .body(body.clone())
            .chunked()
            .error(400, "DIGEST_INVALID")
            .no_blob(REPO, &body)
            .then(After::SessionGone),
        case("PUT, malformed digest", "PUT", "{session}")
            .digest("sha256:not-hex")
            .body(body.clone())
            .error(400, "DIGEST_INVALID")
            .no_blob(REPO, &body)
            .then(After::SessionGone),
        case("PUT, unsupported algorithm", "PUT", "{session}")
            .digest("md5:d41d8cd98f00b204e9800998ecf8427e")
            .body(body.clone())
            .error(400, "DIGEST_INVALID")
            .no_blob(REPO, &body)
            .then(After::SessionGone),
        case("PUT without a digest", "PUT", "{session}")
            .body(body.clone())
            .error(400, "DIGEST_INVALID")
            .no_blob(REPO, &body)
            .then(After::SessionGone),
        case("GET, malformed digest", "GET", v2("blobs/sha256:xyz")).error(400, "DIGEST_INVALID"),
        // Sizes.
        case(
            "PATCH, Content-Range longer than the body",
            "PATCH",
            "{session}",
        )
        .header("content-range", "0-99")
        .body(body.clone())
        .error(400, "SIZE_INVALID")
        .no_blob(REPO, &body)
        .then(After::SessionEmpty),
        case(
            "PUT, Content-Range longer than the body",
            "PUT",
            "{session}",
        )
        .digest(&sha256(&body))
        .header("content-range", format!("0-{}", body.len() + 10))
        .body(body.clone())
        .error(400, "SIZE_INVALID")
        .no_blob(REPO, &body)
        .then(After::SessionGone),
        case(
            "manifest, layer size not the blob's",
            "PUT",
            v2("manifests/wrong-size"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(wrong_size.clone())
        .error(400, "MANIFEST_INVALID")
        .no_tag(REPO, "wrong-size")
        .no_blob(REPO, &wrong_size),
        // Names.
        case(
            "upload, .. in the name",
            "POST",
            format!(
                "/v2/{REPOSITORY}/../escape/blobs/uploads/?digest={}",
                sha256(&body)
            ),
        )
        .body(body.clone())
        .error(400, "NAME_INVALID")
        .no_blob(REPO, &body),
        case(
            "manifest, .. in the name",
            "PUT",
            format!("/v2/{REPO}/../input/manifests/dotdot"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(good.clone())
        .error(400, "NAME_INVALID")
        .no_tag(REPO, "dotdot")
        .no_blob(REPO, &good),
        case(
            "read, .. in the name",
            "GET",
            format!("/v2/{REPO}/../input/blobs/{d_layer}"),
        )
        .error(400, "NAME_INVALID"),
        case(
            "upload, uppercase name",
            "POST",
            format!(
                "/v2/{REPOSITORY}/Input/blobs/uploads/?digest={}",
                sha256(&body)
            ),
        )
        .body(body.clone())
        .error(400, "NAME_INVALID")
        .no_blob(REPO, &body),
        case(
            "manifest, uppercase name",
            "PUT",
            format!("/v2/{REPOSITORY}/INPUT/manifests/upper"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(good.clone())
        .error(400, "NAME_INVALID")
        .no_tag(REPO, "upper")
        .no_blob(REPO, &good),
        // Manifests.
        case("malformed manifest JSON", "PUT", v2("manifests/broken"))
            .header("content-type", OCI_MANIFEST)
            .body(broken.clone())
            .error(400, "MANIFEST_INVALID")
            .no_tag(REPO, "broken")
            .no_blob(REPO, &broken),
        case(
            "manifest not of its content type",
            "PUT",
            v2("manifests/mismatch"),
        )
        .header("content-type", OCI_INDEX)
        .body(good.clone())
        .error(400, "MANIFEST_INVALID")
        .no_tag(REPO, "mismatch")
        .no_blob(REPO, &good),
        case(
            "manifest referencing a missing blob",
            "PUT",
            v2("manifests/dangling"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(dangling.clone())
        .error(400, "MANIFEST_BLOB_UNKNOWN")
        .no_tag(REPO, "dangling")
        .no_blob(REPO, &dangling)
        .no_blob(REPO, &missing),
        case(
            "manifest pushed under another digest",
            "PUT",
            v2(&format!("manifests/{d_other}")),
        )
        .header("content-type", OCI_MANIFEST)
        .body(good.clone())
        .error(400, "DIGEST_INVALID")
        .no_digest(REPO, &d_other)
        .no_blob(REPO, &good),
        case("manifest over 4 MiB", "PUT", v2("manifests/big"))
            .header("content-type", OCI_MANIFEST)
            .body(big.clone())
            .early()
            .error(413, "MANIFEST_INVALID")
            .no_tag(REPO, "big")
            .no_blob(REPO, &big),
        case(
            "manifest over 4 MiB, streamed",
            "PUT",
            v2("manifests/big-streamed"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(big.clone())
        .chunked()
        .error(413, "MANIFEST_INVALID")
        .no_tag(REPO, "big-streamed")
        .no_blob(REPO, &big),
        // An upload session belongs to the repository that started it.
        case(
            "PUT to another repository's session",
            "PUT",
            v2("blobs/uploads/{foreign}"),
        )
        .digest(&sha256(&body))
        .body(body.clone())
        .error(404, "BLOB_UPLOAD_UNKNOWN")
        .no_blob(REPO, &body)
        .no_blob(FOREIGN, &body)
        .then(After::ForeignSessionUntouched),
        case(
            "PATCH to another repository's session",
            "PATCH",
            v2("blobs/uploads/{foreign}"),
        )
        .header("content-range", format!("0-{}", body.len() - 1))
        .body(body.clone())
        .error(404, "BLOB_UPLOAD_UNKNOWN")
        .then(After::ForeignSessionUntouched),
        case(
            "status of another repository's session",
            "GET",
            v2("blobs/uploads/{foreign}"),
        )
        .error(404, "BLOB_UPLOAD_UNKNOWN")
        .then(After::ForeignSessionUntouched),
        case(
            "cancel another repository's session",
            "DELETE",
            v2("blobs/uploads/{foreign}"),
        )
        .error(404, "BLOB_UPLOAD_UNKNOWN")
        .then(After::ForeignSessionUntouched),
    ]
}

/// The path part of a `Location` (the server is the one the client talks to).
fn path_of(location: &str) -> String {
    match location.find("/v2/") {
        Some(at) => location[at..].to_owned(),
        None => location.to_owned(),
    }
}

#[test]
fn bad_input_gets_its_spec_error_and_leaves_nothing_behind() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let config = b"{}".to_vec();
    let layer = b"a layer that is there".to_vec();
    oci.push_blob(REPO, &config, &admin);
    oci.push_blob(REPO, &layer, &admin);
    let foreign = path_of(&oci.start_upload(FOREIGN, &admin));
    let foreign_id = session_id(&foreign);
    let before = registry_files(api.server().data_dir());
    let tags_before = oci.tags(REPO, &admin);

    let mut failures = Vec::new();
    for c in cases(&config, &layer) {
        let session = if c.path.contains("{session}") {
            path_of(&oci.start_upload(REPO, &admin))
        } else {
            String::new()
        };
        let path = c
            .path
            .replace("{session}", &session)
            .replace("{foreign}", &foreign_id);
        let path = match &c.digest {
            Some(digest) => with_digest(&path, digest),
            None => path,
        };
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = if c.early {
            oci.call_reading_early(c.method, &path, &admin, &headers, &c.body, c.chunked)
        } else if c.chunked {
            oci.call_streaming(
                c.method,
                &path,
                &admin,
                &headers,
                std::io::Cursor::new(c.body.clone()),
            )
            .unwrap_or_else(|e| panic!("{}: {} {path}: no answer: {e}", c.name, c.method))
        } else {
            oci.call(c.method, &path, &admin, &headers, c.body.clone())
        };
        let mut fail =
            |what: String| failures.push(format!("{}: {} {path}: {what}", c.name, c.method));
        if reply.status != c.status || reply.code().as_deref() != Some(c.code) {
            fail(format!(
                "want {} {}, got {}",
                c.status,
                c.code,
                reply.summary()
            ));
        }
        for after in &c.after {
            check_after(&oci, &admin, after, &session, &foreign, &mut fail);
        }
        if !session.is_empty() {
            // Whatever the case left of its session goes, so that the files compare below.
            oci.call("DELETE", &session, &admin, &[], Vec::new());
        }
    }
    oci.call("DELETE", &foreign, &admin, &[], Vec::new());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(oci.tags(REPO, &admin), tags_before, "no tag was made");
    assert_eq!(
        registry_files(api.server().data_dir()),
        before,
        "no file was left behind under <data>/registry"
    );
}

fn check_after(
    oci: &Oci,
    admin: &Cred,
    after: &After,
    session: &str,
    foreign: &str,
    fail: &mut impl FnMut(String),
) {
    let expect_status = |reply: &OciReply, status: u16, range: Option<&str>| {
        reply.status == status && range.is_none_or(|r| reply.header("range") == Some(r))
    };
    match after {
        After::NoBlob(blobs) => {
            for (repo, digest) in blobs {
                let status = oci.blob_status(repo, digest, admin);
                if status != 404 {
                    fail(format!("blob {digest} in {repo}: HEAD answered {status}"));
                }
            }
        }
        After::NoTag(repo, tag) => {
            if oci.tags(repo, admin).contains(tag) {
                fail(format!("tag {tag} was made in {repo}"));
            }
            let status = oci
                .head(&format!("/v2/{repo}/manifests/{tag}"), admin)
                .status;
            if status != 404 {
                fail(format!("manifest {repo}:{tag}: HEAD answered {status}"));
            }
        }
        After::SessionGone => {
            let reply = oci.get(session, admin);
            if !expect_status(&reply, 404, None) {
                fail(format!("the session is still there: {}", reply.summary()));
            }
        }
        After::SessionEmpty => {
            let reply = oci.get(session, admin);
            if !expect_status(&reply, 204, Some("0-0")) {
                fail(format!(
                    "the session acknowledged bytes: {} {:?}",
                    reply.summary(),
                    reply.header("range")
                ));
            }
        }
        After::ForeignSessionUntouched => {
            let reply = oci.get(foreign, admin);
            if !expect_status(&reply, 204, Some("0-0")) {
                fail(format!(
                    "the other repository's session changed: {} {:?}",
                    reply.summary(),
                    reply.header("range")
                ));
            }
        }
    }
}
