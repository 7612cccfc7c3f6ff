//! Logs go to stderr, one event a line, as text or JSON; stdout is kept for what a user is
//! meant to read (the first-run admin key). The filter comes from `ALIEN_LOG` or `RUST_LOG`.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

/// Installs the global subscriber. `ansi` only for a terminal: under the supervisor the
/// lines are re-emitted and colour codes would travel into log collectors.
pub fn init(format: LogFormat) {
    init_to(format, std::io::stderr);
}

/// [`init`], with each event written through `writer` (a terminal view that keeps itself
/// below the log, say) instead of straight to stderr.
pub fn init_to<W>(format: LogFormat, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = std::env::var("ALIEN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    // A subscriber already installed (tests that start several daemons in one process) is fine.
    drop(result);
}
