//! From an ingest body to the record that is queued: the encoding (protobuf or OTLP/JSON),
//! gzip with a cap on what it inflates to, the OTLP message of the signal, the `alien.*`
//! resource attributes the sender did not set, and protobuf again for the backend.

use std::io::Read;

use flate2::read::MultiGzDecoder;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde::de::DeserializeOwned;

use crate::error::IngestError;
use protocol::otelfwd::Origin;
use protocol::otelfwd::Signal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// OTLP/HTTP's two encodings. A request without a `Content-Type` is protobuf: the public
    /// manager never looked at the header, and every sender it knew sent protobuf.
    pub fn from_content_type(value: Option<&str>) -> Result<Format, IngestError> {
        let Some(value) = value else {
            return Ok(Format::Protobuf);
        };
        let essence = value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
            "application/json" => Ok(Format::Json),
            _ => Err(IngestError::UnsupportedMediaType(format!(
                "Content-Type {value:?} is not an OTLP/HTTP encoding: send application/x-protobuf or application/json"
            ))),
        }
    }
}

/// Whether the body is gzip-compressed (`Content-Encoding: gzip`) or as it is.
pub fn is_gzip(content_encoding: Option<&str>) -> Result<bool, IngestError> {
    match content_encoding
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "identity") => Ok(false),
        Some("gzip" | "x-gzip") => Ok(true),
        Some(other) => Err(IngestError::UnsupportedMediaType(format!(
            "Content-Encoding {other:?} is not supported: send gzip or no encoding"
        ))),
    }
}

/// Limits on one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// What a gzip body may inflate to.
    pub max_decompressed: u64,
}

/// A request ready for the queue: protobuf with the origin's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub payload: Vec<u8>,
    /// Spans, log records or data points.
    pub items: u32,
    /// Whether it carries any resource at all; an empty export needs no forwarding.
    pub empty: bool,
}

/// Decodes, enriches and re-encodes one ingest body. CPU-bound: run it off the reactor.
pub fn decode(
    signal: Signal,
    format: Format,
    gzip: bool,
    body: &[u8],
    limits: Limits,
    origin: &Origin,
) -> Result<Decoded, IngestError> {
    let inflated;
    let bytes = if gzip {
        inflated = inflate(body, limits.max_decompressed)?;
        &inflated[..]
    } else {
        body
    };
    match signal {
        Signal::Logs => process::<ExportLogsServiceRequest>(format, bytes, origin),
        Signal::Traces => process::<ExportTraceServiceRequest>(format, bytes, origin),
        Signal::Metrics => process::<ExportMetricsServiceRequest>(format, bytes, origin),
    }
}

/// gunzip `body`, refusing to inflate past `limit` (a gzip bomb stops there).
pub fn inflate(body: &[u8], limit: u64) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::new();
    MultiGzDecoder::new(body)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::Malformed(format!("Invalid gzip body: {e}")))?;
    if out.len() as u64 > limit {
        return Err(IngestError::DecompressedTooLarge { limit });
    }
    Ok(out)
}

/// An OTLP export request of one signal.
pub trait ExportRequest: Message + DeserializeOwned + Default {
    const NAME: &'static str;
    fn resources(&mut self) -> Vec<&mut Option<Resource>>;
    fn items(&self) -> u64;
}

impl ExportRequest for ExportTraceServiceRequest {
    const NAME: &'static str = "ExportTraceServiceRequest";
    fn resources(&mut self) -> Vec<&mut Option<Resource>> {
        self.resource_spans
            .iter_mut()
            .map(|r| &mut r.resource)
            .collect()
    }
    fn items(&self) -> u64 {
        self.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum()
    }
}

impl ExportRequest for ExportLogsServiceRequest {
    const NAME: &'static str = "ExportLogsServiceRequest";
    fn resources(&mut self) -> Vec<&mut Option<Resource>> {
        self.resource_logs
            .iter_mut()
            .map(|r| &mut r.resource)
            .collect()
    }
    fn items(&self) -> u64 {
        self.resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as u64)
            .sum()
    }
}

