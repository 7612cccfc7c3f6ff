#!/usr/bin/env python3
"""Time from `alien serve` to a healthy /health, and the resident memory of every process
once idle.

Usage: bench/startup.py [--runs N] [--binary PATH]
Builds nothing: pass a release binary (default target/release/alien). Every run uses a fresh
data directory (a first start: database created, admin key generated) and a free loopback
port; a second set of runs restarts on the same directory (the usual restart path).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from harness import daemons, free_port, healthy, memory_kib, stop

DEADLINE_S = 30
POLL_S = 0.002


def start(binary, data):
    port = free_port()
    began = time.monotonic()
    proc = subprocess.Popen(
        [binary, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while not healthy(port):
        if time.monotonic() - began > DEADLINE_S or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"not healthy within {DEADLINE_S}s")
        time.sleep(POLL_S)
    return proc, time.monotonic() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--binary", default="target/release/alien")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)

    first, restart, memory = [], [], {}
    work = tempfile.mkdtemp(prefix="alien-bench-")
    try:
        for i in range(args.runs):
            data = os.path.join(work, f"d{i}")
            proc, elapsed = start(binary, data)
            first.append(elapsed)
            stop(proc)
            proc, elapsed = start(binary, data)
            restart.append(elapsed)
            if i == args.runs - 1:
                time.sleep(2)  # idle
                memory["supervisor"] = memory_kib(proc.pid, "VmRSS")
                for name, pid in daemons(proc.pid).items():
                    memory[name] = memory_kib(pid, "VmRSS")
            stop(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def row(label, samples):
        ms = sorted(s * 1000 for s in samples)
        print(f"{label:<28} median {statistics.median(ms):7.1f} ms   min {ms[0]:7.1f}   max {ms[-1]:7.1f}")

    print(f"alien serve to healthy /health, {args.runs} runs each ({binary})")
    row("first start (new data dir)", first)
    row("restart (existing data dir)", restart)
    print("\nresident memory once idle (VmRSS)")
    for name, kib in memory.items():
        print(f"{name:<12} {kib / 1024:6.1f} MiB")
    print(f"{'total':<12} {sum(memory.values()) / 1024:6.1f} MiB")


if __name__ == "__main__":
    main()
