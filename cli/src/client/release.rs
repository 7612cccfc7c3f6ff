//! `alien release --stack FILE [--json]`: pushes the images the stacks name where a build
//! left them, and creates the release ([`client::release`]).
//!
//! The push reports on stderr: bars on a terminal (one for the whole push, one per blob on
//! its way), plain lines otherwise (one per blob, per retry and per image), so that a log
//! shows what happened. stdout gets the result only: the release's id and what to do next,
//! or with `--json` the object a script reads, `{"success", "releaseId", "project",
//! "workspace", "platforms"}`; with `--json` a push off a terminal reports nothing.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use client::push::{Outcome, Progress};
use client::release::{PROJECT, Released};
use client::{ClientError, Manager};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Blobs smaller than this get no bar of their own: they come and go too fast to read.
const BAR_FROM: u64 = 4 << 20;

pub fn run(manager: &Manager, stack: &Path, json: bool) -> Result<(), ClientError> {
    let reporter = Reporter::new(json);
    let released = client::release::release(manager, stack, &reporter);
    reporter.end();
    let released = released?;
    if json {
        let answer = JsonAnswer {
            success: true,
            release_id: &released.id,
            project: PROJECT,
            workspace: PROJECT,
            platforms: &released.platforms,
        };
        let text = serde_json::to_string_pretty(&answer)
            .map_err(|e| ClientError::Failed(format!("cannot write the answer: {e}")))?;
        println!("{text}");
    } else {
        print_human(&released);
    }
    Ok(())
}

/// `--json`'s answer, its keys in the order the public CLI prints them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonAnswer<'a> {
    success: bool,
    release_id: &'a str,
    project: &'a str,
    workspace: &'a str,
    platforms: &'a [String],
}

fn print_human(released: &Released) {
    println!(
        "Release {} created ({}).",
        released.id,
        released.platforms.join(", ")
    );
    for image in &released.images {
        println!(
            "  {} ({}): {}",
            image.resource, image.platform, image.reference
        );
    }
    println!();
    println!("Deployments that are running move to it on their own.");
    println!("To deploy it for a new customer: alien onboard <customer>");
}

/// How the push is shown.
enum Mode {
    Bars(Bars),
    Lines,
    Silent,
}

struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    /// The bar and the last position reported, of each blob on its way.
    blobs: Mutex<HashMap<String, (Option<ProgressBar>, u64)>>,
}

struct Reporter {
    mode: Mode,
    started: Instant,
    uploaded: AtomicUsize,
    uploaded_bytes: AtomicU64,
    kept: AtomicUsize,
}

impl Reporter {
    fn new(json: bool) -> Reporter {
        let mode = if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let total = multi.add(ProgressBar::new(0));
            total.set_style(style(
                "{prefix} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            ));
            total.set_prefix("pushing");
            Mode::Bars(Bars {
                multi,
                total,
                blobs: Mutex::new(HashMap::new()),
            })
        } else if json {
            Mode::Silent
        } else {
            Mode::Lines
        };
        Reporter {
            mode,
            started: Instant::now(),
            uploaded: AtomicUsize::new(0),
            uploaded_bytes: AtomicU64::new(0),
            kept: AtomicUsize::new(0),
        }
    }

    /// Clears the bars, and says in one line what the push did.
    fn end(&self) {
        if let Mode::Bars(bars) = &self.mode {
            bars.total.finish_and_clear();
            let _ = bars.multi.clear();
        }
        let (uploaded, kept) = (
            self.uploaded.load(Ordering::Relaxed),
            self.kept.load(Ordering::Relaxed),
        );
        if matches!(self.mode, Mode::Silent) || uploaded + kept == 0 {
            return;
        }
        if uploaded == 0 {
            eprintln!("all {kept} blobs were there already");
            return;
        }
        let bytes = self.uploaded_bytes.load(Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!(
            "pushed {uploaded} blobs ({}) in {seconds:.1} s, {:.0} MiB/s; {kept} were there already",
            HumanBytes(bytes),
            bytes as f64 / f64::from(1 << 20) / seconds.max(0.001)
        );
    }

    fn line(&self, text: String) {
        match &self.mode {
            Mode::Bars(bars) => {
                let _ = bars.multi.println(text);
            }
            Mode::Lines => eprintln!("{text}"),
            Mode::Silent => {}
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// `sha256:` and the first 12 hex digits: enough to tell blobs apart in a line.
fn short(digest: &str) -> &str {
    &digest[..digest.len().min("sha256:".len() + 12)]
}

impl Progress for Reporter {
    fn planned(&self, blobs: usize, bytes: u64) {
        match &self.mode {
            Mode::Bars(bars) => {
                bars.total.set_length(bytes);
                bars.total.set_message(format!("{blobs} blobs"));
            }
            Mode::Lines => eprintln!("pushing {blobs} blobs, {} in all", HumanBytes(bytes)),
            Mode::Silent => {}
        }
    }

    fn started(&self, digest: &str, size: u64) {
        if let Mode::Bars(bars) = &self.mode {
            let bar = (size >= BAR_FROM).then(|| {
                let bar = bars.multi.add(ProgressBar::new(size));
                bar.set_style(style("  {msg} [{bar:32}] {bytes}/{total_bytes}"));
                bar.set_message(short(digest).to_owned());
                bar
            });
            bars.blobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(digest.to_owned(), (bar, 0));
        }
    }

    fn position(&self, digest: &str, bytes: u64) {
        if let Mode::Bars(bars) = &self.mode
            && let Some((bar, last)) = bars
                .blobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(digest)
        {
            if bytes >= *last {
                bars.total.inc(bytes - *last);
            } else {
                bars.total.dec(*last - bytes);
            }
            *last = bytes;
            if let Some(bar) = bar {
                bar.set_position(bytes);
            }
        }
    }

    fn retrying(&self, digest: &str, error: &ClientError, resume_at: Option<u64>) {
        let then = match resume_at {
            Some(at) => format!("resuming at {}", HumanBytes(at)),
            None => "trying again".to_owned(),
        };
        self.line(format!("  {}: {error}; {then}", short(digest)));
    }

    fn finished(&self, digest: &str, size: u64, outcome: Outcome) {
        let how = match outcome {
            Outcome::Uploaded => {
                self.uploaded.fetch_add(1, Ordering::Relaxed);
                self.uploaded_bytes.fetch_add(size, Ordering::Relaxed);
                "uploaded"
            }
            Outcome::Mounted => {
                self.kept.fetch_add(1, Ordering::Relaxed);
                "mounted from another repository"
            }
            Outcome::Present => {
                self.kept.fetch_add(1, Ordering::Relaxed);
                "already there"
            }
        };
        match &self.mode {
            Mode::Bars(bars) => {
                let entry = bars
                    .blobs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(digest);
                if let Some((bar, last)) = entry {
                    bars.total.inc(size.saturating_sub(last));
                    if let Some(bar) = bar {
                        bar.finish_and_clear();
                        bars.multi.remove(&bar);
                    }
                }
            }
            Mode::Lines => eprintln!("  {} {} {how}", short(digest), HumanBytes(size)),
            Mode::Silent => {}
        }
    }

    fn pushed(&self, label: &str, reference: &str) {
        self.line(format!("pushed {label} as {reference}"));
    }
}
