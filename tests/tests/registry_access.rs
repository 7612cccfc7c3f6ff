//! Who may do what through the manager's `/v2` (docs/compatibility.md, Registry proxy): the
//! 401 challenge that makes clients send credentials, Basic with the token as password and
//! Bearer alike, push for the admin and deployment-group tokens, pull for a deployment token
//! only from the repositories its release references, and `Location`s that point at the
//! manager's public address.

use e2e::api::{Api, NewDeployment, Request, stack, state, string};
use e2e::registry::{
    Cred, Image, Oci, REPOSITORY, create_release_with_images, location, read_oci_layout, sha256,
    skopeo_copy, with_digest,
};
use serde_json::json;

const CHALLENGE: &str = "Basic realm=\"alien-manager\"";

/// A 401 as registry clients expect it: the challenge, and an OCI error body.
fn assert_challenge(reply: &e2e::registry::OciReply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.summary());
    assert_eq!(
        reply.header("www-authenticate"),
        Some(CHALLENGE),
        "{what}: {:?}",
        reply.headers
    );
    assert_eq!(
        reply.code().as_deref(),
        Some("UNAUTHORIZED"),
        "{what}: {}",
        reply.summary()
    );
}

fn assert_denied(reply: &e2e::registry::OciReply, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {}", reply.summary());
    if !reply.body.is_empty() {
        assert_eq!(
            reply.code().as_deref(),
            Some("DENIED"),
            "{what}: {}",
            reply.summary()
        );
    }
}

#[test]
fn the_base_challenges_for_credentials_and_takes_basic_and_bearer() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = api.admin_token().to_owned();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let unknown = format!("ax_admin_{}", "0".repeat(32));
    for base in ["/v2/", "/v2"] {
        let accepted = [
            ("admin, Bearer", Cred::bearer(&admin)),
            ("admin, Basic token:<key>", Cred::basic("token", &admin)),
            ("admin, Basic with any user", Cred::basic("whoever", &admin)),
            (
                "admin, Basic without a user",
                Cred::header(&format!("Basic {}", e2e::api::base64(admin.as_bytes()))),
            ),
            ("group token, Basic", Cred::basic("token", &group.token)),
            (
                "deployment token, Basic deployment:<token>",
                Cred::basic("deployment", &deployment.token),
            ),
            ("deployment token, Bearer", Cred::bearer(&deployment.token)),
        ];
        for (what, cred) in accepted {
            let reply = oci.get(base, &cred);
            assert_eq!(reply.status, 200, "GET {base}, {what}: {}", reply.summary());
            assert_eq!(reply.json(), json!({}), "GET {base}, {what}");
        }
        let refused = [
            ("no credentials", Cred::none()),
            ("an unknown token, Bearer", Cred::bearer(&unknown)),
            ("an unknown token, Basic", Cred::basic("token", &unknown)),
            ("another scheme", Cred::header(&format!("Token {admin}"))),
            ("Basic that is not base64", Cred::header("Basic %%%")),
        ];
        for (what, cred) in refused {
            assert_challenge(&oci.get(base, &cred), &format!("GET {base}, {what}"));
        }
    }
    // Every other /v2 route challenges too, so that a client that skipped the base check
    // still learns how to authenticate.
    let repo = format!("{REPOSITORY}/app");
    for (method, path) in [
        ("GET", format!("/v2/{repo}/manifests/v1")),
        ("HEAD", format!("/v2/{repo}/blobs/{}", sha256(b"x"))),
        ("POST", format!("/v2/{repo}/blobs/uploads/")),
        ("PUT", format!("/v2/{repo}/manifests/v1")),
        ("GET", format!("/v2/{repo}/tags/list")),
    ] {
        let reply = oci.call(method, &path, &Cred::none(), &[], Vec::new());
        assert_eq!(reply.status, 401, "{method} {path}: {}", reply.summary());
        assert_eq!(
            reply.header("www-authenticate"),
            Some(CHALLENGE),
            "{method} {path}"
        );
    }
}

