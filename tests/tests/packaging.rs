//! The files in `packaging/`: the systemd units are accepted by systemd itself, and the
//! Dockerfile keeps the directives its users rely on. Neither can be run here (no running
//! systemd, no Docker), so these are the checks that can.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every file in `packaging/systemd/`: a new unit must be added here to be verified.
const UNITS: [&str; 7] = [
    "alien-otelfwd.service",
    "alien-registryd.service",
    "alien-commandd.service",
    "alien-manager.service",
    "alien-deployd.service",
    "alien-manager.target",
    "alien-agent.service",
];

/// Where the install notes put the binary, as named by every unit's `ExecStart=`.
const INSTALLED_BINARY: &str = "/usr/local/bin/alien";

fn packaging_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives in the workspace")
        .join("packaging")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn every_unit_file_is_verified() {
    let dir = packaging_dir().join("systemd");
    let mut found: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.expect("directory entry");
            entry.file_name().to_string_lossy().into_owned()
        })
        .collect();
    found.sort();
    let mut expected = UNITS.map(String::from).to_vec();
    expected.sort();
    assert_eq!(found, expected, "packaging/systemd/ and UNITS disagree");
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let alien = e2e::alien_binary();
    let alien = alien.to_str().expect("binary path is UTF-8");
    let copies = tempfile::tempdir().expect("temporary directory");
    let mut paths = Vec::new();
    for unit in UNITS {
        let text = read(&packaging_dir().join("systemd").join(unit));
        if unit.ends_with(".service") {
            assert!(
                text.contains(&format!("ExecStart={INSTALLED_BINARY} ")),
                "{unit}: ExecStart= does not run {INSTALLED_BINARY}"
            );
        }
        // verify refuses an ExecStart= whose program does not exist, and nothing is installed
        // at /usr/local/bin here: the copies run this build's binary instead.
        let path = copies.path().join(unit);
        fs::write(&path, text.replace(INSTALLED_BINARY, alien)).expect("write unit copy");
        paths.push(path);
    }

    // Dependencies outside these files (network-online.target, multi-user.target) come from
    // the host's unit directories; the copies' own directory is searched for each other.
    // verify needs no running systemd and does not look up User=alien, so nothing is
    // created on the host. No output line is filtered: with systemd 252 (Debian 12) the
    // output is empty. Lines about the host's own units are not ours to judge, so only a
    // failure or a line naming one of our files fails the test.
    let output = match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "systemd-analyze is not installed: install the Debian package `systemd` \
             (apt-get install systemd) to verify the unit files"
        ),
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    };
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let about_ours: Vec<&str> = printed
        .lines()
        .filter(|line| UNITS.iter().any(|unit| line.contains(unit)))
        .collect();
    assert!(
        output.status.success() && about_ours.is_empty(),
        "systemd-analyze verify ({}) on packaging/systemd/:\n{printed}",
        output.status
    );
}

/// Lines every daemon's unit must keep; verify accepts a unit without them, so it is
/// checked here. `{daemon}` stands for the daemon's name.
const SERVICE_LINES: &[&str] = &[
    "Type=notify",
    "ExecStart=/usr/local/bin/alien daemon {daemon} --config /etc/alien-manager/alien-manager.toml --data-dir /var/lib/alien-manager",
    "PartOf=alien-manager.target",
    "Restart=on-failure",
    "User=alien",
    "Group=alien",
    "StateDirectory=alien-manager",
    "StateDirectoryMode=0700",
    "UMask=0077",
    "ReadWritePaths=/var/lib/alien-manager",
    "CapabilityBoundingSet=",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "LockPersonality=yes",
    "RestrictRealtime=yes",
    "SystemCallArchitectures=native",
];

/// Start order: the manager needs the sidecars' sockets.
const MANAGER_LINES: &[&str] = &[
    "Requires=alien-registryd.service alien-commandd.service",
    "After=alien-otelfwd.service alien-registryd.service alien-commandd.service network-online.target",
];

/// deployd runs workloads in an OCI runtime as root, and they outlive its restarts.
const DEPLOYD_LINES: &[&str] = &[
    "Type=notify",
    "ExecStart=/usr/local/bin/alien daemon deployd --config /etc/alien-manager/alien-manager.toml --data-dir /var/lib/alien-manager",
    "PartOf=alien-manager.target",
    "Requires=alien-manager.service",
    "After=alien-manager.service",
    "Restart=on-failure",
    "KillMode=process",
    "UMask=0077",
];

