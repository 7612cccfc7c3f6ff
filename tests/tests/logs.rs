//! The log on stderr, in both formats: daemon lines say which daemon wrote them, JSON lines
//! are objects, and the admin key never appears (it is shown once, on stdout).

use std::time::Duration;

use e2e::{DAEMONS, Options, Server};

/// One line of the log as the tests read it: which daemon it is tagged with, if any, and its
/// message.
#[derive(Debug)]
struct Line {
    daemon: Option<String>,
    message: String,
}

/// `registryd | 2026-... INFO listening socket=...`, or a supervisor line starting with
/// its timestamp.
fn parse_text(line: &str) -> Result<Line, String> {
    if let Some((tag, rest)) = line.split_once(" | ") {
        let tag = tag.trim_end();
        if DAEMONS.contains(&tag) {
            return Ok(Line {
                daemon: Some(tag.to_owned()),
                message: rest.to_owned(),
            });
        }
    }
    if line.starts_with(|c: char| c.is_ascii_digit()) {
        return Ok(Line {
            daemon: None,
            message: line.to_owned(),
        });
    }
    Err(format!(
        "neither a daemon's nor the supervisor's line: {line:?}"
    ))
}

fn parse_json(line: &str) -> Result<Line, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line:?}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| format!("not a JSON object: {line:?}"))?;
    for key in ["level", "message", "timestamp"] {
        if !object.contains_key(key) {
            return Err(format!("no {key:?}: {line:?}"));
        }
    }
    Ok(Line {
        daemon: object
            .get("daemon")
            .and_then(|d| d.as_str())
            .map(str::to_owned),
        message: object["message"].as_str().unwrap_or_default().to_owned(),
    })
}

struct Format {
    flag: &'static str,
    parse: fn(&str) -> Result<Line, String>,
    /// How the daemon's own "stopping" line reads in `message`.
    stopping: &'static str,
}

const FORMATS: [Format; 2] = [
    Format {
        flag: "text",
        parse: parse_text,
        stopping: "INFO stopping signal=\"SIGTERM\"",
    },
    Format {
        flag: "json",
        parse: parse_json,
        stopping: "stopping",
    },
];

/// What each daemon itself logs once it serves.
fn first_words(daemon: &str) -> &'static str {
    match daemon {
        "manager" => "Alien Manager running on",
        _ => "listening",
    }
}

#[test]
fn every_log_line_is_tagged_and_the_admin_key_never_reaches_it() {
    for format in FORMATS {
        let flag = format.flag;
        let mut server = Server::start(Options {
            log_format: Some(flag),
            ..Options::default()
        });
        server.wait_healthy(Duration::from_secs(20));
        let token = server.admin_token();
        let bearer = format!("Bearer {token}");
        assert_eq!(server.get_with_auth("/v1/whoami", &bearer).status, 200);
        assert_eq!(
            server
                .get_with_auth("/v1/whoami", "Bearer ax_admin_0")
                .status,
            401
        );
        server.sigterm();
        let status = server.wait_exit(Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()), "{flag}: {status:?}");
        server.wait_output_closed(Duration::from_secs(2));

        // stdout is for people in both formats: the export lines as they are.
        assert!(
            server
                .stdout()
                .lines()
                .any(|l| l == format!("export ALIEN_API_KEY={token}")),
            "{flag}: stdout:\n{}",
            server.stdout()
        );

        let stderr = server.stderr();
        let secret = token.trim_start_matches("ax_admin_");
        assert!(
            !stderr.contains(secret),
            "{flag}: the admin key is in the log:\n{stderr}"
        );
        let lines: Vec<Line> = stderr
            .lines()
            .map(|l| (format.parse)(l).unwrap_or_else(|e| panic!("{flag}: {e}")))
            .collect();
        assert!(!lines.is_empty(), "{flag}: empty log");
        for daemon in DAEMONS {
            let tagged = |words: &str| {
                lines
                    .iter()
                    .any(|l| l.daemon.as_deref() == Some(daemon) && l.message.contains(words))
            };
            assert!(
                tagged(first_words(daemon)),
                "{flag}: no {:?} line tagged {daemon}:\n{stderr}",
                first_words(daemon)
            );
            assert!(
                tagged(format.stopping),
                "{flag}: no {:?} line tagged {daemon}:\n{stderr}",
                format.stopping
            );
        }
        // The supervisor's own lines are not attributed to a daemon.
        assert!(
            lines
                .iter()
                .any(|l| l.daemon.is_none() && l.message.contains("alien-manager is ready")),
            "{flag}: no untagged supervisor line:\n{stderr}"
        );
    }
}
