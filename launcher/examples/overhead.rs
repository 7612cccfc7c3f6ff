//! Per-workload cost of each backend: the time `start` and `stop` take, and the memory an
//! idle workload (`sleep`) is charged: its cgroup's usage for a container (page cache and
//! kernel memory included), its resident set for a plain process. See docs/benchmarks.md.
//!
//! Usage: overhead [--runs N] (root for the OCI backend).

use std::error::Error;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use launcher::{Backend, Launcher, Network, Workload, WorkloadSpec};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let runs = match args.iter().position(|a| a == "--runs") {
        Some(i) => args.get(i + 1).ok_or("--runs needs a number")?.parse()?,
        None => 10usize,
    };
    let mut launchers = vec![Launcher::process("measured")];
    let detected = Launcher::detect(Path::new("/bin/true"));
    match detected.backend() {
        Backend::Oci { .. } => launchers.insert(0, detected),
        Backend::Process { reason } => eprintln!("no OCI runtime: {reason}"),
    }
    for launcher in &launchers {
        measure(launcher, runs)?;
    }
    Ok(())
}

fn measure(launcher: &Launcher, runs: usize) -> Result<(), Box<dyn Error>> {
    let dir = tempfile::Builder::new()
        .prefix("launcher-overhead-")
        .tempdir_in("/var/tmp")?;
    let root = dir.path().join("rootfs");
    fs::create_dir_all(root.join("bin"))?;
    fs::hard_link("/usr/bin/busybox", root.join("bin/busybox"))
        .or_else(|_| fs::copy("/usr/bin/busybox", root.join("bin/busybox")).map(drop))?;
    symlink("/bin/busybox", root.join("bin/sleep"))?;

    let mut starts = Vec::new();
    let mut workloads = Vec::new();
    for i in 0..runs {
        let spec = WorkloadSpec {
            id: format!("overhead-{}-{i}", std::process::id()),
            rootfs: root.clone(),
            args: vec!["/bin/sleep".into(), "600".into()],
            cwd: "/".into(),
            env: Vec::new(),
            mounts: Vec::new(),
            memory_limit_bytes: None,
            cpus: None,
            network: Network::Private,
            hostname: "overhead".into(),
            hosts_entries: Vec::new(),
            stdout: dir.path().join(format!("{i}.out")),
            stderr: dir.path().join(format!("{i}.err")),
            state_dir: dir.path().join(format!("state-{i}")),
        };
        let started = Instant::now();
        workloads.push(launcher.start(&spec)?);
        starts.push(started.elapsed());
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut memory = Vec::new();
    for workload in &workloads {
        memory.push(memory_kib(launcher, workload)?);
    }
    memory.sort();
    let mut stops = Vec::new();
    for workload in &workloads {
        let started = Instant::now();
        launcher.stop(workload, Duration::ZERO)?;
        stops.push(started.elapsed());
    }
    let name = match launcher.backend() {
        Backend::Oci { runtime } => runtime.display().to_string(),
        Backend::Process { .. } => "process".into(),
    };
    println!(
        "{name}: start {}, stop {}, memory median {} KiB (min {}, max {})",
        summary(&mut starts),
        summary(&mut stops),
        memory[memory.len() / 2],
        memory[0],
        memory[memory.len() - 1]
    );
    Ok(())
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.1} ms (min {:.1}, max {:.1})",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    )
}

fn memory_kib(launcher: &Launcher, workload: &Workload) -> Result<u64, Box<dyn Error>> {
    if let Backend::Oci { .. } = launcher.backend() {
        let v1 = format!(
            "/sys/fs/cgroup/memory/alien/{}/memory.usage_in_bytes",
            workload.id
        );
        let v2 = format!("/sys/fs/cgroup/alien/{}/memory.current", workload.id);
        let text = fs::read_to_string(v1).or_else(|_| fs::read_to_string(v2))?;
        return Ok(text.trim().parse::<u64>()? / 1024);
    }
    let status = fs::read_to_string(format!("/proc/{}/status", workload.pid))?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}