impl ExportRequest for ExportMetricsServiceRequest {
    const NAME: &'static str = "ExportMetricsServiceRequest";
    fn resources(&mut self) -> Vec<&mut Option<Resource>> {
        self.resource_metrics
            .iter_mut()
            .map(|r| &mut r.resource)
            .collect()
    }
    fn items(&self) -> u64 {
        self.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.len(),
                Some(Data::Sum(s)) => s.data_points.len(),
                Some(Data::Histogram(h)) => h.data_points.len(),
                Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                Some(Data::Summary(s)) => s.data_points.len(),
                None => 0,
            } as u64)
            .sum()
    }
}

fn process<R: ExportRequest>(
    format: Format,
    bytes: &[u8],
    origin: &Origin,
) -> Result<Decoded, IngestError> {
    let mut request: R = match format {
        Format::Protobuf => R::decode(bytes).map_err(|e| {
            IngestError::Malformed(format!("Invalid OTLP protobuf {}: {e}", R::NAME))
        })?,
        Format::Json => serde_json::from_slice(bytes)
            .map_err(|e| IngestError::Malformed(format!("Invalid OTLP/JSON {}: {e}", R::NAME)))?,
    };
    let resources = request.resources();
    let empty = resources.is_empty();
    for resource in resources {
        enrich(resource.get_or_insert_with(Resource::default), origin);
    }
    let items = u32::try_from(request.items()).unwrap_or(u32::MAX);
    Ok(Decoded {
        payload: request.encode_to_vec(),
        items,
        empty,
    })
}

