//! One forwarder per signal, on a thread of its own: takes a batch from the head of the
//! signal's queue, sends it to `{otlp-endpoint}/v1/{signal}` as gzip-compressed protobuf with
//! the configured headers, and acknowledges it once the backend took it or refused it for
//! good. Retryable failures (429, 502, 503, 504, no answer) are retried with exponential
//! backoff and jitter, or after the backend's `Retry-After`, holding up only this signal.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use plumbing::config::TelemetryConfig;
use tracing::{debug, error, info, warn};

use crate::queue::{Batch, BatchLimits, Queue};
use crate::stats::Counters;
use protocol::otelfwd::Signal;

/// The longest `Retry-After` honoured, so that a backend's mistake cannot park a signal for
/// days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// Where and how batches are sent.
#[derive(Debug, Clone)]
pub struct Target {
    url: String,
    headers: Vec<(String, String)>,
    agent: ureq::Agent,
    /// Bodies go gzip-compressed (a backend), or as they are (a manager, which the public
    /// one forwards untouched, without their encoding).
    gzip: bool,
    /// A manager: delivered only once it answers `{"accepted":true}`, and its own troubles
    /// (500, 507) are waited out rather than taken as a refusal.
    manager: bool,
}

impl Target {
    /// `None` without an `otlp-endpoint`: batches are then discarded (and counted).
    pub fn from_config(config: &TelemetryConfig, signal: Signal) -> Option<Target> {
        let endpoint = config.otlp_endpoint.as_deref()?;
        let url = format!("{}/v1/{signal}", endpoint.trim_end_matches('/'));
        // Ours describe the body; a table entry must not contradict them.
        let headers = config
            .headers
            .iter()
            .filter(|(name, _)| {
                !name.eq_ignore_ascii_case("content-type")
                    && !name.eq_ignore_ascii_case("content-encoding")
            })
            .map(|(name, value)| (name.clone(), value.expose().to_owned()))
            .collect();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.request_timeout()))
            .user_agent(concat!("alien-manager-otelfwd/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Some(Target {
            url,
            headers,
            agent,
            gzip: true,
            manager: false,
        })
    }

    /// A manager's `/v1/{signal}`, as a pull agent sends to it with the deployment's token.
    pub fn manager(base_url: &str, token: &str, signal: Signal, timeout: Duration) -> Target {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("alien-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Target {
            url: format!("{}/v1/{signal}", base_url.trim_end_matches('/')),
            headers: vec![("authorization".into(), format!("Bearer {token}"))],
            agent,
            gzip: false,
            manager: true,
        }
    }
}

/// How the backend answered one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Rejected {
        reason: String,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based): `initial * 2^attempt` capped at
    /// `max`, less up to half of it at random (jitter), and never shorter than the
    /// backend's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self
            .initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        let jitter = exponential.mul_f64(random_fraction() / 2.0);
        let delay = exponential - jitter;
        match retry_after {
            Some(after) => delay.max(after.min(MAX_RETRY_AFTER)),
            None => delay,
        }
    }
}

#[derive(Debug)]
pub struct Forwarder {
    pub signal: Signal,
    pub queue: Arc<Queue>,
    pub counters: Arc<Counters>,
    pub target: Option<Target>,
    pub limits: BatchLimits,
    pub backoff: Backoff,
    pub stop: Arc<AtomicBool>,
}

impl Forwarder {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("forward-{}", self.signal))
            .spawn(move || self.run())
    }

    fn run(self) {
        while let Some(batch) = self.queue.next_batch(self.limits) {
            Counters::add(&self.counters.corrupt_records, batch.corrupt);
            let records = batch.records.len() as u64;
            let items = batch.items();
            let done = match &self.target {
                None => {
                    Counters::add(&self.counters.discarded_records, records);
                    Counters::add(&self.counters.discarded_items, items);
                    true
                }
                Some(_) if records == 0 => true,
                Some(target) => self.deliver(target, &batch),
            };
            if !done {
                return;
            }
            if let Err(error) = self.queue.ack(&batch) {
                warn!(signal = %self.signal, %error, "cannot record a delivery; it may be sent again");
            }
        }
    }

    /// Sends `batch` until it is delivered or refused for good (`true`), or otelfwd stops
    /// (`false`: it stays in the queue).
    fn deliver(&self, target: &Target, batch: &Batch) -> bool {
        let records = batch.records.len() as u64;
        let items = batch.items();
        let body = match encode(batch, target.gzip) {
            Ok(body) => body,
            // Compressing into memory cannot fail short of running out of it; stopping this
            // forwarder leaves the batch queued for the next start.
            Err(error) => {
                error!(signal = %self.signal, %error, "cannot compress a batch; forwarding of this signal stops");
                return false;
            }
        };
        let mut attempt = 0u32;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            let started = Instant::now();
            match send(target, &body) {
                Outcome::Delivered => {
                    debug!(signal = %self.signal, records, items, bytes = body.len(), elapsed = ?started.elapsed(), "batch delivered");
                    if attempt > 0 {
                        info!(signal = %self.signal, attempts = attempt + 1, "backend accepts again");
                    }
                    Counters::add(&self.counters.sent_records, records);
                    Counters::add(&self.counters.sent_items, items);
                    Counters::add(&self.counters.sent_batches, 1);
                    self.counters.set_last_error(None);
                    return true;
                }
                Outcome::Rejected { reason } => {
                    warn!(signal = %self.signal, records, items, %reason, "backend refused a batch for good; dropped");
                    Counters::add(&self.counters.dropped_records, records);
                    Counters::add(&self.counters.dropped_items, items);
                    self.counters.set_last_error(Some(reason));
                    return true;
                }
                Outcome::Retry { reason, after } => {
                    Counters::add(&self.counters.retried, 1);
                    let delay = self.backoff.delay(attempt, after);
                    if attempt == 0 || attempt.is_power_of_two() {
                        warn!(signal = %self.signal, attempt = attempt + 1, %reason, retry_in = ?delay, "backend unavailable; will retry");
                    }
                    self.counters.set_last_error(Some(reason));
                    if !self.sleep(delay) {
                        return false;
                    }
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }

    /// Sleeps `delay` unless told to stop first; `false` if stopped.
    fn sleep(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        while !self.stop.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        false
    }
}

/// The batch as one export request, gzip-compressed or not. Each record is an encoded
/// `Export*ServiceRequest`, whose only field is its repeated resource list; protobuf appends
/// repeated fields of concatenated messages, so the records laid end to end are the encoding
/// of one request that holds all their resources.
fn encode(batch: &Batch, gzip: bool) -> std::io::Result<Vec<u8>> {
    if !gzip {
        return Ok(batch
            .records
            .iter()
            .flat_map(|record| record.payload.iter().copied())
            .collect());
    }
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(batch.bytes() as usize / 4),
        Compression::fast(),
    );
    for record in &batch.records {
        encoder.write_all(&record.payload)?;
    }
    encoder.finish()
}

