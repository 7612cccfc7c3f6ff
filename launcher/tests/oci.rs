//! The OCI backend with the real runtime (runc here): detection, detached start, stop with
//! grace, adoption, exact environment, an untouched image root, limits, mounts and private
//! networks. These need root; without it they say so and pass.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use launcher::{Backend, Launcher, Mount, Network, RootMode, Status, connect_in, listen_in};
use support::*;

/// The runtime under test, or `None` (with a message) when not root.
fn launcher() -> Option<Launcher> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: OCI runtime tests need root");
        return None;
    }
    let runtime = std::env::var("LAUNCHER_TEST_RUNTIME").unwrap_or_else(|_| "runc".into());
    match Launcher::detect_among(
        &[PathBuf::from(&runtime)],
        std::path::Path::new("/bin/true"),
    ) {
        launcher @ Launcher { .. } if matches!(launcher.backend(), Backend::Oci { .. }) => {
            Some(launcher)
        }
        other => panic!(
            "{runtime} cannot run containers as root: {:?}",
            other.backend()
        ),
    }
}

#[test]
fn detection_falls_back_to_processes_with_the_reason() -> TestResult {
    let fixture = Fixture::new()?;
    let fake = fixture.path("fake-runtime");
    fs::write(
        &fake,
        "#!/bin/sh\necho 'cgroups are broken here' >&2\nexit 1\n",
    )?;
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let launcher = Launcher::detect_among(
        &[PathBuf::from("/nonexistent/runc"), fake.clone()],
        std::path::Path::new("/bin/true"),
    );
    let Backend::Process { reason } = launcher.backend() else {
        panic!("a failing runtime was chosen: {:?}", launcher.backend());
    };
    assert!(
        reason.contains("/nonexistent/runc: not installed"),
        "{reason}"
    );
    assert!(reason.contains("cgroups are broken here"), "{reason}");
    Ok(())
}

/// The caller's environment never reaches the runtime: a `NOTIFY_SOCKET` there (the
/// supervisor's, or systemd's) makes runc wait for a `READY=1` no workload sends, and so
/// detection timed out and fell back to processes under `alien serve`.
#[test]
fn the_runtime_runs_with_a_path_and_nothing_else() -> TestResult {
    let fixture = Fixture::new()?;
    let seen = fixture.path("runtime-env");
    let fake = fixture.path("recording-runtime");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\nenv >> '{}'\necho --- >> '{}'\necho 'container does not exist' >&2\nexit 1\n",
            seen.display(),
            seen.display()
        ),
    )?;
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let detected = Launcher::detect_among(
        std::slice::from_ref(&fake),
        std::path::Path::new("/bin/true"),
    );
    assert!(matches!(detected.backend(), Backend::Process { .. }));
    let spec = fixture.spec("recorded", &["/bin/true"]);
    assert!(
        Launcher::oci(&fake).start(&spec).is_err(),
        "the fake runtime started something"
    );
    let recorded = fs::read_to_string(&seen)?;
    let runs: Vec<Vec<&str>> = recorded
        .split("---\n")
        .filter(|run| !run.is_empty())
        .map(|run| {
            run.lines()
                // What the shell running the fake sets itself.
                .filter(|line| {
                    !["PWD=", "SHLVL=", "_=", "OLDPWD="]
                        .iter()
                        .any(|v| line.starts_with(v))
                })
                .collect()
        })
        .collect();
    assert!(runs.len() >= 2, "the runtime ran {} times", runs.len());
    for run in runs {
        assert_eq!(
            run,
            ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        );
    }
    Ok(())
}

#[test]
fn detection_picks_a_runtime_that_runs_as_root() {
    let Some(launcher) = launcher() else { return };
    let Backend::Oci { runtime } = Launcher::detect(std::path::Path::new("/bin/true"))
        .backend()
        .clone()
    else {
        panic!("no runtime detected, though {:?} works", launcher.backend());
    };
    assert!(runtime.is_absolute());
}

