//! Telemetry ingest through the public port (docs/compatibility.md, Telemetry; issue #6): who
//! may send, both OTLP/HTTP encodings, gzip, every bad body's clear 4xx with nothing queued,
//! no endpoint configured, and the admin's counters.

use std::time::Duration;

use e2e::api::{Api, Request, base64};
use e2e::telemetry::{
    Backend, Ingest, IngestReply, attr, attributes, config, counter, gzip, log, protobuf, spans,
    start_api, status,
};
use serde_json::json;

const SIGNALS: [&str; 3] = ["logs", "traces", "metrics"];

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn only_a_deployment_token_may_send_and_it_gets_exactly_accepted_true() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, e2e::api::NewDeployment::pull());
    let body = protobuf(&spans(&names("auth", 1), Vec::new()));
    let basic = |credential: &str| Some(format!("Basic {}", base64(credential.as_bytes())));
    for signal in SIGNALS {
        // (Authorization, status, code)
        let cases = [
            (None, 401, Some("UNAUTHORIZED")),
            (
                Some("Bearer ax_deploy_unknown".to_owned()),
                401,
                Some("UNAUTHORIZED"),
            ),
            (Some("Token x".to_owned()), 401, Some("UNAUTHORIZED")),
            (
                Some(format!("Bearer {}", api.admin_token())),
                403,
                Some("FORBIDDEN"),
            ),
            (
                Some(format!("Bearer {}", group.token)),
                403,
                Some("FORBIDDEN"),
            ),
            (Some(format!("Bearer {}", deployment.token)), 200, None),
            (basic(&format!("x:{}", deployment.token)), 200, None),
        ];
        for (authorization, want, code) in cases {
            let bytes = if signal == "traces" {
                body.clone()
            } else {
                Vec::new()
            };
            let reply = Ingest::new(signal, bytes, "")
                .authorization(authorization.clone())
                .send(&api);
            assert_eq!(
                reply.status,
                want,
                "{signal} {authorization:?}: {}",
                reply.summary()
            );
            match code {
                Some(code) => {
                    assert_eq!(reply.code().as_deref(), Some(code), "{}", reply.summary());
                    if want == 403 {
                        assert_eq!(
                            reply.message().as_deref(),
                            Some("Cannot ingest this telemetry signal")
                        );
                    }
                }
                // The operator deletes its buffered copy only on exactly this body.
                None => assert_eq!(reply.body, IngestReply::ACCEPTED),
            }
        }
    }
    // A revoked deployment token is refused.
    api.revoke(&deployment.token);
    let reply = Ingest::new("logs", Vec::new(), &deployment.token).send(&api);
    assert_eq!(reply.status, 401, "{}", reply.summary());
}

