//! The local backend's storage URLs (docs/compatibility.md, Commands): a `PUT` URL writes
//! once, and only while its command waits for that body; bodies stream through the manager
//! and commandd to disk, within 64 MiB, without either holding them whole.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use e2e::api::{Api, NewDeployment, Request, string};
use e2e::commands::{
    Receiver, Target, create_body, presigned, resolve, response_bytes, wait_terminal,
};
use e2e::procfs::peak_rss_kib;
use e2e::registry::{Cred, Oci};
use e2e::wait_for;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;
/// The largest body a storage URL takes.
const STORAGE_LIMIT: usize = 64 * MIB;

fn container() -> [(&'static str, &'static str, bool); 1] {
    [("jobs", "container", true)]
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A command whose `size` bytes of params go to storage: its id and upload request.
fn awaiting_upload(api: &Api, target: &Target, size: usize) -> (String, Value) {
    let created = api.expect(
        &Request::post(
            "/v1/commands",
            create_body(target, json!({"params": {"mode": "storage", "size": size}})),
        )
        .auth(api.admin()),
        200,
    );
    assert_eq!(created["state"], "PENDING_UPLOAD", "{created}");
    (
        string(&created, "commandId"),
        created["storageUpload"]["putRequest"].clone(),
    )
}

fn upload_complete(api: &Api, id: &str, size: usize) {
    api.expect(
        &Request::post(
            format!("/v1/commands/{id}/upload-complete"),
            json!({"size": size}),
        )
        .auth(api.admin()),
        200,
    );
}

/// A storage request carried out with `body`: its status and JSON answer (`Null` for none).
fn put(request: &Value, base: &str, body: Vec<u8>) -> (u16, Value) {
    let (status, answer) = presigned(request, base, body);
    (
        status,
        serde_json::from_slice(&answer).unwrap_or(Value::Null),
    )
}

fn assert_refused((status, answer): (u16, Value), code: &str) {
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["code"], code, "{answer}");
    assert_eq!(answer["httpStatusCode"], 409, "{answer}");
}

/// The storage request's URL as a path and query on the manager.
fn path_of(api: &Api, request: &Value) -> String {
    let url = resolve(
        &api.base_url(),
        request["backend"]["url"].as_str().expect("url"),
    );
    let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let path = after_scheme.find('/').expect("a path");
    after_scheme[path..].to_owned()
}

/// Starts a `PUT` of `declared` bytes to `request`, sends `sent` of them and hangs up.
fn broken_put(api: &Api, request: &Value, declared: usize, sent: usize) {
    let host = api.base_url().trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&host).expect("connect");
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {declared}\r\n\r\n",
        path_of(api, request)
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream
        .write_all(&vec![7u8; sent])
        .expect("part of the body");
    stream.flush().expect("flush");
}

/// commandd's temporary files are all gone (bounded wait).
fn assert_no_temporary_files(api: &Api) {
    let tmp = api.server().data_dir().join("commands/tmp");
    let left = wait_for(Duration::from_secs(10), || {
        let count = std::fs::read_dir(&tmp).map_or(0, Iterator::count);
        (count == 0).then_some(())
    });
    assert!(
        left.is_some(),
        "files left in {}: {:?}",
        tmp.display(),
        std::fs::read_dir(&tmp).map(|d| d.count())
    );
}

#[test]
fn a_params_upload_url_writes_once_and_only_before_upload_complete() {
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &container());
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    let base = api.base_url();
    let original = bytes(300_000, 1);
    let (id, upload) = awaiting_upload(&api, &target, original.len());

    // An upload that broke off wrote nothing: the URL is still good for the whole body.
    broken_put(&api, &upload, original.len(), 1000);
    assert_no_temporary_files(&api);
    assert_eq!(put(&upload, &base, original.clone()).0, 200);
    // A second PUT while the command still waits for its upload is refused.
    assert_refused(put(&upload, &base, bytes(300_000, 2)), "STORAGE_URL_USED");

    upload_complete(&api, &id, original.len());
    let lease = receiver.lease(1, 60, None).remove(0);
    assert_eq!(lease.command_id, id);
    // The replay after upload-complete and the lease changes nothing the receiver reads.
    assert_refused(
        put(&upload, &base, bytes(300_000, 3)),
        "STORAGE_UPLOAD_NOT_EXPECTED",
    );
    assert_eq!(lease.params(), original);

    // A URL never used is refused too once the command no longer waits for its params.
    let (id, unused) = awaiting_upload(&api, &target, 200_000);
    upload_complete(&api, &id, 200_000);
    assert_refused(
        put(&unused, &base, bytes(200_000, 4)),
        "STORAGE_UPLOAD_NOT_EXPECTED",
    );
    assert_no_temporary_files(&api);
}

#[test]
fn a_response_upload_url_writes_once_and_not_after_the_answer() {
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &container());
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    let create = || {
        let created = api.expect(
            &Request::post("/v1/commands", create_body(&target, json!({}))).auth(api.admin()),
            200,
        );
        string(&created, "commandId")
    };

    let id = create();
    let lease = receiver.lease(1, 60, None).remove(0);
    assert_eq!(lease.command_id, id);
    let upload = lease.envelope["responseHandling"]["storageUploadRequest"].clone();
    let answer = bytes(400_000, 5);
    assert_eq!(put(&upload, &lease.from, answer.clone()).0, 200);
    assert_refused(
        put(&upload, &lease.from, bytes(400_000, 6)),
        "STORAGE_URL_USED",
    );
    let response = json!({"status": "success",
        "response": {"mode": "storage", "size": answer.len(), "storagePutUsed": true}});
    assert_eq!(receiver.submit(&lease, &response), 200);
    let done = wait_terminal(&api, &id, LONG);
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    // Replayed after SUCCEEDED: refused, and the invoker still reads the receiver's answer.
    assert_refused(
        put(&upload, &lease.from, bytes(400_000, 7)),
        "STORAGE_UPLOAD_NOT_EXPECTED",
    );
    assert_eq!(response_bytes(&api, &done), answer);

    // The upload URL of a command answered inline writes nothing after the answer either.
    let id = create();
    let lease = receiver.lease(1, 60, None).remove(0);
    assert_eq!(receiver.respond(&lease, b"small"), 200);
    wait_terminal(&api, &id, LONG);
    let unused = &lease.envelope["responseHandling"]["storageUploadRequest"];
    assert_refused(
        put(unused, &lease.from, bytes(400_000, 8)),
        "STORAGE_UPLOAD_NOT_EXPECTED",
    );
}

