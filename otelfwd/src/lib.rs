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
mod server;
mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use plumbing::{Daemon, DaemonContext};
use protocol::otelfwd::Signal;
use tracing::info;

pub use error::{Error, IngestError};

use crate::forward::{Backoff, Forwarder, Target};
use crate::queue::{BatchLimits, Queue, QueueConfig};
use crate::stats::Counters;

/// Runs otelfwd until `ctx.shutdown` is cancelled.
pub async fn run(ctx: DaemonContext) -> Result<(), Error> {
    let config = &ctx.config.telemetry;
    let root = ctx.data.state_dir(Daemon::Otelfwd);
    let queue_config = QueueConfig {
        max_bytes: config.queue_max_bytes / Signal::ALL.len() as u64,
        segment_bytes: config.queue_segment_bytes,
    };
    // Off the reactor: opening scans and fsyncs segment files.
    let queues = tokio::task::spawn_blocking(move || {
        Signal::ALL.map(|signal| Queue::open(&root.join(signal.name()), queue_config))
    })
    .await?;
    let [logs, traces, metrics] = queues;
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
            target: Target::from_config(config, signal),
            limits,
            backoff,
            stop: Arc::clone(&stop),
        }
        .spawn()
        .map_err(|source| Error::Thread { signal, source })?;
    }
    match &config.otlp_endpoint {
        Some(endpoint) => info!(%endpoint, "forwarding telemetry"),
        None => info!("no [telemetry] otlp-endpoint: telemetry is accepted and discarded"),
    }
    let state = server::State::new(config, queues.clone(), counters);
    let served = plumbing::uds::serve_sidecar(&ctx, Daemon::Otelfwd, server::router(state)).await;
    // Whatever the forwarders are sending stays in the queue for the next start.
    stop.store(true, Ordering::Relaxed);
    for queue in &queues {
        queue.close();
    }
    served?;
    Ok(())
}
