//! OTLP ingest, a durable queue, and forwarding to the vendor's observability backend.
//!
//! Serves HTTP/1.1 on `<data>/run/otelfwd.sock`; only the manager talks to it, after it has
//! authenticated the sender (`protocol::otelfwd` is that protocol). A request's path: [`server`]
//! receives it, [`decode`] turns it into enriched protobuf, [`queue`] makes it durable
//! before the sender is answered, and a [`forward`]er per signal sends batches on.

pub mod decode;
mod error;
pub mod forward;
pub mod queue;
pub mod server;
mod stats;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use plumbing::config::TelemetryConfig;
use plumbing::{Daemon, DaemonContext};
use protocol::otelfwd::Signal;
use tracing::info;

pub use error::{Error, IngestError};

pub use crate::forward::Target;
use crate::forward::{Backoff, Forwarder};
use crate::queue::{BatchLimits, Queue, QueueConfig};
use crate::stats::Counters;

/// The three signals' durable queues and their forwarders: what otelfwd runs behind its
/// socket, and what the pull agent runs behind its local OTLP receiver.
#[derive(Debug)]
pub struct Pipeline {
    queues: [Arc<Queue>; 3],
    counters: [Arc<Counters>; 3],
    stop: Arc<AtomicBool>,
    config: TelemetryConfig,
}

impl Pipeline {
    /// Opens (blocking: it scans and fsyncs segment files) the queues under `root`, one
    /// directory per signal, and starts a forwarder per signal towards `target(signal)`
    /// (none: accepted and discarded).
    pub fn start(
        root: &Path,
        config: &TelemetryConfig,
        target: impl Fn(Signal) -> Option<Target>,
    ) -> Result<Pipeline, Error> {
        let queue_config = QueueConfig {
            max_bytes: config.queue_max_bytes / Signal::ALL.len() as u64,
            segment_bytes: config.queue_segment_bytes,
        };
        let [logs, traces, metrics] =
            Signal::ALL.map(|signal| Queue::open(&root.join(signal.name()), queue_config));
        let queues = [Arc::new(logs?), Arc::new(traces?), Arc::new(metrics?)];
        let counters: [Arc<Counters>; 3] = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let limits = BatchLimits {
            max_items: config.batch_max_items,
            max_bytes: config.batch_max_bytes,
            linger: config.batch_timeout(),
        };
        let backoff = Backoff {
            initial: config.retry_initial(),
            max: config.retry_max(),
        };
        for signal in Signal::ALL {
            let queued = queues[signal.index()].stats();
            info!(%signal, records = queued.records, bytes = queued.bytes, "queue opened");
            Forwarder {
                signal,
                queue: Arc::clone(&queues[signal.index()]),
                counters: Arc::clone(&counters[signal.index()]),
                target: target(signal),
                limits,
                backoff,
                stop: Arc::clone(&stop),
            }
            .spawn()
            .map_err(|source| Error::Thread { signal, source })?;
        }
        Ok(Pipeline {
            queues,
            counters,
            stop,
            config: config.clone(),
        })
    }

    /// What the ingest routes share.
    pub fn ingest_state(&self) -> server::State {
        server::State::new(&self.config, self.queues.clone(), self.counters.clone())
    }

    /// The queue of one signal, for records that are protobuf already.
    pub fn queue(&self, signal: Signal) -> &Arc<Queue> {
        &self.queues[signal.index()]
    }

    /// Stops the forwarders and closes the queues; whatever is being sent stays queued for
    /// the next start.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for queue in &self.queues {
            queue.close();
        }
    }
}

/// Runs otelfwd until `ctx.shutdown` is cancelled.
pub async fn run(ctx: DaemonContext) -> Result<(), Error> {
    let config = ctx.config.telemetry.clone();
    let root = ctx.data.state_dir(Daemon::Otelfwd);
    let pipeline = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            Pipeline::start(&root, &config, |signal| {
                Target::from_config(&config, signal)
            })
        })
        .await??
    };
    match &config.otlp_endpoint {
        Some(endpoint) => info!(%endpoint, "forwarding telemetry"),
        None => info!("no [telemetry] otlp-endpoint: telemetry is accepted and discarded"),
    }
    let router = server::router(pipeline.ingest_state());
    let served = plumbing::uds::serve_sidecar(&ctx, Daemon::Otelfwd, router).await;
    pipeline.stop();
    served?;
    Ok(())
}
