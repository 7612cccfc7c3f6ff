//! `alien serve`'s live view: on a terminal, one line per deployment (group/name, status,
//! release, when it last changed) kept below the log and refreshed every second from the
//! database. Off a terminal, or with JSON logs, there is none: plain logs only.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use manager::overview::{self, DeploymentLine};
use plumbing::logging::LogFormat;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::client::output::Paint;

const REFRESH: Duration = Duration::from_secs(1);

/// Whether the view is drawn: both streams on a terminal (the view and the log share it),
/// text logs, and a terminal that can move its cursor.
pub fn wanted(format: LogFormat) -> bool {
    format == LogFormat::Text
        && std::io::stdout().is_terminal()
        && std::io::stderr().is_terminal()
        && std::env::var("TERM").map_or(true, |term| term != "dumb")
}

/// Attaches the view below the log and keeps it current, on a thread of its own (the reads
/// are blocking), for the life of the process.
pub fn start(database: PathBuf) {
    let view = MultiProgress::new();
    let header = view.add(line_bar());
    header.set_message("deployments: none yet (`alien onboard NAME` makes a group for one)");
    if !supervisor::console::attach(view.clone()) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("live-view".into())
        .spawn(move || {
            let paint = Paint::stdout();
            let mut bars: Vec<ProgressBar> = Vec::new();
            let mut last_error = None;
            loop {
                match overview::deployments(&database) {
                    Ok(lines) => {
                        last_error = None;
                        while bars.len() < lines.len() {
                            bars.push(view.add(line_bar()));
                        }
                        for extra in bars.split_off(lines.len()) {
                            view.remove(&extra);
                        }
                        header.set_message(match lines.len() {
                            0 => {
                                "deployments: none yet (`alien onboard NAME` makes a group for one)"
                                    .to_owned()
                            }
                            n => format!("deployments: {n}"),
                        });
                        let now = OffsetDateTime::now_utc();
                        for (bar, line) in bars.iter().zip(&lines) {
                            bar.set_message(render(line, now, paint));
                        }
                    }
                    Err(error) => {
                        let text = error.to_string();
                        if last_error.as_ref() != Some(&text) {
                            header.set_message(format!("deployments: cannot read them: {text}"));
                            last_error = Some(text);
                        }
                    }
                }
                std::thread::sleep(REFRESH);
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot show the live deployment view");
    }
}

fn line_bar() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar
}

/// `  group/name  status  release  updated 12s ago`.
fn render(line: &DeploymentLine, now: OffsetDateTime, paint: Paint) -> String {
    let release = match (&line.current_release_id, &line.desired_release_id) {
        (Some(current), Some(desired)) if current != desired => format!("{current} -> {desired}"),
        (Some(current), _) => current.clone(),
        (None, Some(desired)) => format!("-> {desired}"),
        (None, None) => "no release".to_owned(),
    };
    let status = format!("{:<20}", line.status);
    format!(
        "  {:<32} {} {:<34} updated {}",
        format!("{}/{}", line.group, line.name),
        paint.status(&status),
        release,
        ago(&line.updated_at, now)
    )
}

/// How long ago an RFC 3339 time was, roughly; the text itself when it is not one.
fn ago(when: &str, now: OffsetDateTime) -> String {
    let Ok(then) = OffsetDateTime::parse(when, &Rfc3339) else {
        return when.to_owned();
    };
    let seconds = (now - then).whole_seconds().max(0);
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_where_a_deployment_is_and_where_it_goes() {
        let now = OffsetDateTime::parse("2026-12-03T10:00:00Z", &Rfc3339).expect("time");
        let line = DeploymentLine {
            group: "acme".into(),
            name: "eu-1".into(),
            status: "updating".into(),
            current_release_id: Some("rel_a".into()),
            desired_release_id: Some("rel_b".into()),
            updated_at: "2026-12-03T09:59:48.5+00:00".into(),
        };
        let text = render(&line, now, Paint::stdout());
        assert!(text.contains("acme/eu-1"), "{text}");
        assert!(text.contains("rel_a -> rel_b"), "{text}");
        assert!(text.ends_with("updated 11s ago"), "{text}");
        assert_eq!(ago("2026-12-01T10:00:00Z", now), "2d ago");
        assert_eq!(ago("yesterday", now), "yesterday");
    }
}