#[test]
fn a_deployment_token_pulls_what_its_release_references_and_nothing_else() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let host = oci.host().to_owned();
    let app_repo = format!("{REPOSITORY}/app");
    let pinned_repo = format!("{REPOSITORY}/pinned");
    let other_repo = format!("{REPOSITORY}/other");
    let app = Image::generate(11, &[256 * 1024, 64 * 1024]);
    let pinned = Image::generate(12, &[1024]);
    let other = Image::generate(13, &[2048]);
    app.push(&oci, &app_repo, "v1", &admin);
    pinned.push(&oci, &pinned_repo, "v1", &admin);
    other.push(&oci, &other_repo, "v1", &admin);
    // One image by tag, one by digest: the proxy strips host, tag and digest.
    create_release_with_images(
        &api,
        &[
            &format!("{host}/{app_repo}:v1"),
            &format!("{host}/{pinned_repo}@{}", pinned.digest),
        ],
    );
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let token = deployment.token.clone();
    let cred = Cred::basic("deployment", &token);

    // skopeo pulls the referenced image as an agent would (Basic deployment:<token>).
    let scratch = api.server().work_dir().join("skopeo");
    let out = scratch.join("app");
    let pulled = skopeo_copy(
        &format!("docker://{host}/{app_repo}:v1"),
        &format!("oci:{}:v1", out.display()),
        &format!("deployment:{token}"),
        &scratch,
    );
    assert!(
        pulled.success,
        "deployment token pull of {app_repo}:\n{}",
        pulled.stderr
    );
    let got = read_oci_layout(&out, "v1");
    assert_eq!(got.digest, app.digest);
    assert_eq!(got.layer_digests, app.layer_digests);

    // Every read of the referenced repositories, with Basic and with Bearer.
    for cred in [cred.clone(), Cred::bearer(&token)] {
        for (repo, image) in [(&app_repo, &app), (&pinned_repo, &pinned)] {
            let manifest = oci.manifest(repo, &image.digest, &cred);
            assert_eq!(manifest.status, 200, "{repo}: {}", manifest.summary());
            for (digest, bytes) in image.blobs() {
                assert_eq!(
                    oci.blob_status(repo, digest, &cred),
                    200,
                    "HEAD {repo} {digest}"
                );
                assert!(
                    oci.blob(repo, digest, &cred).body == bytes,
                    "GET {repo} {digest}"
                );
            }
        }
        assert_eq!(oci.manifest(&app_repo, "v1", &cred).status, 200);
    }

    // Anything else is denied, however it is asked for.
    let denied = [
        ("GET", format!("/v2/{other_repo}/manifests/v1")),
        ("HEAD", format!("/v2/{other_repo}/manifests/v1")),
        (
            "GET",
            format!("/v2/{other_repo}/blobs/{}", other.config_digest),
        ),
        (
            "HEAD",
            format!("/v2/{other_repo}/blobs/{}", other.config_digest),
        ),
        // Same blob, other repository: a digest alone opens nothing.
        (
            "GET",
            format!("/v2/{other_repo}/blobs/{}", app.config_digest),
        ),
    ];
    for (method, path) in &denied {
        let reply = oci.call(method, path, &cred, &[], Vec::new());
        assert_denied(&reply, &format!("deployment token {method} {path}"));
    }
    // Listings, whose paths name no manifest or blob: the public manager takes their first
    // segment as the repository, so they may be refused as an unknown name instead.
    for path in [
        format!("/v2/{other_repo}/tags/list"),
        format!("/v2/{other_repo}/referrers/{}", other.digest),
    ] {
        let reply = oci.get(&path, &cred);
        let refusal = (reply.status, reply.code());
        assert!(
            matches!(
                (refusal.0, refusal.1.as_deref()),
                (403, Some("DENIED")) | (404, Some("NAME_UNKNOWN"))
            ),
            "deployment token GET {path}: {}",
            reply.summary()
        );
    }
    let refused = skopeo_copy(
        &format!("docker://{host}/{other_repo}:v1"),
        &format!("oci:{}:v1", scratch.join("other").display()),
        &format!("deployment:{token}"),
        &scratch,
    );
    assert!(!refused.success, "a deployment token pulled {other_repo}");
    assert!(
        refused.stderr.to_lowercase().contains("denied"),
        "skopeo's error names the refusal:\n{}",
        refused.stderr
    );

    // A path that climbs out of an allowed name is no way in.
    for path in [
        format!("/v2/{app_repo}/../other/manifests/v1"),
        format!("/v2/{app_repo}/%2e%2e/other/manifests/v1"),
        format!(
            "/v2/{app_repo}/../../default/other/blobs/{}",
            other.config_digest
        ),
    ] {
        let reply = oci.get(&path, &cred);
        assert!(
            matches!(reply.status, 400 | 403 | 404),
            "deployment token GET {path}: {}",
            reply.summary()
        );
        assert!(
            reply.body != other.manifest,
            "GET {path} served the other image"
        );
    }

    // Deployment tokens never push.
    for repo in [&app_repo, &other_repo] {
        let reply = oci.call(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &cred,
            &[],
            Vec::new(),
        );
        assert_denied(&reply, &format!("deployment token push to {repo}"));
        let reply = oci.push_manifest(
            repo,
            "v2",
            e2e::registry::OCI_MANIFEST,
            &app.manifest,
            &cred,
        );
        assert_denied(&reply, &format!("deployment token manifest PUT to {repo}"));
    }
    assert!(!oci.tags(&app_repo, &admin).contains(&"v2".to_owned()));
}