#[test]
fn protobuf_json_and_gzip_arrive_as_protobuf_with_the_origin_added() {
    let backend = Backend::start();
    let api = start_api(config(Some(&backend.url()), ""));
    let group = api.create_group();
    let deployment = api.create_deployment(&group, e2e::api::NewDeployment::pull());
    let token = &deployment.token;
    let pb = protobuf(&spans(
        &names("pb", 2),
        vec![attr("alien.deployment_id", "the-sender-says")],
    ));
    let json_body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-client"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "json-0", "kind": 2,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000100000000"
        }]}]
    }]})
    .to_string()
    .into_bytes();
    let cases: Vec<(Option<&str>, Option<&str>, Vec<u8>)> = vec![
        (Some("application/x-protobuf"), None, pb.clone()),
        // No content type: protobuf, as the public manager never looked.
        (None, None, protobuf(&spans(&names("bare", 1), Vec::new()))),
        (
            Some("application/x-protobuf"),
            Some("gzip"),
            gzip(&protobuf(&spans(&names("gz", 1), Vec::new()))),
        ),
        (Some("application/json"), None, json_body.clone()),
        (
            Some("application/json; charset=utf-8"),
            Some("gzip"),
            gzip(&json_body),
        ),
    ];
    for (content_type, encoding, bytes) in cases {
        let reply = Ingest::new("traces", bytes, token)
            .content_type(content_type)
            .encoding(encoding)
            .send(&api);
        assert!(
            reply.accepted(),
            "{content_type:?} {encoding:?}: {}",
            reply.summary()
        );
    }
    backend.wait(Duration::from_secs(10), "6 spans", |b| {
        b.span_names().len() >= 6
    });
    let mut got = backend.span_names();
    got.sort();
    assert_eq!(got, ["bare-0", "gz-0", "json-0", "json-0", "pb-0", "pb-1"]);
    for received in backend.delivered("traces") {
        for resource_spans in received.traces().resource_spans {
            let attributes = attributes(resource_spans.resource.as_ref());
            let span = &resource_spans.scope_spans[0].spans[0];
            if span.name == "json-0" {
                // Hex in JSON, bytes in protobuf.
                assert_eq!(hex(&span.trace_id), "5b8efff798038103d269b633813fc60c");
                assert_eq!(hex(&span.span_id), "eee19b7ec3c1b174");
                assert_eq!(attributes["service.name"], "json-client");
            }
            let expected_id = if span.name.starts_with("pb") {
                "the-sender-says"
            } else {
                deployment.id.as_str()
            };
            assert_eq!(
                attributes["alien.deployment_id"], expected_id,
                "{}",
                span.name
            );
            assert_eq!(attributes["alien.deployment_group_id"], group.id);
            assert_eq!(attributes["alien.deployment_name"], deployment.name);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn bad_bodies_get_a_clear_4xx_and_nothing_is_queued() {
    let backend = Backend::start();
    let api = start_api(config(
        Some(&backend.url()),
        "max-body-bytes = 65536\nmax-decompressed-bytes = 1048576",
    ));
    let group = api.create_group();
    let deployment = api.create_deployment(&group, e2e::api::NewDeployment::pull());
    let token = &deployment.token;
    let good = protobuf(&spans(&names("good", 3), Vec::new()));
    // 40 MiB of zeros in some 40 KiB: under the body limit, far over the inflated one.
    let bomb = {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut encoder, &vec![0u8; 40 << 20]).expect("gzip");
        encoder.finish().expect("gzip")
    };
    assert!(bomb.len() < 65536, "{}", bomb.len());
    // (what, signal, content type, content encoding, body, status, code, words of the message)
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Vec<u8>,
        u16,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        ("truncated protobuf", "traces", Some("application/x-protobuf"), None,
            good[..good.len() - 4].to_vec(), 400, "BAD_REQUEST", "Invalid OTLP protobuf ExportTraceServiceRequest"),
        ("garbage protobuf", "metrics", Some("application/x-protobuf"), None,
            vec![0xff; 64], 400, "BAD_REQUEST", "Invalid OTLP protobuf ExportMetricsServiceRequest"),
        ("invalid JSON", "logs", Some("application/json"), None,
            br#"{"resourceLogs": [{"scopeLogs": ["#.to_vec(), 400, "BAD_REQUEST", "Invalid OTLP/JSON ExportLogsServiceRequest"),
        ("a base64 trace id in JSON", "traces", Some("application/json"), None,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"W47/95gDgQPSabYzgT/GDA==","spanId":"7uGbfsPBsXQ="}]}]}]}"#.to_vec(),
            400, "BAD_REQUEST", "Invalid OTLP/JSON ExportTraceServiceRequest"),
        ("wrong content type", "logs", Some("text/plain"), None,
            b"hello".to_vec(), 415, "UNSUPPORTED_MEDIA_TYPE", "text/plain"),
        ("gRPC content type", "traces", Some("application/grpc"), None,
            good.clone(), 415, "UNSUPPORTED_MEDIA_TYPE", "application/grpc"),
        ("unsupported encoding", "traces", Some("application/x-protobuf"), Some("br"),
            good.clone(), 415, "UNSUPPORTED_MEDIA_TYPE", "Content-Encoding"),
        ("gzip that is not", "traces", Some("application/x-protobuf"), Some("gzip"),
            good.clone(), 400, "BAD_REQUEST", "Invalid gzip body"),
        ("gzip bomb", "logs", Some("application/x-protobuf"), Some("gzip"),
            bomb, 413, "PAYLOAD_TOO_LARGE", "inflates to more than the limit of 1048576 bytes"),
        ("body over the limit", "traces", Some("application/x-protobuf"), None,
            vec![0u8; 65537], 413, "PAYLOAD_TOO_LARGE", "larger than the limit of 65536 bytes"),
    ];
    for (what, signal, content_type, encoding, bytes, want, code, words) in cases {
        let reply = Ingest::new(signal, bytes, token)
            .content_type(content_type)
            .encoding(encoding)
            .send(&api);
        assert_eq!(reply.status, want, "{what}: {}", reply.summary());
        assert_eq!(
            reply.code().as_deref(),
            Some(code),
            "{what}: {}",
            reply.summary()
        );
        let message = reply.message().unwrap_or_default();
        assert!(message.contains(words), "{what}: {message}");
    }
    let counters = status(&api);
    for signal in SIGNALS {
        let s = &counters["signals"][signal];
        assert_eq!(s["acceptedRecords"], 0, "{signal}: {counters}");
        assert_eq!(s["queueRecords"], 0, "{signal}: {counters}");
    }
    // A good one after all that goes through, and is all the backend ever got.
    let reply = Ingest::new("traces", good, token).send(&api);
    assert!(reply.accepted(), "{}", reply.summary());
    backend.wait(Duration::from_secs(10), "the good spans", |b| {
        b.span_names().len() == 3
    });
    assert_eq!(backend.received().len(), 1);
}

