//! The OCI distribution spec v1.1, endpoint by endpoint and error code by error code, as a
//! table of requests and the answers they must get, run in order against a real registryd.
//! `{loc}` in a path is the last upload `Location` the registry answered, `{id}` its session.

mod common;

use common::{OCI_INDEX, OCI_MANIFEST, Registry, files, image_manifest, request, sha256};

#[derive(Debug, Clone)]
enum Want {
    Eq(String),
    Prefix(String),
    Absent,
}

#[derive(Debug, Clone)]
struct Step {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: Option<&'static str>,
    want_headers: Vec<(&'static str, Want)>,
    want_body: Option<Vec<u8>>,
}

fn step(name: &'static str, method: &'static str, path: impl Into<String>) -> Step {
    Step {
        name,
        method,
        path: path.into(),
        headers: Vec::new(),
        body: Vec::new(),
        status: 0,
        code: None,
        want_headers: Vec::new(),
        want_body: None,
    }
}

impl Step {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Step {
        self.headers.push((name, value.into()));
        self
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Step {
        self.body = body.into();
        self
    }
    fn status(mut self, status: u16) -> Step {
        self.status = status;
        self
    }
    fn error(mut self, status: u16, code: &'static str) -> Step {
        self.status = status;
        self.code = Some(code);
        self
    }
    fn has(mut self, name: &'static str, value: impl Into<String>) -> Step {
        self.want_headers.push((name, Want::Eq(value.into())));
        self
    }
    fn starts(mut self, name: &'static str, value: impl Into<String>) -> Step {
        self.want_headers.push((name, Want::Prefix(value.into())));
        self
    }
    fn lacks(mut self, name: &'static str) -> Step {
        self.want_headers.push((name, Want::Absent));
        self
    }
    fn returns(mut self, body: impl Into<Vec<u8>>) -> Step {
        self.want_body = Some(body.into());
        self
    }
}

/// Runs `steps` in order; returns one line per mismatch.
async fn run(registry: &Registry, steps: &[Step]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut loc = String::new();
    for s in steps {
        let id = loc.rsplit('/').next().unwrap_or("").to_owned();
        let path = s.path.replace("{loc}", &loc).replace("{id}", &id);
        let headers: Vec<(&str, &str)> = s.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = registry
            .send(request(s.method, &path, &headers, s.body.clone()))
            .await;
        let location = reply.header("location");
        if location.contains("/blobs/uploads/") {
            loc = location;
        }
        let mut fail =
            |what: String| failures.push(format!("{}: {} {path}: {what}", s.name, s.method));
        if reply.status != s.status {
            fail(format!(
                "status {} want {} ({})",
                reply.status,
                s.status,
                reply.text()
            ));
            continue;
        }
        if let Some(code) = s.code {
            if reply.code() != code {
                fail(format!(
                    "code {:?} want {code} ({})",
                    reply.code(),
                    reply.text()
                ));
            }
            if reply.header("content-type") != "application/json" && s.method != "HEAD" {
                fail("error without a JSON body".into());
            }
        }
        for (name, want) in &s.want_headers {
            let got = reply.headers.get(*name).and_then(|v| v.to_str().ok());
            let ok = match (want, got) {
                (Want::Eq(w), Some(g)) => g == w,
                (Want::Prefix(w), Some(g)) => g.starts_with(w.as_str()),
                (Want::Absent, None) => true,
                _ => false,
            };
            if !ok {
                fail(format!("header {name} = {got:?}, want {want:?}"));
            }
        }
        if let Some(body) = &s.want_body
            && reply.body[..] != body[..]
        {
            fail(format!("body {:?}", reply.text()));
        }
    }
    failures
}

const N: &str = "conformance/deep/er/name";
const OTHER: &str = "other/repo";
const SBOM: &str = "application/vnd.example.sbom.v1+json";
const SIG: &str = "application/vnd.example.signature.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn index(children: &[(&str, &str)]) -> String {
    let children: Vec<String> = children
        .iter()
        .map(|(media_type, body)| {
            format!(
                r#"{{"mediaType":"{media_type}","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}"#,
                sha256(body.as_bytes()),
                body.len()
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
        children.join(",")
    )
}

fn referrer(config: &[u8], artifact_type: &str, subject: &str) -> String {
    image_manifest(
        config,
        &[],
        &format!(
            r#""artifactType":"{artifact_type}","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{}}},"annotations":{{"org.example":"x"}},"#,
            sha256(subject.as_bytes()),
            subject.len()
        ),
    )
}

fn steps() -> Vec<Step> {
    let layer = b"a layer of some bytes".to_vec();
    let config = b"{}".to_vec();
    let (dl, dc) = (sha256(&layer), sha256(&config));
    let chunked = b"chunk1chunk2-end".to_vec();
    let dchunked = sha256(&chunked);
    let sha512_blob = b"hashed with sha512".to_vec();
    let d512 = format!(
        "sha512:{}",
        hex::encode(<sha2::Sha512 as sha2::Digest>::digest(&sha512_blob))
    );
    let empty_digest = sha256(b"");
    let missing = sha256(b"never pushed");
    let manifest = image_manifest(&config, &[&layer], "");
    let dm = sha256(manifest.as_bytes());
    let docker = image_manifest(&config, &[&layer], "").replace(OCI_MANIFEST, DOCKER_MANIFEST);
    let ddocker = sha256(docker.as_bytes());
    let idx = index(&[(OCI_MANIFEST, &manifest)]);
    let didx = sha256(idx.as_bytes());
    let list = index(&[(DOCKER_MANIFEST, &docker)]).replace(
        r#"{"schemaVersion":2,"#,
        &format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","#),
    );
    let sbom = referrer(&config, SBOM, &manifest);
    let sig = referrer(&config, SIG, &manifest);
    let dsbom = sha256(sbom.as_bytes());
    let dangling = image_manifest(&config, &[b"never pushed"], "");
    let wrong_size = image_manifest(&config, &[&layer], "").replace(
        &format!(r#""size":{}}}]"#, layer.len()),
        &format!(r#""size":{}}}]"#, layer.len() + 1),
    );
    let big = format!(
        r#"{{"schemaVersion":2,"annotations":{{"pad":"{}"}}}}"#,
        "x".repeat(4 * 1024 * 1024)
    );
    let v2 = |rest: &str| format!("/v2/{N}/{rest}");

    vec![
        // end-1
        step("base", "GET", "/v2/")
            .status(200)
            .has("docker-distribution-api-version", "registry/2.0"),
        step("base without slash", "GET", "/v2").status(200),
        // end-2, before anything exists
        step("unknown blob", "GET", v2(&format!("blobs/{dl}"))).error(404, "BLOB_UNKNOWN"),
        step("unknown blob HEAD", "HEAD", v2(&format!("blobs/{dl}"))).status(404),
        step("malformed digest", "GET", v2("blobs/sha256:xyz")).error(400, "DIGEST_INVALID"),
        step(
            "unsupported algorithm",
            "GET",
            v2("blobs/md5:d41d8cd98f00b204e9800998ecf8427e"),
        )
        .error(400, "DIGEST_INVALID"),
        // end-4a then end-6: POST then PUT
        step("start upload", "POST", v2("blobs/uploads/"))
            .status(202)
            .starts("location", format!("/v2/{N}/blobs/uploads/"))
            .has("range", "0-0")
            .has("content-length", "0"),
        step("upload status", "GET", "{loc}")
            .status(204)
            .has("range", "0-0"),
        step("monolithic PUT", "PUT", format!("{{loc}}?digest={dl}"))
            .header("content-type", "application/octet-stream")
            .body(layer.clone())
            .status(201)
            .has("location", v2(&format!("blobs/{dl}")))
            .has("docker-content-digest", dl.clone()),
        step("finished session is gone", "GET", "{loc}").error(404, "BLOB_UPLOAD_UNKNOWN"),
        // end-2
        step("blob HEAD", "HEAD", v2(&format!("blobs/{dl}")))
            .status(200)
            .has("content-length", layer.len().to_string())
            .has("docker-content-digest", dl.clone())
            .returns(Vec::new()),
        step("blob GET", "GET", v2(&format!("blobs/{dl}")))
            .status(200)
            .has("docker-content-digest", dl.clone())
            .has("content-length", layer.len().to_string())
            .returns(layer.clone()),
        step("blob range", "GET", v2(&format!("blobs/{dl}")))
            .header("range", "bytes=2-6")
            .status(206)
            .has("content-range", format!("bytes 2-6/{}", layer.len()))
            .has("content-length", "5")
            .returns(layer[2..7].to_vec()),
        step("blob suffix range", "GET", v2(&format!("blobs/{dl}")))
            .header("range", "bytes=-3")
            .status(206)
            .returns(layer[layer.len() - 3..].to_vec()),
        step("blob range past the end", "GET", v2(&format!("blobs/{dl}")))
            .header("range", "bytes=1000-")
            .status(416)
            .has("content-range", format!("bytes */{}", layer.len())),
        step(
            "blob of another repository",
            "GET",
            format!("/v2/{OTHER}/blobs/{dl}"),
        )
        .error(404, "BLOB_UNKNOWN"),
        // end-4b: one POST with ?digest=
        step(
            "single POST",
            "POST",
            v2(&format!("blobs/uploads/?digest={dc}")),
        )
        .header("content-type", "application/octet-stream")
        .body(config.clone())
        .status(201)
        .has("location", v2(&format!("blobs/{dc}")))
        .has("docker-content-digest", dc.clone()),
        step(
            "single POST, wrong digest",
            "POST",
            v2(&format!("blobs/uploads/?digest={missing}")),
        )
        .body(config.clone())
        .error(400, "DIGEST_INVALID"),
        step(
            "single POST, bad digest",
            "POST",
            v2("blobs/uploads/?digest=sha256:nope"),
        )
        .body(config.clone())
        .error(400, "DIGEST_INVALID"),
        // end-5: chunked
        step("start chunked", "POST", v2("blobs/uploads/")).status(202),
        step("first chunk", "PATCH", "{loc}")
            .header("content-type", "application/octet-stream")
            .header("content-range", "0-5")
            .body(chunked[..6].to_vec())
            .status(202)
            .has("range", "0-5")
            .starts("location", format!("/v2/{N}/blobs/uploads/")),
        step("chunk out of order", "PATCH", "{loc}")
            .header("content-range", "0-5")
            .body(chunked[..6].to_vec())
            .status(416)
            .has("range", "0-5")
            .starts("location", format!("/v2/{N}/blobs/uploads/")),
        step("chunk past the end", "PATCH", "{loc}")
            .header("content-range", "7-9")
            .body(chunked[7..10].to_vec())
            .status(416)
            .has("range", "0-5"),
        step("unreadable Content-Range", "PATCH", "{loc}")
            .header("content-range", "six-seven")
            .body(chunked[6..8].to_vec())
            .status(416),
        step("chunk shorter than its range", "PATCH", "{loc}")
            .header("content-range", "6-20")
            .body(chunked[6..12].to_vec())
            .error(400, "SIZE_INVALID"),
        step("status after chunks", "GET", "{loc}")
            .status(204)
            .has("range", "0-5"),
        step("streamed chunk (no Content-Range)", "PATCH", "{loc}")
            .body(chunked[6..12].to_vec())
            .status(202)
            .has("range", "0-11"),
        step(
            "last chunk on PUT",
            "PUT",
            format!("{{loc}}?digest={dchunked}"),
        )
        .header("content-range", "12-15")
        .body(chunked[12..].to_vec())
        .status(201)
        .has("docker-content-digest", dchunked.clone()),
        step(
            "chunked blob reads back",
            "GET",
            v2(&format!("blobs/{dchunked}")),
        )
        .status(200)
        .returns(chunked.clone()),
        // sha512 and the empty blob
        step("start sha512", "POST", v2("blobs/uploads/")).status(202),
        step("sha512 PUT", "PUT", format!("{{loc}}?digest={d512}"))
            .body(sha512_blob.clone())
            .status(201)
            .has("docker-content-digest", d512.clone()),
        step("sha512 blob", "GET", v2(&format!("blobs/{d512}")))
            .status(200)
            .returns(sha512_blob.clone()),
        step("start empty", "POST", v2("blobs/uploads/")).status(202),
        step("empty PUT", "PUT", format!("{{loc}}?digest={empty_digest}")).status(201),
        step("empty blob", "GET", v2(&format!("blobs/{empty_digest}")))
            .status(200)
            .has("content-length", "0"),
        // PUT without or with a wrong digest ends the session
        step("start for a bad PUT", "POST", v2("blobs/uploads/")).status(202),
        step("PUT without digest", "PUT", "{loc}")
            .body(layer.clone())
            .error(400, "DIGEST_INVALID"),
        step("session ended by the 400", "GET", "{loc}").error(404, "BLOB_UPLOAD_UNKNOWN"),
        step("start for a wrong digest", "POST", v2("blobs/uploads/")).status(202),
        step(
            "PUT with a wrong digest",
            "PUT",
            format!("{{loc}}?digest={missing}"),
        )
        .body(layer.clone())
        .error(400, "DIGEST_INVALID"),
        step(
            "the wrong blob is not there",
            "HEAD",
            v2(&format!("blobs/{missing}")),
        )
        .status(404),
        // cancel
        step("start to cancel", "POST", v2("blobs/uploads/")).status(202),
        step("cancel", "DELETE", "{loc}").status(204),
        step("cancelled", "GET", "{loc}").error(404, "BLOB_UPLOAD_UNKNOWN"),
        step(
            "unknown session",
            "PATCH",
            v2("blobs/uploads/0123456789abcdef0123456789abcdef"),
        )
        .body("x")
        .error(404, "BLOB_UPLOAD_UNKNOWN"),
        step("not even an id", "GET", v2("blobs/uploads/..")).error(404, "BLOB_UPLOAD_UNKNOWN"),
        // end-7 and end-3
        step("manifest PUT by tag", "PUT", v2("manifests/v1"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .status(201)
            .has("docker-content-digest", dm.clone())
            .has("location", v2(&format!("manifests/{dm}")))
            .lacks("oci-subject"),
        step("manifest GET by tag", "GET", v2("manifests/v1"))
            .header("accept", OCI_MANIFEST)
            .status(200)
            .has("content-type", OCI_MANIFEST)
            .has("docker-content-digest", dm.clone())
            .returns(manifest.clone()),
        step(
            "manifest HEAD by digest",
            "HEAD",
            v2(&format!("manifests/{dm}")),
        )
        .status(200)
        .has("content-length", manifest.len().to_string())
        .has("docker-content-digest", dm.clone()),
        step(
            "manifest PUT by digest",
            "PUT",
            v2(&format!("manifests/{dm}")),
        )
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .status(201),
        step(
            "manifest bytes via blobs",
            "GET",
            v2(&format!("blobs/{dm}")),
        )
        .status(200)
        .returns(manifest.clone()),
        step(
            "manifest PUT, digest mismatch",
            "PUT",
            v2(&format!("manifests/{missing}")),
        )
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .error(400, "DIGEST_INVALID"),
        step(
            "manifest with a missing blob",
            "PUT",
            v2("manifests/dangling"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(dangling.clone())
        .error(400, "MANIFEST_BLOB_UNKNOWN"),
        step(
            "manifest with a wrong size",
            "PUT",
            v2("manifests/wrong-size"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(wrong_size.clone())
        .error(400, "MANIFEST_INVALID"),
        step("malformed manifest", "PUT", v2("manifests/broken"))
            .header("content-type", OCI_MANIFEST)
            .body("{\"schemaVersion\":2,")
            .error(400, "MANIFEST_INVALID"),
        step("media type mismatch", "PUT", v2("manifests/mismatch"))
            .header("content-type", OCI_INDEX)
            .body(manifest.clone())
            .error(400, "MANIFEST_INVALID"),
        step("unsupported media type", "PUT", v2("manifests/schema1"))
            .header(
                "content-type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            )
            .body(manifest.clone())
            .error(400, "MANIFEST_INVALID"),
        step("manifest over 4 MiB", "PUT", v2("manifests/big"))
            .header("content-type", OCI_MANIFEST)
            .body(big.clone())
            .error(413, "MANIFEST_INVALID"),
        step("invalid tag", "PUT", v2("manifests/-bad"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .error(400, "MANIFEST_INVALID"),
        step("unknown tag", "GET", v2("manifests/nope")).error(404, "MANIFEST_UNKNOWN"),
        step("unknown digest", "GET", v2(&format!("manifests/{missing}")))
            .error(404, "MANIFEST_UNKNOWN"),
        // A reference that is neither a tag nor a digest names no manifest: clients take
        // a 404 for "not there", and only a PUT is told its reference is invalid.
        step("invalid tag, GET", "GET", v2("manifests/-bad")).error(404, "MANIFEST_UNKNOWN"),
        step("invalid tag, HEAD", "HEAD", v2("manifests/-bad")).status(404),
        step("malformed digest, GET", "GET", v2("manifests/sha256:xyz"))
            .error(404, "MANIFEST_UNKNOWN"),
        step("malformed digest, HEAD", "HEAD", v2("manifests/sha256:xyz")).status(404),
        step("invalid tag, DELETE", "DELETE", v2("manifests/-bad")).error(404, "MANIFEST_UNKNOWN"),
        step(
            "the dangling tag was not made",
            "GET",
            v2("manifests/dangling"),
        )
        .error(404, "MANIFEST_UNKNOWN"),
        // index, Docker types
        step("index", "PUT", v2("manifests/multi"))
            .header("content-type", OCI_INDEX)
            .body(idx.clone())
            .status(201)
            .has("docker-content-digest", didx.clone()),
        step("index GET", "GET", v2("manifests/multi"))
            .status(200)
            .has("content-type", OCI_INDEX)
            .returns(idx.clone()),
        step(
            "index of a missing manifest",
            "PUT",
            v2("manifests/multi-missing"),
        )
        .header("content-type", OCI_INDEX)
        .body(index(&[(OCI_MANIFEST, "{}")]))
        .error(400, "MANIFEST_BLOB_UNKNOWN"),
        step(
            "docker manifest",
            "PUT",
            v2(&format!("manifests/{ddocker}")),
        )
        .header("content-type", DOCKER_MANIFEST)
        .body(docker.clone())
        .status(201),
        step(
            "docker manifest GET",
            "GET",
            v2(&format!("manifests/{ddocker}")),
        )
        .status(200)
        .has("content-type", DOCKER_MANIFEST)
        .returns(docker.clone()),
        step("docker list", "PUT", v2("manifests/docker-list"))
            .header("content-type", DOCKER_LIST)
            .body(list.clone())
            .status(201),
        step("docker list GET", "GET", v2("manifests/docker-list"))
            .status(200)
            .has("content-type", DOCKER_LIST)
            .returns(list.clone()),
        // end-12: referrers, and OCI-Subject on PUT
        step("referrer", "PUT", v2(&format!("manifests/{dsbom}")))
            .header("content-type", OCI_MANIFEST)
            .body(sbom.clone())
            .status(201)
            .has("oci-subject", dm.clone()),
        step("second referrer", "PUT", v2("manifests/sig"))
            .header("content-type", OCI_MANIFEST)
            .body(sig.clone())
            .status(201)
            .has("oci-subject", dm.clone()),
        step("referrers", "GET", v2(&format!("referrers/{dm}")))
            .status(200)
            .has("content-type", OCI_INDEX)
            .lacks("oci-filters-applied"),
        step(
            "referrers, filtered",
            "GET",
            v2(&format!(
                "referrers/{dm}?artifactType={}",
                SBOM.replace('/', "%2F")
            )),
        )
        .status(200)
        .has("oci-filters-applied", "artifactType"),
        step(
            "referrers of nothing",
            "GET",
            v2(&format!("referrers/{missing}")),
        )
        .status(200)
        .returns(format!(
            r#"{{"manifests":[],"mediaType":"{OCI_INDEX}","schemaVersion":2}}"#
        )),
        step("referrers, bad digest", "GET", v2("referrers/sha256:bad"))
            .error(400, "DIGEST_INVALID"),
        // end-8
        step("tags", "GET", v2("tags/list"))
            .status(200)
            .returns(format!(
                r#"{{"name":"{N}","tags":["docker-list","multi","sig","v1"]}}"#
            ))
            .lacks("link"),
        step("tags, first page", "GET", v2("tags/list?n=2"))
            .status(200)
            .returns(format!(
                r#"{{"name":"{N}","tags":["docker-list","multi"]}}"#
            ))
            .has(
                "link",
                format!("</v2/{N}/tags/list?n=2&last=multi>; rel=\"next\""),
            ),
        step("tags, last page", "GET", v2("tags/list?n=2&last=multi"))
            .status(200)
            .returns(format!(r#"{{"name":"{N}","tags":["sig","v1"]}}"#))
            .lacks("link"),
        step("tags, n=0", "GET", v2("tags/list?n=0"))
            .status(200)
            .returns(format!(r#"{{"name":"{N}","tags":[]}}"#))
            .lacks("link"),
        step(
            "tags of an unknown repository",
            "GET",
            "/v2/no/such/repo/tags/list",
        )
        .error(404, "NAME_UNKNOWN"),
        // end-11: mount
        step(
            "mount",
            "POST",
            format!("/v2/{OTHER}/blobs/uploads/?mount={dl}&from={N}"),
        )
        .status(201)
        .has("location", format!("/v2/{OTHER}/blobs/{dl}"))
        .has("docker-content-digest", dl.clone()),
        step("mounted blob", "GET", format!("/v2/{OTHER}/blobs/{dl}"))
            .status(200)
            .returns(layer.clone()),
        step(
            "mount of an unknown blob falls back",
            "POST",
            format!("/v2/{OTHER}/blobs/uploads/?mount={missing}&from={N}"),
        )
        .status(202)
        .starts("location", format!("/v2/{OTHER}/blobs/uploads/")),
        step(
            "session of another repository",
            "PUT",
            v2(&format!("blobs/uploads/{{id}}?digest={dl}")),
        )
        .body(layer.clone())
        .error(404, "BLOB_UPLOAD_UNKNOWN"),
        step("that session is untouched", "GET", "{loc}")
            .status(204)
            .has("range", "0-0"),
        step(
            "mount without from is an upload",
            "POST",
            format!("/v2/{OTHER}/blobs/uploads/?mount={dc}"),
        )
        .status(202),
        step("catalog", "GET", "/v2/_catalog")
            .status(200)
            .returns(format!(r#"{{"repositories":["{N}","{OTHER}"]}}"#)),
        step("catalog, paginated", "GET", "/v2/_catalog?n=1")
            .status(200)
            .starts("link", "</v2/_catalog?n=1&last="),
        // names
        step("uppercase name", "GET", "/v2/Upper/case/tags/list").error(400, "NAME_INVALID"),
        step("dot-dot name", "GET", "/v2/a/../b/manifests/v1").error(400, "NAME_INVALID"),
        step("dot-dot upload", "POST", "/v2/a/../../blobs/uploads/").error(400, "NAME_INVALID"),
        step("unknown endpoint", "GET", v2("nothing/here")).error(404, "UNSUPPORTED"),
        step("method not allowed", "POST", v2("tags/list")).error(405, "UNSUPPORTED"),
        // end-9, end-10
        step("delete tag", "DELETE", v2("manifests/sig")).status(202),
        step("deleted tag", "GET", v2("manifests/sig")).error(404, "MANIFEST_UNKNOWN"),
        step(
            "the manifest stays",
            "GET",
            v2(&format!("manifests/{}", sha256(sig.as_bytes()))),
        )
        .status(200),
        step("delete manifest", "DELETE", v2(&format!("manifests/{dm}"))).status(202),
        step("deleted manifest", "GET", v2(&format!("manifests/{dm}")))
            .error(404, "MANIFEST_UNKNOWN"),
        step("its tag went with it", "GET", v2("manifests/v1")).error(404, "MANIFEST_UNKNOWN"),
        step("delete it again", "DELETE", v2(&format!("manifests/{dm}")))
            .error(404, "MANIFEST_UNKNOWN"),
        step("delete blob", "DELETE", v2(&format!("blobs/{dchunked}"))).status(202),
        step("deleted blob", "GET", v2(&format!("blobs/{dchunked}"))).error(404, "BLOB_UNKNOWN"),
        step(
            "delete blob again",
            "DELETE",
            v2(&format!("blobs/{dchunked}")),
        )
        .error(404, "BLOB_UNKNOWN"),
    ]
}

#[tokio::test]
async fn every_endpoint_and_error_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::start(dir.path()).await;
    let failures = run(&registry, &steps()).await;
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    registry.stop().await;
}

#[tokio::test]
async fn referrers_list_their_descriptors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = Registry::start(dir.path()).await;
    let config = b"{}";
    r.push_blob("a", config).await;
    let subject = image_manifest(config, &[], "");
    assert_eq!(r.push_manifest("a", "s", &subject).await.status, 201);
    let sbom = referrer(config, SBOM, &subject);
    let sig = referrer(config, SIG, &subject);
    for m in [&sbom, &sig] {
        assert_eq!(
            r.push_manifest("a", &sha256(m.as_bytes()), m).await.status,
            201
        );
    }
    let all = r
        .get(&format!("/v2/a/referrers/{}", sha256(subject.as_bytes())))
        .await
        .json();
    let manifests = all["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 2);
    let sbom_entry = manifests
        .iter()
        .find(|m| m["digest"] == sha256(sbom.as_bytes()))
        .expect("sbom listed");
    assert_eq!(sbom_entry["artifactType"], SBOM);
    assert_eq!(sbom_entry["mediaType"], OCI_MANIFEST);
    assert_eq!(sbom_entry["size"], sbom.len());
    assert_eq!(sbom_entry["annotations"]["org.example"], "x");
    let only_sig = r
        .get(&format!(
            "/v2/a/referrers/{}?artifactType={SIG}",
            sha256(subject.as_bytes())
        ))
        .await
        .json();
    assert_eq!(only_sig["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(only_sig["manifests"][0]["artifactType"], SIG);
    // A referrer's subject need not exist yet.
    let orphan = referrer(config, SBOM, "{\"not\":\"pushed\"}");
    let put = r.push_manifest("a", "orphan", &orphan).await;
    assert_eq!(put.status, 201, "{}", put.text());
    r.stop().await;
}

/// Bad input gets its error and leaves no file behind.
#[tokio::test]
async fn bad_input_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = Registry::start(dir.path()).await;
    let config = b"{}";
    r.push_blob("repo", config).await;
    let before = files(&r.state_dir());
    let missing = sha256(b"missing");
    let dangling = image_manifest(config, &[b"missing"], "");
    let big = "x".repeat(5 * 1024 * 1024);
    let cases: Vec<(&str, String, Vec<u8>, u16)> = vec![
        (
            "POST",
            format!("/v2/repo/blobs/uploads/?digest={missing}"),
            b"other bytes".to_vec(),
            400,
        ),
        (
            "POST",
            "/v2/repo/blobs/uploads/?digest=sha256:short".into(),
            b"x".to_vec(),
            400,
        ),
        (
            "PUT",
            "/v2/repo/manifests/t".into(),
            dangling.into_bytes(),
            400,
        ),
        (
            "PUT",
            "/v2/repo/manifests/t".into(),
            b"not json".to_vec(),
            400,
        ),
        ("PUT", "/v2/repo/manifests/t".into(), big.into_bytes(), 413),
        (
            "PUT",
            format!("/v2/repo/manifests/{missing}"),
            image_manifest(config, &[], "").into_bytes(),
            400,
        ),
        ("PUT", "/v2/Repo/manifests/t".into(), b"{}".to_vec(), 400),
        ("POST", "/v2/re..po/blobs/uploads/".into(), Vec::new(), 400),
    ];
    for (method, path, body, status) in cases {
        let reply = r
            .call(method, &path, &[("content-type", OCI_MANIFEST)], body)
            .await;
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text());
    }
    // A chunked upload whose final digest is wrong.
    let started = r
        .call("POST", "/v2/repo/blobs/uploads/", &[], Vec::new())
        .await;
    let loc = started.header("location");
    assert_eq!(
        r.call("PATCH", &loc, &[], b"some bytes".to_vec())
            .await
            .status,
        202
    );
    let put = r
        .call("PUT", &format!("{loc}?digest={missing}"), &[], Vec::new())
        .await;
    assert_eq!(put.code(), "DIGEST_INVALID");
    assert_eq!(files(&r.state_dir()), before, "nothing left behind");
    let tags = r.get("/v2/repo/tags/list").await.json();
    assert_eq!(tags["tags"], serde_json::json!([]));
    r.stop().await;
}