#[test]
fn runs_detached_with_exactly_the_given_environment() -> TestResult {
    let Some(launcher) = launcher() else {
        return Ok(());
    };
    let fixture = Fixture::new()?;
    let mut spec = fixture.spec("env", &["/bin/env"]);
    // HOME given: a runtime sets HOME=/ itself when it is missing.
    spec.env = vec![
        ("ONLY".into(), "this".into()),
        ("HOME".into(), "/home/app".into()),
    ];
    let workload = start(&launcher, &spec)?;
    assert_eq!(workload.root_mode(), Some(RootMode::Overlay));
    let out = wait_output(&spec.stdout, "ONLY=")?;
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["HOME=/home/app", "ONLY=this"]);
    let status = wait_for(Duration::from_secs(10), || {
        launcher
            .status(&workload)
            .ok()
            .filter(|s| matches!(s, Status::Exited { .. }))
    });
    assert_eq!(status, Some(Status::Exited { code: None }));
    launcher.stop(&workload, Duration::from_secs(1))?;
    assert_eq!(launcher.status(&workload)?, Status::Missing);
    Ok(())
}

#[test]
fn stop_honours_sigterm() -> TestResult {
    let Some(launcher) = launcher() else {
        return Ok(());
    };
    scenarios::sigterm_is_honoured(&launcher)
}

#[test]
fn stop_kills_after_the_grace_when_sigterm_is_ignored() -> TestResult {
    let Some(launcher) = launcher() else {
        return Ok(());
    };
    scenarios::sigkill_after_the_grace(&launcher)
}

#[test]
fn survives_the_caller_and_is_adopted_by_a_new_launcher() -> TestResult {
    let Some(launcher) = launcher() else {
        return Ok(());
    };
    let Backend::Oci { runtime } = launcher.backend() else {
        return Ok(());
    };
    scenarios::survives_the_caller(
        &runtime.display().to_string(),
        &Launcher::oci(runtime.clone()),
    )
}

#[test]
fn writes_go_to_the_overlay_and_the_image_root_stays_untouched() -> TestResult {
    let Some(launcher) = launcher() else {
        return Ok(());
    };
    let fixture = Fixture::new()?;
    let before = tree(&fixture.rootfs())?;
    let spec = fixture.spec(
        "writes",
        &["/bin/sh", "-c", "echo x > /new && echo y > /app/extra && busybox rm /bin/ls && mkdir /etc/more && cat /new && echo wrote"],
    );
    let workload = start(&launcher, &spec)?;
    let out = wait_output(&spec.stdout, "wrote")?;
    assert_eq!(out, "x\nwrote\n");
    assert_eq!(tree(&fixture.rootfs())?, before);
    launcher.stop(&workload, Duration::from_secs(1))?;
    assert_eq!(tree(&fixture.rootfs())?, before);
    Ok(())
}

#[test]
fn memory_and_cpu_limits_are_visible_inside() -> TestResult {
    let Some(launcher) = launcher() else {
        return Ok(());
    };
    let fixture = Fixture::new()?;
    let mut spec = fixture.spec(
        "limits",
        &["/bin/sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max; echo done"],
    );
    spec.memory_limit_bytes = Some(96 << 20);
    spec.cpus = Some(0.5);
    let workload = start(&launcher, &spec)?;
    let out = wait_output(&spec.stdout, "done")?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], (96u64 << 20).to_string(), "{out}");
    assert!(lines[1] == "50000" || lines[1] == "50000 100000", "{out}");
    launcher.stop(&workload, Duration::from_secs(1))?;
    Ok(())
}

#[test]
fn mounts_hosts_and_a_listener_inside_a_private_network() -> TestResult {
    let Some(launcher) = launcher() else {
        return Ok(());
    };
    let fixture = Fixture::new()?;
    let shared = fixture.path("shared");
    fs::create_dir_all(&shared)?;
    let writable = fixture.path("writable");
    fs::create_dir_all(&writable)?;
    let mut spec = fixture.spec(
        "reach-out",
        &[
            "/bin/sh",
            "-c",
            "cat /etc/hosts; touch /shared/nope 2>/dev/null || echo read-only; echo w > /data/w; \
           while [ ! -f /shared/port ]; do sleep 0.05; done; \
           wget -q -O - http://manager:$(cat /shared/port)/ && echo; echo fetched",
        ],
    );
    spec.network = Network::Private;
    spec.hosts_entries = vec![("manager".into(), "127.0.0.2".parse()?)];
    spec.mounts = vec![
        Mount {
            host: shared.clone(),
            target: "/shared".into(),
            read_only: true,
        },
        Mount {
            host: writable.clone(),
            target: "/data".into(),
            read_only: false,
        },
    ];
    let workload = start(&launcher, &spec)?;
    // The workload reaches the host through a listener that lives in its namespace.
    let listener = listen_in(
        &workload,
        SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 0)),
    )?;
    let port = listener.local_addr()?.port();
    // Not reachable from the host: it is in the workload's namespace.
    assert!(std::net::TcpStream::connect(("127.0.0.2", port)).is_err());
    fs::write(shared.join("port"), port.to_string())?;
    listener.set_nonblocking(false)?;
    let served = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request)?;
        stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\nfrom-the-host")?;
        Ok(())
    });
    let out = wait_output(&spec.stdout, "fetched")?;
    served.join().map_err(|_| "server thread panicked")??;
    assert!(out.contains("127.0.0.2\tmanager"), "{out}");
    assert!(out.contains("read-only"), "{out}");
    assert!(out.contains("from-the-hos"), "{out}");
    assert_eq!(fs::read_to_string(writable.join("w"))?, "w\n");
    launcher.stop(&workload, Duration::from_secs(1))?;
    Ok(())
}