/// The release a deployment pulls from is its current one, else its desired one.
#[test]
fn a_deployment_pulls_from_its_current_release_rather_than_its_desired_one() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let host = oci.host().to_owned();
    let (one, two) = (format!("{REPOSITORY}/one"), format!("{REPOSITORY}/two"));
    let image = Image::generate(21, &[4096]);
    image.push(&oci, &one, "v1", &admin);
    image.push(&oci, &two, "v1", &admin);

    let first = create_release_with_images(&api, &[&format!("{host}/{one}:v1")]);
    let first = string(&first, "id");
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let mut running = state("running", "local");
    running["currentRelease"] = json!({"releaseId": first, "stack": api.expect(
        &Request::get(format!("/v1/releases/{first}")).auth(api.admin()),
        200,
    )["stack"]["local"].clone()});
    api.reconcile_as("agent", &deployment, running);
    // A new release makes it the desired one of the running deployment.
    let second = create_release_with_images(&api, &[&format!("{host}/{two}:v1")]);
    let record = api.deployment(&deployment.id);
    assert_eq!(record["currentReleaseId"], first.as_str(), "{record}");
    assert_eq!(record["desiredReleaseId"], second["id"], "{record}");

    let cred = Cred::basic("deployment", &deployment.token);
    let current = oci.manifest(&one, "v1", &cred);
    assert_eq!(
        current.status,
        200,
        "current release: {}",
        current.summary()
    );
    assert_denied(
        &oci.manifest(&two, "v1", &cred),
        "desired, not current, release",
    );

    // A deployment whose only release is a desired one pulls from that.
    let newer = api.create_deployment(&group, NewDeployment::pull());
    let cred = Cred::basic("deployment", &newer.token);
    assert_eq!(oci.manifest(&two, "v1", &cred).status, 200);
    assert_denied(
        &oci.manifest(&one, "v1", &cred),
        "not in the desired release",
    );
}

/// Only releases the manager assigned open repositories: a deployment that reports another
/// (existing) release as its current one has that recorded, and pulls no more than before.
#[test]
fn a_deployment_cannot_widen_its_pulls_by_reporting_another_release() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let host = oci.host().to_owned();
    let (one, two) = (format!("{REPOSITORY}/one"), format!("{REPOSITORY}/two"));
    let image = Image::generate(41, &[4096]);
    image.push(&oci, &one, "v1", &admin);
    image.push(&oci, &two, "v1", &admin);
    let assigned = create_release_with_images(&api, &[&format!("{host}/{one}:v1")]);
    let assigned = string(&assigned, "id");
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    // Made while the deployment is pending, so never its desired release.
    let other = create_release_with_images(&api, &[&format!("{host}/{two}:v1")]);
    let other = string(&other, "id");
    assert_eq!(
        api.deployment(&deployment.id)["desiredReleaseId"],
        assigned.as_str()
    );
    let cred = Cred::basic("deployment", &deployment.token);
    let running_on = |release: &str| {
        let mut running = state("running", "local");
        running["currentRelease"] = json!({"releaseId": release, "stack": stack()});
        running
    };
    let reports = [
        Request::post(
            "/v1/sync/reconcile",
            json!({"deploymentId": deployment.id, "session": "s", "state": running_on(&other)}),
        ),
        Request::post(
            "/v1/sync",
            json!({"deploymentId": deployment.id, "currentState": running_on(&other)}),
        ),
    ];
    for report in reports {
        // The release the manager assigned, reached by a report of the deployment's own.
        api.expect(
            &Request::post(
                "/v1/sync/reconcile",
                json!({"deploymentId": deployment.id, "session": "s", "state": running_on(&assigned)}),
            )
            .bearer(&deployment.token),
            200,
        );
        assert_eq!(oci.manifest(&one, "v1", &cred).status, 200, "{report}");
        assert_denied(&oci.manifest(&two, "v1", &cred), "before the report");

        api.expect(&report.clone().bearer(&deployment.token), 200);
        let record = api.deployment(&deployment.id);
        assert_eq!(
            record["currentReleaseId"],
            other.as_str(),
            "{report}: {record}"
        );
        assert_eq!(
            oci.manifest(&one, "v1", &cred).status,
            200,
            "{report}: the release the manager assigned"
        );
        assert_denied(
            &oci.manifest(&two, "v1", &cred),
            &format!("{report}: a release only the deployment's report names"),
        );
        for (digest, _) in image.blobs() {
            assert_denied(
                &oci.call(
                    "GET",
                    &format!("/v2/{two}/blobs/{digest}"),
                    &cred,
                    &[],
                    Vec::new(),
                ),
                &format!("{report}: blob {digest}"),
            );
        }
    }
}

