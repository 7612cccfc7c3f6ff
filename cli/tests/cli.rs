//! The `alien` command line itself: help, the config template, argument errors. The running
//! system is tested end to end in the `e2e` crate.

use std::process::{Command, Output, Stdio};

fn alien(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alien"))
        .args(args)
        .env_remove("PORT")
        .env_remove("ALIEN_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run alien")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn init_prints_a_template_that_parses_back_to_the_defaults() {
    let output = alien(&["serve", "--init"]);
    assert!(output.status.success());
    let template = text(&output.stdout);
    let parsed = plumbing::config::parse_str(&template).expect("template parses");
    assert_eq!(parsed, plumbing::Config::default());
}

#[test]
fn help_explains_the_commands_and_hides_the_internal_one() {
    let cases: [(&[&str], &[&str], &[&str]); 3] = [
        (
            &["--help"],
            &["serve", "health", "ALIEN_API_KEY"],
            &["daemon"],
        ),
        (
            &["serve", "--help"],
            &[
                "--config",
                "--init",
                "--port",
                "--host",
                "--data-dir",
                "--log-format",
                "ALIEN_DATA_DIR",
            ],
            &[],
        ),
        (&["health", "--help"], &["exit 0", "--port"], &[]),
    ];
    for (args, present, absent) in cases {
        let output = alien(args);
        assert!(output.status.success(), "{args:?}");
        let help = text(&output.stdout);
        for word in present {
            assert!(help.contains(word), "{args:?} help lacks {word:?}:\n{help}");
        }
        for word in absent {
            assert!(
                !help.contains(word),
                "{args:?} help shows {word:?}:\n{help}"
            );
        }
    }
}

#[test]
fn argument_errors_exit_with_status_2() {
    let cases: [&[&str]; 4] = [
        &["serve", "--port", "eighty"],
        &["serve", "--log-format", "xml"],
        &["daemon", "nosuchdaemon"],
        &["frobnicate"],
    ];
    for args in cases {
        let output = alien(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
}

#[test]
fn a_listen_fd_that_is_not_a_socket_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let output = alien(&["daemon", "manager", "--data-dir", data, "--listen-fd", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("--listen-fd 0 is not a socket"),
        "{}",
        text(&output.stderr)
    );
}
