//! How the client commands print: JSON for scripts, tables and lines for people, colour only
//! on a terminal and never with `NO_COLOR` set.

use std::io::IsTerminal;

use client::{ClientError, Manager};
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

/// Prints `value` as pretty JSON on stdout.
pub fn json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Prints a table with `header` on stdout: with borders on a terminal, as plain aligned
/// columns otherwise (for `grep` and `awk`).
pub fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut table = Table::new();
    if std::io::stdout().is_terminal() {
        table
            .load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        table.load_preset(presets::NOTHING);
    }
    table.set_header(header.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    println!("{}", table.to_string().trim_end());
}

/// A list route's `items`: the array as it came with `--json`, else a table with a row of
/// `row` for each item.
pub fn list(
    manager: &Manager,
    path: &str,
    json: bool,
    header: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> Result<(), ClientError> {
    let listed = manager.get(path)?;
    let items = listed["items"].as_array().cloned().unwrap_or_default();
    if json {
        self::json(&Value::Array(items));
    } else {
        table(header, items.iter().map(row).collect());
    }
    Ok(())
}

/// A string field of `value`, or `-`.
pub fn field(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        Some(Value::String(text)) if !text.is_empty() => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => "-".to_owned(),
    }
}

/// ANSI colours for one stream, or none.
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    on: bool,
}

impl Paint {
    pub fn stdout() -> Paint {
        Paint {
            on: std::io::stdout().is_terminal() && colour_allowed(),
        }
    }

    pub fn stderr() -> Paint {
        Paint {
            on: std::io::stderr().is_terminal() && colour_allowed(),
        }
    }

    fn wrap(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn red(self, text: &str) -> String {
        self.wrap("31", text)
    }

    pub fn green(self, text: &str) -> String {
        self.wrap("32", text)
    }

    pub fn yellow(self, text: &str) -> String {
        self.wrap("33", text)
    }

    pub fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }

    pub fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }

    /// A deployment status in the colour of its kind: running, failed, or on its way.
    pub fn status(self, status: &str) -> String {
        if status == "running" {
            self.green(status)
        } else if status.ends_with("-failed") {
            self.red(status)
        } else {
            self.yellow(status)
        }
    }
}

/// `NO_COLOR` (any non-empty value) and `TERM=dumb` turn colour off.
fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
        && std::env::var("TERM").map_or(true, |term| term != "dumb")
}
