use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// A configuration that cannot be used. Every variant names where the problem is: the file
/// and line and key, the environment variable, or the command-line flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist", path.display())]
    Missing { path: PathBuf },

    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}:{line}:{column}: {}{message}", file.as_deref().map_or("<config>".into(), |p| p.display().to_string()), key.as_deref().map_or(String::new(), |k| format!("key `{k}`: ")))]
    Parse {
        file: Option<PathBuf>,
        line: usize,
        column: usize,
        key: Option<String>,
        message: String,
    },

    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl ConfigError {
    pub(super) fn from_toml(text: &str, error: &toml::de::Error) -> ConfigError {
        let offset = error.span().map_or(0, |s| s.start);
        let (line, column) = line_and_column(text, offset);
        ConfigError::Parse {
            file: None,
            line,
            column,
            key: key_at(text, offset),
            message: error.message().trim().to_owned(),
        }
    }

    pub(super) fn in_file(self, path: &Path) -> ConfigError {
        match self {
            ConfigError::Parse {
                line,
                column,
                key,
                message,
                ..
            } => ConfigError::Parse {
                file: Some(path.to_path_buf()),
                line,
                column,
                key,
                message,
            },
            ConfigError::Invalid { origin, message } => ConfigError::Invalid {
                origin: format!("{}: {origin}", path.display()),
                message,
            },
            other => other,
        }
    }
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The dotted key whose name or value covers `offset`, found on the document's syntax tree
/// (which parses even when the typed config does not).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let document = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_key(document.get_ref(), offset, &mut path).then(|| path.join("."))
}

fn find_key(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if key.span().contains(&offset) {
            return true;
        }
        let found = match value.get_ref() {
            DeValue::Table(inner) => find_key(inner, offset, path),
            DeValue::Array(items) => items.iter().any(|item| match item.get_ref() {
                DeValue::Table(inner) => find_key(inner, offset, path),
                _ => false,
            }),
            _ => false,
        };
        if found || value.span().contains(&offset) {
            return true;
        }
        path.pop();
    }
    false
}
