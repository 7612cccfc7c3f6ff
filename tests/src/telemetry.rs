//! For the telemetry tests: an OTLP/HTTP backend that records what the manager forwards and
//! answers as told, OTLP requests made here, the OpenTelemetry Python SDK as a real client,
//! and a server configured to forward to a backend.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::Value;

use crate::api::{Api, Request};
use crate::{Options, wait_for};

/// The header the backend is configured to receive with every request.
pub const API_KEY_HEADER: &str = "x-e2e-api-key";
pub const API_KEY: &str = "e2e-secret-key";

/// How the backend answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// This status with `Retry-After: secs`.
    RetryAfter(u16, u64),
    /// Closes the connection without answering.
    Hangup,
}

/// One request the backend received (and answered 2xx or not).
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The body, gunzipped when it was gzip.
    pub body: Vec<u8>,
    pub answered: u16,
    pub at: Instant,
}

impl Received {
    pub fn traces(&self) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(&self.body[..]).expect("the backend got protobuf traces")
    }
    pub fn logs(&self) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest::decode(&self.body[..]).expect("the backend got protobuf logs")
    }
    pub fn metrics(&self) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest::decode(&self.body[..])
            .expect("the backend got protobuf metrics")
    }
}

#[derive(Debug, Default)]
struct Script {
    /// Answers to give next, per path, before `default`.
    queued: BTreeMap<String, VecDeque<Answer>>,
    /// The answer per path when nothing is queued; 200 for unknown paths.
    default: BTreeMap<String, Answer>,
    received: Vec<Received>,
}

/// An OTLP/HTTP backend on 127.0.0.1: HTTP/1.1 with keep-alive, one thread per connection.
#[derive(Debug)]
pub struct Backend {
    port: u16,
    script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start() -> Backend {
        Backend::start_on(0)
    }