fn send(target: &Target, body: &[u8]) -> Outcome {
    let mut request = target
        .agent
        .post(&target.url)
        .header("content-type", "application/x-protobuf");
    if target.gzip {
        request = request.header("content-encoding", "gzip");
    }
    for (name, value) in &target.headers {
        request = request.header(name, value);
    }
    let response = match request.send(body) {
        Ok(response) => response,
        Err(error) => {
            return Outcome::Retry {
                reason: format!("POST {}: {error}", target.url),
                after: None,
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // Read (a little of) the answer: it says why, and reading it lets the connection be reused.
    let text = response
        .into_body()
        .with_config()
        .limit(64 * 1024)
        .read_to_vec()
        .map(|bytes| String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned())
        .unwrap_or_default();
    if target.manager {
        classify_manager(status, retry_after, &target.url, &text)
    } else {
        classify(status, retry_after, &target.url, &text)
    }
}

/// A manager keeps nothing it did not answer `{"accepted":true}` for; a 500 or a 507 (its
/// volume is full) passes.
fn classify_manager(status: u16, retry_after: Option<Duration>, url: &str, text: &str) -> Outcome {
    let accepted = serde_json::from_str::<serde_json::Value>(text)
        .is_ok_and(|answer| answer["accepted"] == true);
    match status {
        200..=299 if accepted => Outcome::Delivered,
        200..=299 => Outcome::Retry {
            reason: format!("POST {url}: HTTP {status} without {{\"accepted\":true}}"),
            after: retry_after,
        },
        500 | 507 => Outcome::Retry {
            reason: format!("POST {url}: HTTP {status}"),
            after: retry_after,
        },
        _ => classify(status, retry_after, url, text),
    }
}

fn classify(status: u16, retry_after: Option<Duration>, url: &str, text: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        429 | 502 | 503 | 504 => Outcome::Retry {
            reason: format!("POST {url}: HTTP {status}"),
            after: retry_after,
        },
        _ => Outcome::Rejected {
            reason: format!("POST {url}: HTTP {status}: {}", text.trim()),
        },
    }
}

/// A number in [0, 1) from the operating system's generator (0.5 if it fails).
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_answers_are_retried_or_dropped_as_otlp_says() {
        let after = Some(Duration::from_secs(3));
        for (status, retry) in [
            (200, None),
            (202, None),
            (429, Some(true)),
            (502, Some(true)),
            (503, Some(true)),
            (504, Some(true)),
            (400, Some(false)),
            (401, Some(false)),
            (404, Some(false)),
            (413, Some(false)),
            (500, Some(false)),
        ] {
            let outcome = classify(status, after, "http://b/v1/logs", "no");
            match (retry, outcome) {
                (None, Outcome::Delivered) => {}
                (Some(true), Outcome::Retry { after: got, .. }) => assert_eq!(got, after),
                (Some(false), Outcome::Rejected { reason }) => {
                    assert!(reason.contains(&status.to_string()), "{reason}");
                }
                (want, got) => panic!("{status}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_manager_keeps_only_what_it_answered_accepted_for() {
        let url = "http://m/v1/logs";
        let accepted = r#"{"accepted":true}"#;
        assert_eq!(
            classify_manager(200, None, url, accepted),
            Outcome::Delivered
        );
        for (status, text) in [
            (200, ""),
            (200, r#"{"accepted":false}"#),
            (500, ""),
            (507, ""),
            (503, ""),
        ] {
            assert!(
                matches!(
                    classify_manager(status, None, url, text),
                    Outcome::Retry { .. }
                ),
                "{status} {text}"
            );
        }
        for status in [400, 401, 403, 413] {
            assert!(matches!(
                classify_manager(status, None, url, ""),
                Outcome::Rejected { .. }
            ));
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max_and_honours_retry_after() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for (attempt, full) in [(0, 100), (1, 200), (3, 800), (5, 2000), (30, 2000)] {
            for _ in 0..20 {
                let delay = backoff.delay(attempt, None);
                let full = Duration::from_millis(full);
                assert!(delay <= full && delay >= full / 2, "{attempt}: {delay:?}");
            }
        }
        assert_eq!(
            backoff.delay(0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            backoff.delay(0, Some(Duration::from_secs(86_400))),
            MAX_RETRY_AFTER
        );
    }
}