#[test]
fn two_private_workloads_listen_on_the_same_port() -> TestResult {
    let Some(launcher) = launcher() else {
        return Ok(());
    };
    let fixture = Fixture::new()?;
    let mut workloads = Vec::new();
    for name in ["one", "two"] {
        let script =
            format!("echo {name} > /www/index.html; exec httpd -f -p 127.0.0.1:8080 -h /www");
        let mut spec = fixture.spec(name, &["/bin/sh", "-c", &script]);
        spec.network = Network::Private;
        workloads.push((name, start(&launcher, &spec)?));
    }
    for (name, workload) in &workloads {
        let body = get_when_up(|| connect_in(workload, 8080))?;
        assert_eq!(body.trim(), *name);
    }
    // Both still serve, each its own.
    for (name, workload) in &workloads {
        assert_eq!(http_get(connect_in(workload, 8080)?)?.trim(), *name);
        launcher.stop(workload, Duration::from_secs(1))?;
    }
    Ok(())
}

#[test]
fn a_missing_program_fails_the_start_and_leaves_nothing() -> TestResult {
    let Some(launcher) = launcher() else {
        return Ok(());
    };
    let fixture = Fixture::new()?;
    let spec = fixture.spec("missing", &["/bin/nope"]);
    let error = launcher
        .start(&spec)
        .err()
        .ok_or("a missing program started")?;
    assert!(matches!(error, launcher::Error::Runtime { .. }), "{error}");
    assert!(!spec.state_dir.exists(), "state left behind");
    Ok(())
}

#[test]
fn a_program_that_exits_at_once_has_started() -> TestResult {
    let Some(launcher) = launcher() else {
        return Ok(());
    };
    let fixture = Fixture::new()?;
    let spec = fixture.spec("quick", &["/bin/sh", "-c", "exit 0"]);
    let workload = start(&launcher, &spec)?;
    assert!(workload.pid > 0);
    let status = wait_for(Duration::from_secs(10), || {
        launcher
            .status(&workload)
            .ok()
            .filter(|s| matches!(s, Status::Exited { .. }))
    });
    assert_eq!(status, Some(Status::Exited { code: None }));
    launcher.stop(&workload, Duration::from_secs(1))?;
    Ok(())
}

#[test]
fn without_overlay_the_root_is_read_only_with_a_writable_tmp() -> TestResult {
    let Some(launcher) = launcher() else {
        return Ok(());
    };
    let fixture = Fixture::new()?;
    for dir in ["proc", "dev", "sys", "tmp"] {
        fs::create_dir_all(fixture.rootfs().join(dir))?;
    }
    fs::write(fixture.rootfs().join("etc/hosts"), "")?;
    // A ',' cannot be passed in overlay's options: the launcher must fall back.
    let odd_path = fixture.path("root,fs");
    std::os::unix::fs::symlink(fixture.rootfs(), &odd_path)?;
    let before = tree(&fixture.rootfs())?;
    let mut spec = fixture.spec(
        "read-only",
        &[
            "/bin/sh",
            "-c",
            "echo x > /new 2>/dev/null || echo refused; echo t > /tmp/t && cat /tmp/t; echo done",
        ],
    );
    spec.rootfs = odd_path;
    let workload = start(&launcher, &spec)?;
    assert_eq!(workload.root_mode(), Some(RootMode::ReadOnly));
    let out = wait_output(&spec.stdout, "done")?;
    assert_eq!(out, "refused\nt\ndone\n");
    launcher.stop(&workload, Duration::from_secs(1))?;
    assert_eq!(tree(&fixture.rootfs())?, before);
    Ok(())
}