    /// On `port` (0: any), for a backend that comes up where the manager already points.
    pub fn start_on(port: u16) -> Backend {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the test backend");
        let port = listener.local_addr().expect("address").port();
        let script = Arc::new(Mutex::new(Script::default()));
        let stop = Arc::new(AtomicBool::new(false));
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn({
            let script = Arc::clone(&script);
            let stop = Arc::clone(&stop);
            move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let script = Arc::clone(&script);
                            let stop = Arc::clone(&stop);
                            std::thread::spawn(move || serve(stream, &script, &stop));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        });
        Backend { port, script, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Answers for `/v1/{signal}` from now on, once each in order, before the default.
    pub fn queue(&self, signal: &str, answers: &[Answer]) {
        self.lock()
            .queued
            .entry(format!("/v1/{signal}"))
            .or_default()
            .extend(answers);
    }

    /// The answer for `/v1/{signal}` when nothing is queued.
    pub fn set_default(&self, signal: &str, answer: Answer) {
        self.lock().default.insert(format!("/v1/{signal}"), answer);
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// The requests to `/v1/{signal}` that were answered 2xx.
    pub fn delivered(&self, signal: &str) -> Vec<Received> {
        let path = format!("/v1/{signal}");
        self.received()
            .into_iter()
            .filter(|r| r.path == path && (200..300).contains(&r.answered))
            .collect()
    }

    /// Names of the spans delivered, in order of arrival (duplicates kept).
    pub fn span_names(&self) -> Vec<String> {
        self.delivered("traces")
            .iter()
            .flat_map(|r| r.traces().resource_spans)
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .map(|s| s.name)
            .collect()
    }

    /// String bodies of the log records delivered.
    pub fn log_bodies(&self) -> Vec<String> {
        self.delivered("logs")
            .iter()
            .flat_map(|r| r.logs().resource_logs)
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records)
            .filter_map(|l| match l.body.and_then(|b| b.value) {
                Some(any_value::Value::StringValue(s)) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// Waits until `done` holds of the backend; fails the test with `what` if not in time.
    pub fn wait(&self, timeout: Duration, what: &str, done: impl Fn(&Backend) -> bool) {
        if wait_for(timeout, || done(self).then_some(())).is_none() {
            panic!(
                "the backend did not get {what} within {timeout:?}; it got {} requests: {:?}",
                self.received().len(),
                self.received()
                    .iter()
                    .map(|r| format!("{} -> {}", r.path, r.answered))
                    .collect::<Vec<_>>()
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, script: &Mutex<Script>, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while !stop.load(Ordering::Relaxed) {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut headers = BTreeMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
            let mut inflated = Vec::new();
            if MultiGzDecoder::new(&body[..])
                .read_to_end(&mut inflated)
                .is_ok()
            {
                body = inflated;
            }
        }
        let answer = {
            let mut script = script.lock().unwrap_or_else(PoisonError::into_inner);
            let answer = script
                .queued
                .get_mut(&path)
                .and_then(VecDeque::pop_front)
                .or_else(|| script.default.get(&path).copied())
                .unwrap_or(Answer::Status(200));
            let answered = match answer {
                Answer::Status(s) | Answer::RetryAfter(s, _) => s,
                Answer::Hangup => 0,
            };
            script.received.push(Received {
                path,
                headers,
                body,
                answered,
                at: Instant::now(),
            });
            answer
        };
        let (status, retry_after) = match answer {
            Answer::Status(s) => (s, None),
            Answer::RetryAfter(s, secs) => (s, Some(secs)),
            Answer::Hangup => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        };
        let text = if status < 300 {
            "{}"
        } else {
            "scripted refusal"
        };
        let mut response = format!(
            "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            text.len()
        );
        if let Some(secs) = retry_after {
            response.push_str(&format!("retry-after: {secs}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(text);
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// The `[telemetry]` section that forwards to `endpoint` with the test's header, with short
/// batching and retry delays so that the tests run quickly; `extra` lines are added.
pub fn config(endpoint: Option<&str>, extra: &str) -> String {
    let endpoint = endpoint.map_or(String::new(), |e| format!("otlp-endpoint = \"{e}\"\n"));
    format!(
        "[telemetry]\n{endpoint}batch-timeout-ms = 50\nretry-initial-ms = 50\nretry-max-ms = 400\nrequest-timeout-secs = 5\n{extra}\n[telemetry.headers]\n\"{API_KEY_HEADER}\" = \"{API_KEY}\"\n"
    )
}

/// A running manager configured with `config`.
pub fn start_api(config: String) -> Api {
    Api::start_with(Options {
        config: Some(config),
        ..Options::default()
    })
}

/// A string attribute.
pub fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// The string attributes of a resource, by key.
pub fn attributes(resource: Option<&Resource>) -> BTreeMap<String, String> {
    resource
        .map(|r| r.attributes.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

/// An export of spans named `names`, from a service that sets `attributes` itself.
pub fn spans(names: &[String], attributes: Vec<KeyValue>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: names
                    .iter()
                    .enumerate()
                    .map(|(n, name)| Span {
                        trace_id: vec![0x5b; 16],
                        span_id: (n as u64 + 1).to_be_bytes().to_vec(),
                        name: name.clone(),
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_100_000_000,
                        ..Span::default()
                    })
                    .collect(),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// An export of one log record with `body`, padded with an attribute to about `size` bytes.
pub fn log(body: &str, size: usize) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![attr("service.name", "e2e")],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(body.into())),
                    }),
                    attributes: vec![attr("padding", &"x".repeat(size.saturating_sub(100)))],
                    ..LogRecord::default()
                }],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// `POST /v1/{signal}` as a deployment's exporter sends it.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub signal: String,
    pub content_type: Option<String>,
    pub encoding: Option<String>,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

impl Ingest {
    /// Protobuf, with `token` as its bearer.
    pub fn new(signal: &str, body: Vec<u8>, token: &str) -> Ingest {
        Ingest {
            signal: signal.to_owned(),
            content_type: Some("application/x-protobuf".into()),
            encoding: None,
            authorization: Some(format!("Bearer {token}")),
            body,
        }
    }

    pub fn content_type(mut self, value: Option<&str>) -> Ingest {
        self.content_type = value.map(str::to_owned);
        self
    }

    pub fn encoding(mut self, value: Option<&str>) -> Ingest {
        self.encoding = value.map(str::to_owned);
        self
    }

    /// The whole `Authorization` header, or none.
    pub fn authorization(mut self, value: Option<String>) -> Ingest {
        self.authorization = value;
        self
    }

    pub fn send(&self, api: &Api) -> IngestReply {
        self.try_send(api).unwrap_or_else(|e| {
            panic!(
                "POST /v1/{}: no answer: {e}\nserver stderr:\n{}",
                self.signal,
                api.server().stderr()
            )
        })
    }

    pub fn try_send(&self, api: &Api) -> Result<IngestReply, ureq::Error> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut builder = ureq::http::Request::builder().method("POST").uri(format!(
            "{}/v1/{}",
            api.base_url(),
            self.signal
        ));
        for (name, value) in [
            ("Content-Type", &self.content_type),
            ("Content-Encoding", &self.encoding),
            ("Authorization", &self.authorization),
        ] {
            if let Some(value) = value {
                builder = builder.header(name, value);
            }
        }
        let response = agent.run(builder.body(self.body.clone())?)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.into_body().read_to_string()?;
        Ok(IngestReply {
            status,
            retry_after,
            body,
        })
    }
}

#[derive(Debug, Clone)]
pub struct IngestReply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl IngestReply {
    pub const ACCEPTED: &str = r#"{"accepted":true}"#;

    pub fn accepted(&self) -> bool {
        self.status == 200 && self.body == IngestReply::ACCEPTED
    }

    fn field(&self, key: &str) -> Option<String> {
        serde_json::from_str::<Value>(&self.body)
            .ok()?
            .get(key)?
            .as_str()
            .map(str::to_owned)
    }

    pub fn code(&self) -> Option<String> {
        self.field("code")
    }

    pub fn message(&self) -> Option<String> {
        self.field("message")
    }

    pub fn summary(&self) -> String {
        format!(
            "{} (Retry-After {:?}) {}",
            self.status,
            self.retry_after,
            crate::api::shorten(&self.body, 300)
        )
    }

    /// A refusal the sender should retry: 503 with `Retry-After`, the envelope, never a 500.
    pub fn assert_retry_later(&self) {
        assert_eq!(self.status, 503, "{}", self.summary());
        assert_eq!(
            self.code().as_deref(),
            Some("SERVICE_UNAVAILABLE"),
            "{}",
            self.summary()
        );
        let after: u64 = self
            .retry_after
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Retry-After: {}", self.summary()));
        assert!(after >= 1, "{}", self.summary());
    }
}

pub fn protobuf(message: &impl Message) -> Vec<u8> {
    message.encode_to_vec()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// `GET /v1/telemetry/status` as the admin: otelfwd's counters.
pub fn status(api: &Api) -> Value {
    api.expect(&Request::get("/v1/telemetry/status").auth(api.admin()), 200)
}

/// The counters of `signal` in [`status`].
pub fn signal_status(api: &Api, signal: &str) -> Value {
    status(api)["signals"][signal].clone()
}

/// A counter of `signal`, or `None` while otelfwd cannot answer (it is restarting, say).
pub fn try_counter(api: &Api, signal: &str, name: &str) -> Option<u64> {
    let reply = api.send(&Request::get("/v1/telemetry/status").auth(api.admin()));
    (reply.status == 200)
        .then(|| reply.json()["signals"][signal][name].as_u64())
        .flatten()
}

/// A counter of `signal`, as a number.
pub fn counter(api: &Api, signal: &str, name: &str) -> u64 {
    signal_status(api, signal)[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} for {signal}"))
}

// ---- the OpenTelemetry Python SDK ----

/// The versions `tests/run` installs.
pub const OTEL_PYTHON_VERSION: &str = "1.45.2";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives in the workspace")
        .to_path_buf()
}

fn otel_venv() -> PathBuf {
    workspace_root().join("target/telemetry-tools/venv")
}

/// The virtual environment's Python, which has the OpenTelemetry SDK and its OTLP/HTTP
/// exporter (PyPI); fails the test, saying how to install them, when they are not there.
pub fn otel_python() -> PathBuf {
    let python = otel_venv().join("bin/python");
    let installed = Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed,
        "the OpenTelemetry Python SDK is not installed in {}: run `tests/run`, or \
         `python3 -m venv {venv} && {venv}/bin/pip install opentelemetry-sdk=={OTEL_PYTHON_VERSION} \
         opentelemetry-exporter-otlp-proto-http=={OTEL_PYTHON_VERSION}`",
        python.display(),
        venv = otel_venv().display()
    );
    python
}

/// What the SDK client is asked to send.
#[derive(Debug, Clone)]
pub struct SdkRun {
    pub base_url: String,
    pub token: String,
    pub spans: usize,
    pub logs: usize,
    pub gzip: bool,
}

/// The exporters' results, per signal (`SUCCESS` or `FAILURE` for each export).
pub type SdkResults = BTreeMap<String, Vec<String>>;

/// Sends spans, logs and a counter through the manager with the SDK's OTLP/HTTP exporters
/// (protobuf), and returns what each exporter reported.
pub fn run_sdk(run: &SdkRun, scratch: &Path) -> SdkResults {
    let script = scratch.join("otel_client.py");
    std::fs::write(&script, SDK_CLIENT).expect("write the SDK client");
    let output = crate::registry::run_tool(
        {
            let mut command = Command::new(otel_python());
            command
                .arg(&script)
                .arg(&run.base_url)
                .arg(&run.token)
                .arg(run.spans.to_string())
                .arg(run.logs.to_string())
                .arg(if run.gzip { "gzip" } else { "none" })
                .env("OTEL_SDK_DISABLED", "false")
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
                .env("NO_PROXY", "127.0.0.1,localhost");
            command
        },
        scratch,
    );
    assert!(
        output.success,
        "the SDK client failed\nstdout:\n{}\nstderr:\n{}",
        output.stdout, output.stderr
    );
    let line = output
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output from the SDK client; stderr:\n{}", output.stderr));
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "the SDK client printed {line:?} ({e})\nstderr:\n{}",
            output.stderr
        )
    })
}

/// The SDK client: the application a deployment runs, instrumented as the OpenTelemetry
/// documentation shows, with its exporters pointed at the manager. Each exporter is wrapped
/// to record its results; the metrics reader exports once, at shutdown.
const SDK_CLIENT: &str = r#"
import json, logging, sys
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

base, token, spans, logs, compression = sys.argv[1:6]
headers = {"authorization": "Bearer " + token}
compression = Compression.Gzip if compression == "gzip" else Compression.NoCompression
resource = Resource.create({"service.name": "e2e-sdk-client", "alien.deployment_name": "set-by-sender"})
results = {"traces": [], "logs": [], "metrics": []}

class Recorded:
    def __init__(self, inner, signal):
        self._inner, self._signal = inner, signal
    def export(self, batch, *args, **kwargs):
        result = self._inner.export(batch, *args, **kwargs)
        results[self._signal].append(getattr(result, "name", str(result)))
        return result
    def __getattr__(self, name):
        return getattr(self._inner, name)

tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(Recorded(OTLPSpanExporter(
    endpoint=base + "/v1/traces", headers=headers, compression=compression, timeout=10), "traces")))
tracer = tracer_provider.get_tracer("e2e")
for i in range(int(spans)):
    with tracer.start_as_current_span("sdk-span-%d" % i) as span:
        span.set_attribute("i", i)

logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(BatchLogRecordProcessor(Recorded(OTLPLogExporter(
    endpoint=base + "/v1/logs", headers=headers, compression=compression, timeout=10), "logs")))
logger = logging.getLogger("e2e")
logger.propagate = False
logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
logger.setLevel(logging.INFO)
for i in range(int(logs)):
    logger.info("sdk-log-%d", i)

metric_exporter = OTLPMetricExporter(
    endpoint=base + "/v1/metrics", headers=headers, compression=compression, timeout=10)
original_export = metric_exporter.export
def export_metrics(data, *args, **kwargs):
    result = original_export(data, *args, **kwargs)
    results["metrics"].append(getattr(result, "name", str(result)))
    return result
metric_exporter.export = export_metrics
reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3600000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
counter = meter_provider.get_meter("e2e").create_counter("sdk_requests")
for i in range(5):
    counter.add(1, {"route": "/r%d" % (i % 2)})

tracer_provider.shutdown()
logger_provider.shutdown()
meter_provider.shutdown()
print(json.dumps(results))
"#;