#[test]
fn without_an_endpoint_telemetry_is_accepted_discarded_and_counted() {
    let api = start_api(config(None, ""));
    let group = api.create_group();
    let deployment = api.create_deployment(&group, e2e::api::NewDeployment::pull());
    for n in 0..3 {
        let body = protobuf(&log(&format!("discard-{n}"), 200));
        let reply = Ingest::new("logs", body, &deployment.token).send(&api);
        assert!(reply.accepted(), "{}", reply.summary());
    }
    let discarded = e2e::wait_for(Duration::from_secs(10), || {
        (counter(&api, "logs", "discardedRecords") == 3).then_some(())
    });
    assert!(discarded.is_some(), "{}", status(&api));
    let counters = status(&api);
    assert_eq!(counters["forwarding"], false);
    assert_eq!(counters["signals"]["logs"]["acceptedRecords"], 3);
    assert_eq!(counters["signals"]["logs"]["queueRecords"], 0);
    assert_eq!(counters["signals"]["logs"]["sentRecords"], 0);
}

#[test]
fn the_counters_are_for_an_admin_only() {
    let api = Api::start();
    let group = api.create_group();
    let deployment = api.create_deployment(&group, e2e::api::NewDeployment::pull());
    let body = status(&api);
    for signal in SIGNALS {
        for key in [
            "queueRecords",
            "queueBytes",
            "oldestRecordAgeSecs",
            "acceptedRecords",
            "sentRecords",
            "sentItems",
            "retried",
            "droppedRecords",
            "discardedRecords",
            "refusedFull",
        ] {
            assert!(
                body["signals"][signal].get(key).is_some(),
                "{signal}.{key}: {body}"
            );
        }
    }
    let get = || Request::get("/v1/telemetry/status");
    api.expect_error(&get(), 401, "UNAUTHORIZED");
    api.expect_error(&get().bearer(&group.token), 403, "FORBIDDEN");
    api.expect_error(&get().bearer(&deployment.token), 403, "FORBIDDEN");
}