/// Adds the origin's attributes the resource does not have already: what the sender set
/// wins.
pub fn enrich(resource: &mut Resource, origin: &Origin) {
    for (key, value) in origin.attributes() {
        if resource.attributes.iter().any(|kv| kv.key == key) {
            continue;
        }
        resource.attributes.push(KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
            ..KeyValue::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn origin() -> Origin {
        Origin {
            deployment_id: "dep_1".into(),
            deployment_name: Some("web".into()),
            deployment_group_id: Some("dg_1".into()),
            deployment_group_name: None,
            release_id: Some("rel_1".into()),
        }
    }

    fn string_attr(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..KeyValue::default()
        }
    }

    fn traces(spans: usize, attributes: Vec<KeyValue>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes,
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: (0..spans)
                        .map(|n| Span {
                            trace_id: vec![1; 16],
                            span_id: vec![n as u8; 8],
                            name: format!("span {n}"),
                            ..Span::default()
                        })
                        .collect(),
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    const LIMITS: Limits = Limits {
        max_decompressed: 1 << 20,
    };

    fn attributes(decoded: &Decoded) -> Vec<(String, String)> {
        let request = ExportTraceServiceRequest::decode(&decoded.payload[..]).expect("protobuf");
        request.resource_spans[0]
            .resource
            .as_ref()
            .expect("resource")
            .attributes
            .iter()
            .map(|kv| {
                let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), value)
            })
            .collect()
    }

    #[test]
    fn protobuf_is_enriched_without_overwriting_the_sender() {
        let request = traces(3, vec![string_attr("alien.release_id", "mine")]);
        let decoded = decode(
            Signal::Traces,
            Format::Protobuf,
            false,
            &request.encode_to_vec(),
            LIMITS,
            &origin(),
        )
        .expect("decodes");
        assert_eq!(decoded.items, 3);
        assert!(!decoded.empty);
        assert_eq!(
            attributes(&decoded),
            [
                ("alien.release_id".to_owned(), "mine".to_owned()),
                ("alien.deployment_id".into(), "dep_1".into()),
                ("alien.deployment_name".into(), "web".into()),
                ("alien.deployment_group_id".into(), "dg_1".into()),
            ]
        );
    }

    #[test]
    fn json_ids_are_hex_and_gzip_is_inflated() {
        let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
            "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"GET /","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000"}]}]}]}"#;
        let decoded = decode(
            Signal::Traces,
            Format::Json,
            true,
            &gzip(json),
            LIMITS,
            &origin(),
        )
        .expect("decodes");
        let request = ExportTraceServiceRequest::decode(&decoded.payload[..]).expect("protobuf");
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            span.trace_id,
            [
                0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
                0xc6, 0x0c
            ]
        );
        assert_eq!(
            span.span_id,
            [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
        );
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(attributes(&decoded)[0].0, "service.name");
        assert!(attributes(&decoded).contains(&("alien.deployment_id".into(), "dep_1".into())));
    }

    #[test]
    fn a_resource_the_sender_left_out_is_added() {
        let json = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}},{}]}]}]}"#;
        let decoded =
            decode(Signal::Logs, Format::Json, false, json, LIMITS, &origin()).expect("decodes");
        assert_eq!(decoded.items, 2);
        let request = ExportLogsServiceRequest::decode(&decoded.payload[..]).expect("protobuf");
        let resource = request.resource_logs[0].resource.as_ref().expect("added");
        assert_eq!(resource.attributes[0].key, "alien.deployment_id");
    }

    #[test]
    fn metrics_count_data_points() {
        let json = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"name":"a","gauge":{"dataPoints":[{"asDouble":1.5},{"asInt":"2"}]}},
            {"name":"b","sum":{"dataPoints":[{"asInt":"3"}],"aggregationTemporality":2,"isMonotonic":true}}]}]}]}"#;
        let decoded = decode(
            Signal::Metrics,
            Format::Json,
            false,
            json,
            LIMITS,
            &origin(),
        )
        .expect("decodes");
        assert_eq!(decoded.items, 3);
    }

    #[test]
    fn an_empty_export_is_valid_and_empty() {
        for (format, body) in [(Format::Protobuf, &b""[..]), (Format::Json, &b"{}"[..])] {
            let decoded =
                decode(Signal::Traces, format, false, body, LIMITS, &origin()).expect("decodes");
            assert!(decoded.empty);
            assert_eq!(decoded.items, 0);
        }
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let request = traces(2, Vec::new()).encode_to_vec();
        let bomb = gzip(&vec![0u8; 2 << 20]);
        // (signal, format, gzip, body, error message words or the decompressed limit)
        let cases: Vec<(Signal, Format, bool, Vec<u8>, &str)> = vec![
            (
                Signal::Traces,
                Format::Protobuf,
                false,
                request[..request.len() - 3].to_vec(),
                "Invalid OTLP protobuf ExportTraceServiceRequest",
            ),
            (
                Signal::Logs,
                Format::Json,
                false,
                br#"{"resourceLogs": [}"#.to_vec(),
                "Invalid OTLP/JSON ExportLogsServiceRequest",
            ),
            (
                Signal::Traces,
                Format::Json,
                false,
                br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#.to_vec(),
                "Invalid OTLP/JSON ExportTraceServiceRequest",
            ),
            (
                Signal::Metrics,
                Format::Protobuf,
                true,
                b"not gzip at all".to_vec(),
                "Invalid gzip body",
            ),
            (Signal::Logs, Format::Protobuf, true, bomb, "limit"),
        ];
        for (signal, format, gzip, body, words) in cases {
            let error = decode(signal, format, gzip, &body, LIMITS, &origin())
                .expect_err(words)
                .to_string();
            assert!(error.contains(words), "{words}: {error}");
        }
    }

    #[test]
    fn content_types_and_encodings() {
        for (value, expected) in [
            (None, Some(Format::Protobuf)),
            (Some("application/x-protobuf"), Some(Format::Protobuf)),
            (Some("application/protobuf"), Some(Format::Protobuf)),
            (Some("application/json; charset=utf-8"), Some(Format::Json)),
            (Some("Application/JSON"), Some(Format::Json)),
            (Some("text/plain"), None),
            (Some("application/grpc"), None),
        ] {
            assert_eq!(Format::from_content_type(value).ok(), expected, "{value:?}");
        }
        for (value, expected) in [
            (None, Some(false)),
            (Some("identity"), Some(false)),
            (Some("gzip"), Some(true)),
            (Some("GZIP"), Some(true)),
            (Some("br"), None),
            (Some("deflate"), None),
        ] {
            assert_eq!(is_gzip(value).ok(), expected, "{value:?}");
        }
    }
}
