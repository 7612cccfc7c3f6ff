//! Where `alien serve` writes what people read: the daemons' log lines and stdout, and its
//! own log. On a terminal a live view can be drawn below them; once one is attached, every
//! line goes through it, which lifts the view, writes the line where the view was and draws
//! the view again below it. Without one, lines go straight to stderr and stdout.

use std::io::Write;
use std::sync::OnceLock;

use indicatif::MultiProgress;

static VIEW: OnceLock<MultiProgress> = OnceLock::new();

/// Draws every line through `view` from now on; false if a view was attached already.
pub fn attach(view: MultiProgress) -> bool {
    VIEW.set(view).is_ok()
}

/// A line of the log (stderr).
pub fn log_line(line: &str) {
    match VIEW.get() {
        // Nowhere to report a failed write to the terminal.
        Some(view) => drop(view.println(line)),
        None => drop(writeln!(std::io::stderr().lock(), "{line}")),
    }
}

/// A line for the person running the system (stdout): the first-run admin key.
pub fn message_line(line: &str) {
    match VIEW.get() {
        Some(view) => drop(view.println(line)),
        None => {
            let mut out = std::io::stdout().lock();
            drop(writeln!(out, "{line}").and_then(|()| out.flush()));
        }
    }
}

/// The supervisor's own `tracing` output, through [`log_line`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> LineBuffer {
        LineBuffer(Vec::new())
    }
}

/// One event's text, written out as lines when the event is done.
#[derive(Debug)]
pub struct LineBuffer(Vec<u8>);

impl Write for LineBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        for line in String::from_utf8_lossy(&self.0).lines() {
            log_line(line);
        }
    }
}