#[test]
fn a_deployment_without_a_release_pulls_nothing() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let repo = format!("{REPOSITORY}/app");
    Image::generate(31, &[1024]).push(&oci, &repo, "v1", &admin);
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let reply = oci.manifest(&repo, "v1", &Cred::basic("deployment", &deployment.token));
    assert_eq!(reply.status, 404, "{}", reply.summary());
    assert_eq!(
        reply.code().as_deref(),
        Some("NAME_UNKNOWN"),
        "{}",
        reply.summary()
    );
}

/// A group token pushes, and may read in the repository it pushes to: clients check for
/// existing layers with HEAD before uploading them.
#[test]
fn a_group_token_pushes_and_reads_back_in_the_repository_it_pushes_to() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let host = oci.host().to_owned();
    let group = api.create_group();
    let cred = Cred::basic("token", &group.token);
    let repo = format!("{REPOSITORY}/group-app");
    let image = Image::generate(41, &[128 * 1024, 300]);
    let scratch = api.server().work_dir().join("skopeo");
    let source = scratch.join("source");
    image.write_oci_layout(&source, "v1");
    // Twice: the second time every layer is there already, found by HEAD.
    for tag in ["v1", "v1-again"] {
        let pushed = skopeo_copy(
            &format!("oci:{}:v1", source.display()),
            &format!("docker://{host}/{repo}:{tag}"),
            &format!("token:{}", group.token),
            &scratch,
        );
        assert!(
            pushed.success,
            "group token push of {repo}:{tag}:\n{}",
            pushed.stderr
        );
    }
    for (digest, bytes) in image.blobs() {
        assert_eq!(oci.blob_status(&repo, digest, &cred), 200, "HEAD {digest}");
        let blob = oci.blob(&repo, digest, &Cred::bearer(&group.token));
        assert!(
            blob.status == 200 && blob.body == bytes,
            "GET {digest}: {}",
            blob.status
        );
    }
    let manifest = oci.manifest(&repo, "v1", &cred);
    assert_eq!(manifest.status, 200, "{}", manifest.summary());
    assert!(manifest.body == image.manifest);
    assert_eq!(
        oci.head(&format!("/v2/{repo}/manifests/v1-again"), &cred)
            .status,
        200
    );

    // And over plain HTTP, a monolithic push as `alien release` makes it.
    let blob = b"pushed by a group token".to_vec();
    let digest = oci.push_blob(&repo, &blob, &cred);
    assert_eq!(oci.blob(&repo, &digest, &cred).body, blob);

    // A revoked token is refused at once.
    api.revoke(&group.token);
    let reply = oci.get("/v2/", &cred);
    assert_challenge(&reply, "revoked group token");
    let reply = oci.call(
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &cred,
        &[],
        Vec::new(),
    );
    assert_eq!(
        reply.status,
        401,
        "revoked group token push: {}",
        reply.summary()
    );
}

/// `Location`s name the manager's public address (from `Host`, or `X-Forwarded-*` or
/// `Forwarded` behind a reverse proxy), never registryd's socket, and they work.
#[test]
fn locations_point_at_the_public_address() {
    let api = Api::start();
    let oci = Oci::new(&api);
    let admin = Cred::bearer(api.admin_token());
    let repo = format!("{REPOSITORY}/located");
    let start = format!("/v2/{repo}/blobs/uploads/");
    let cases: [(&[(&str, &str)], String); 3] = [
        (&[], oci.base().to_owned()),
        (
            &[
                ("x-forwarded-host", "registry.example.test"),
                ("x-forwarded-proto", "https"),
            ],
            "https://registry.example.test".to_owned(),
        ),
        (
            &[("forwarded", "host=mirror.example.test;proto=https")],
            "https://mirror.example.test".to_owned(),
        ),
    ];
    for (i, (headers, public)) in cases.iter().enumerate() {
        let reply = oci.call("POST", &start, &admin, headers, Vec::new());
        assert_eq!(reply.status, 202, "{headers:?}: {}", reply.summary());
        let session = location(&reply);
        let prefix = format!("{public}/v2/{repo}/blobs/uploads/");
        assert!(
            session.starts_with(&prefix),
            "{headers:?}: Location {session}, want it under {prefix}"
        );
        // The session it names takes the blob (sent here: the other hosts are made up).
        let path = &session[public.len()..];
        let blob = format!("blob {i}").into_bytes();
        let digest = sha256(&blob);
        let done = oci.call(
            "PUT",
            &with_digest(path, &digest),
            &admin,
            headers,
            blob.clone(),
        );
        assert_eq!(done.status, 201, "{headers:?}: {}", done.summary());
        assert_eq!(
            location(&done),
            format!("{public}/v2/{repo}/blobs/{digest}"),
            "{headers:?}"
        );
        assert_eq!(oci.blob(&repo, &digest, &admin).body, blob);
    }
}