/// The agent runs the same workloads as deployd, as root, on a customer's machine. The
/// install script (`GET /install`) fills in the ExecStart= and Environment= values.
const AGENT_LINES: &[&str] = &[
    "Type=exec",
    "ExecStart=/usr/local/bin/alien agent",
    "Environment=SYNC_URL=https://manager.example.com",
    "Environment=SYNC_TOKEN_FILE=/etc/alien-agent/token",
    "Environment=DATA_DIR=/var/lib/alien-agent",
    "Restart=on-failure",
    "RestartPreventExitStatus=2",
    "KillMode=process",
    "User=root",
    "UMask=0077",
    "NoNewPrivileges=yes",
    "ProtectHome=yes",
    "WantedBy=multi-user.target",
];

const TARGET_LINES: &[&str] = &[
    "Wants=alien-otelfwd.service alien-registryd.service alien-commandd.service alien-manager.service alien-deployd.service",
    "WantedBy=multi-user.target",
];

#[test]
fn units_run_their_daemon_on_the_shared_data_directory_with_the_same_hardening() {
    let dir = packaging_dir().join("systemd");
    let mut expected: Vec<(String, String)> = Vec::new();
    for daemon in ["otelfwd", "registryd", "commandd", "manager"] {
        let unit = format!("alien-{daemon}.service");
        for line in SERVICE_LINES {
            expected.push((unit.clone(), line.replace("{daemon}", daemon)));
        }
    }
    for line in MANAGER_LINES {
        expected.push(("alien-manager.service".into(), (*line).into()));
    }
    for line in TARGET_LINES {
        expected.push(("alien-manager.target".into(), (*line).into()));
    }
    for line in DEPLOYD_LINES {
        expected.push(("alien-deployd.service".into(), (*line).into()));
    }
    for line in AGENT_LINES {
        expected.push(("alien-agent.service".into(), (*line).into()));
    }

    let missing: Vec<String> = expected
        .iter()
        .filter(|(unit, line)| !read(&dir.join(unit)).lines().any(|l| l.trim() == line))
        .map(|(unit, line)| format!("{unit}: {line}"))
        .collect();
    assert!(missing.is_empty(), "missing lines:\n{}", missing.join("\n"));
}

/// One instruction of a Dockerfile: its keyword (upper case) and its arguments, with
/// continuation lines joined.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .map(|instruction| {
            let (keyword, args) = instruction
                .split_once(char::is_whitespace)
                .unwrap_or((&instruction, ""));
            let args = args.split_whitespace().collect::<Vec<_>>().join(" ");
            (keyword.to_ascii_uppercase(), args)
        })
        .collect()
}

#[derive(Debug)]
enum Args {
    Exactly(&'static str),
    EndWith(&'static str),
}

/// What users of the image rely on, in the final stage. HEALTHCHECK's timings may change;
/// its command may not.
const RUNTIME_STAGE: &[(&str, Args)] = &[
    ("FROM", Args::Exactly("debian:bookworm-slim")),
    ("WORKDIR", Args::Exactly("/app")),
    ("ENV", Args::Exactly("ALIEN_DATA_DIR=/data")),
    ("VOLUME", Args::Exactly("/data")),
    ("EXPOSE", Args::Exactly("8080")),
    ("HEALTHCHECK", Args::EndWith(r#"CMD ["alien", "health"]"#)),
    ("STOPSIGNAL", Args::Exactly("SIGTERM")),
    ("ENTRYPOINT", Args::Exactly(r#"["alien", "serve"]"#)),
];

#[test]
fn the_dockerfile_keeps_its_contract() {
    let all = instructions(&read(&packaging_dir().join("Dockerfile")));
    assert!(
        all.iter()
            .any(|(k, a)| k == "RUN" && a.contains("cargo build --release --locked -p cli")),
        "the builder no longer runs `cargo build --release --locked -p cli`"
    );
    let last_from = all
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .expect("a FROM instruction");
    let runtime = &all[last_from..];

    for (keyword, expected) in RUNTIME_STAGE {
        let found = runtime.iter().any(|(k, a)| {
            k == keyword
                && match expected {
                    Args::Exactly(s) => a == s,
                    Args::EndWith(s) => a.ends_with(s),
                }
        });
        assert!(found, "the final stage lacks {keyword} {expected:?}");
    }

    let user = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, a)| a.split(':').next().unwrap_or_default())
        .expect("the final stage sets USER");
    assert!(
        !matches!(user, "root" | "0"),
        "the image runs as root (USER {user})"
    );
}