#[test]
fn concurrent_puts_of_one_url_have_one_winner() {
    const PUTS: u8 = 4;
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &container());
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    let base = api.base_url();
    let size = 2 * MIB;
    let (id, upload) = awaiting_upload(&api, &target, size);
    let answers: Vec<(u8, (u16, Value))> = std::thread::scope(|scope| {
        let puts: Vec<_> = (0..PUTS)
            .map(|seed| {
                let (upload, base) = (&upload, &base);
                scope.spawn(move || (seed, put(upload, base, bytes(size, seed))))
            })
            .collect();
        puts.into_iter()
            .map(|put| put.join().expect("PUT"))
            .collect()
    });
    let winners: Vec<u8> = answers
        .iter()
        .filter(|(_, (status, _))| *status == 200)
        .map(|(seed, _)| *seed)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for (_, answer) in answers
        .into_iter()
        .filter(|(_, (status, _))| *status != 200)
    {
        assert_refused(answer, "STORAGE_URL_USED");
    }
    upload_complete(&api, &id, size);
    let lease = receiver.lease(1, 60, None).remove(0);
    assert!(
        lease.params() == bytes(size, winners[0]),
        "the winner's body"
    );
    assert_no_temporary_files(&api);
}

#[test]
fn an_upload_over_64_mib_is_refused_and_leaves_nothing() {
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &container());
    let oci = Oci::new(&api);
    let (id, upload) = awaiting_upload(&api, &target, 1_000_000);
    let path = path_of(&api, &upload);
    let too_large = vec![1u8; STORAGE_LIMIT + 1];
    // Declared too large, and streamed without a length: found out while it streams.
    for chunked in [false, true] {
        let reply = oci.call_reading_early("PUT", &path, &Cred::none(), &[], &too_large, chunked);
        assert_eq!(reply.status, 413, "chunked {chunked}: {}", reply.summary());
        let answer = reply.json();
        assert_eq!(answer["code"], "PAYLOAD_TOO_LARGE", "{answer}");
        assert_eq!(answer["httpStatusCode"], 413, "{answer}");
        assert_no_temporary_files(&api);
    }
    // Neither used the URL up.
    let body = bytes(1_000_000, 9);
    assert_eq!(put(&upload, &api.base_url(), body.clone()).0, 200);
    upload_complete(&api, &id, body.len());
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    assert!(receiver.lease(1, 60, None).remove(0).params() == body);
}

/// Three 60 MiB params uploaded at once, then downloaded at once: neither the manager nor
/// commandd holds a body whole, so neither's peak memory grows by as much as one body.
#[test]
fn large_bodies_stream_through_the_manager_and_commandd() {
    const BODIES: usize = 3;
    const SIZE: usize = 60 * MIB;
    const GROWTH_LIMIT_KIB: u64 = 64 * 1024;
    let api = Api::start();
    let target = Target::new(&api, NewDeployment::pull(), &container());
    let receiver = Receiver::new(&api, &target, "jobs", "container");
    let base = api.base_url();
    let commands: Vec<(String, Value)> = (0..BODIES)
        .map(|_| awaiting_upload(&api, &target, SIZE))
        .collect();
    let daemons = ["manager", "commandd"].map(|name| {
        let pid = api
            .server()
            .daemon_pid(name)
            .unwrap_or_else(|| panic!("no {name} process"));
        let baseline = peak_rss_kib(pid).expect("VmHWM");
        (name, pid, baseline)
    });
    let body = Arc::new(bytes(SIZE, 10));

    std::thread::scope(|scope| {
        let uploads: Vec<_> = commands
            .iter()
            .map(|(_, upload)| {
                let (body, base) = (Arc::clone(&body), &base);
                scope.spawn(move || put(upload, base, body.to_vec()))
            })
            .collect();
        for upload in uploads {
            let (status, answer) = upload.join().expect("upload");
            assert_eq!(status, 200, "{answer}");
        }
    });
    for (id, _) in &commands {
        upload_complete(&api, id, SIZE);
    }
    let leases = receiver.lease(BODIES as u32, 300, None);
    assert_eq!(leases.len(), BODIES);
    std::thread::scope(|scope| {
        let downloads: Vec<_> = leases
            .iter()
            .map(|lease| scope.spawn(|| lease.params()))
            .collect();
        for download in downloads {
            assert!(
                *download.join().expect("download") == *body,
                "params differ"
            );
        }
    });

    for (name, pid, baseline) in daemons {
        let peak = peak_rss_kib(pid).expect("VmHWM");
        assert!(
            peak < baseline + GROWTH_LIMIT_KIB,
            "{name}'s peak memory went from {baseline} KiB to {peak} KiB moving {BODIES} \
             bodies of {SIZE} bytes each way"
        );
    }
}
