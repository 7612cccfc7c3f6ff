#!/usr/bin/env python3
"""Registry push and pull throughput and peak memory: registryd through the manager's public
port, beside Debian's docker-registry (the CNCF distribution registry 2.8), on the same blobs.

Usage: bench/registry.py [--binary PATH] [--runs N] [--small-count N] [--jobs N]

Starts `alien serve` (release build; built unless --binary names one) and `docker-registry`
(installed with apt-get when missing) side by side, each on a fresh data directory under
/var/tmp (on disk) and a free loopback port. ours is reached as clients reach it: through the
manager's public port with the admin key (`Authorization: Bearer`), so authentication and the
manager's extra hop over registryd's Unix socket are in every figure; docker-registry is
reached directly, with no authentication. Both get the very same requests from the same
client: for each blob `POST /v2/<name>/blobs/uploads/` then one monolithic `PUT ?digest=`
streamed from the file (`Content-Length`, keep-alive), and `GET` read to its end.

Workloads, generated once in random bytes: one layer of 1 GiB (`--large-mib`), pushed and
pulled `--runs` times; `--small-count` layers of 256 KiB, pushed and pulled `--runs` times
by one connection and by `--jobs` connections at once. Every run pushes blobs that neither
registry has seen (each run's blobs start with the run's own 8 bytes), so no run is a
deduplicated no-op; before each push the disk's writeback is finished (`sync`), so that
one registry does not pay for the other's. At the end, the peak resident memory (`VmHWM`) of each process: the
supervisor and each daemon of ours, listed separately, and docker-registry.
"""

import argparse
import hashlib
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from harness import daemons, free_port, memory_kib, start_serve, stop

CHUNK = 1024 * 1024
MIB = 1024 * 1024


def wait_port(port, proc, what):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


# ---- the two registries ----


def ensure_docker_registry():
    if shutil.which("docker-registry"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker-registry"],
        check=True,
        env=env,
    )


def start_docker_registry(work):
    port = free_port()
    config = os.path.join(work, "docker-registry.yml")
    with open(config, "w") as f:
        f.write(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {os.path.join(work, 'docker-registry')}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
    proc = subprocess.Popen(
        ["docker-registry", "serve", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_port(port, proc, "docker-registry")
    return proc, port


# ---- blobs ----


class Blob:
    """A file of random bytes; run `r` sends it with its first 8 bytes replaced by `r`."""

    def __init__(self, path, size):
        self.path = path
        self.size = size
        self.digests = {}

    def prefix(self, run):
        return run.to_bytes(8, "little")

    def prepare(self, run):
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            first = f.read(CHUNK)
            h.update(self.prefix(run) + first[8:])
            while chunk := f.read(CHUNK):
                h.update(chunk)
        self.digests[run] = "sha256:" + h.hexdigest()

    def chunks(self, run):
        with open(self.path, "rb") as f:
            first = f.read(CHUNK)
            yield self.prefix(run) + first[8:]
            while chunk := f.read(CHUNK):
                yield chunk


def make_blobs(work, large_mib, small_count):
    directory = os.path.join(work, "blobs")
    os.makedirs(directory)
    large = os.path.join(directory, "large")
    with open(large, "wb") as f:
        for _ in range(large_mib):
            f.write(os.urandom(MIB))
    small = []
    for i in range(small_count):
        path = os.path.join(directory, f"small-{i}")
        with open(path, "wb") as f:
            f.write(os.urandom(256 * 1024))
        small.append(Blob(path, 256 * 1024))
    return Blob(large, large_mib * MIB), small


# ---- the client ----


class Client:
    """One keep-alive connection to a registry, with Nagle's algorithm off as in Go's and
    Rust's clients: otherwise the tail of each body waits for the server's delayed ACK."""

    def __init__(self, port, token):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}

    def request(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=body, headers={**self.auth, **(headers or {})})
        return self.conn.getresponse()

    def push(self, name, blob, run):
        r = self.request("POST", f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
        r.read()
        if r.status != 202:
            sys.exit(f"POST {name}: {r.status}")
        location = r.getheader("Location")
        if location.startswith("http"):
            location = "/" + location.split("/", 3)[3]
        sep = "&" if "?" in location else "?"
        digest = blob.digests[run]
        r = self.request(
            "PUT",
            f"{location}{sep}digest={digest}",
            body=blob.chunks(run),
            headers={"Content-Length": str(blob.size), "Content-Type": "application/octet-stream"},
        )
        r.read()
        if r.status != 201:
            sys.exit(f"PUT {name} {digest}: {r.status}")

    def pull(self, name, blob, run):
        digest = blob.digests[run]
        r = self.request("GET", f"/v2/{name}/blobs/{digest}")
        received = 0
        while chunk := r.read(CHUNK):
            received += len(chunk)
        if r.status != 200 or received != blob.size:
            sys.exit(f"GET {name} {digest}: {r.status}, {received} bytes")
        if r.getheader("Docker-Content-Digest") not in (None, digest):
            sys.exit(f"GET {name} {digest}: digest {r.getheader('Docker-Content-Digest')}")

    def close(self):
        self.conn.close()


def timed(port, token, name, blobs, run, jobs, action):
    """MiB/s of `action` (push or pull) over `blobs` with `jobs` connections."""
    shares = [blobs[i::jobs] for i in range(jobs)]
    clients = [Client(port, token) for _ in range(jobs)]

    def work(client, share):
        for blob in share:
            getattr(client, action)(name, blob, run)

    began = time.monotonic()
    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(work, c, s) for c, s in zip(clients, shares)]:
            future.result()
    elapsed = time.monotonic() - began
    for c in clients:
        c.close()
    return sum(b.size for b in blobs) / MIB / elapsed, len(blobs) / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", help="an alien binary (default: build the release one)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--small-count", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=4, help="connections for the parallel run")
    parser.add_argument("--dir", default="/var/tmp", help="where data directories go")
    args = parser.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if args.binary:
        binary = os.path.abspath(args.binary)
    else:
        subprocess.run(["cargo", "build", "--release", "-p", "cli"], check=True, cwd=root)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
        binary = os.path.join(target, "release", "alien")
    ensure_docker_registry()
    version = subprocess.run(
        ["docker-registry", "--version"], capture_output=True, text=True
    ).stdout.strip()

    work = tempfile.mkdtemp(prefix="alien-bench-registry-", dir=args.dir)
    ours = theirs = None
    try:
        print(f"generating 1 x {args.large_mib} MiB and {args.small_count} x 256 KiB ...", flush=True)
        large, small = make_blobs(work, args.large_mib, args.small_count)
        ours, ours_port, token = start_serve(binary, os.path.join(work, "alien"))
        theirs, theirs_port = start_docker_registry(work)
        targets = [
            ("registryd via manager", ours_port, token),
            ("docker-registry", theirs_port, None),
        ]
        workloads = [
            (f"1 x {args.large_mib} MiB", [large], 1),
            (f"{args.small_count} x 256 KiB, 1 conn", small, 1),
            (f"{args.small_count} x 256 KiB, {args.jobs} conns", small, args.jobs),
        ]
        results = {}
        run = 0
        for label, blobs, jobs in workloads:
            for _ in range(args.runs):
                run += 1
                for blob in blobs:
                    blob.prepare(run)
                # The same run's blobs go to each registry in turn, alternating who goes first.
                order = targets if run % 2 else list(reversed(targets))
                for registry, port, tok in order:
                    name = f"artifacts/default/bench/run{run}"
                    # The disk's writeback done first: neither pays for the other's.
                    os.sync()
                    push = timed(port, tok, name, blobs, run, jobs, "push")
                    pull = timed(port, tok, name, blobs, run, jobs, "pull")
                    results.setdefault((label, registry), []).append((push, pull))
                print(f"  {label}: run {run} done", flush=True)

        print(f"\nalien: {binary}\ndocker-registry: {version}\n")
        print(f"{'workload':<28} {'registry':<22} {'push MiB/s (runs)':<26} {'pull MiB/s (runs)':<26} {'push blobs/s':>12}")
        for label, _, _ in workloads:
            for registry, _, _ in targets:
                figures = results[(label, registry)]
                push = ", ".join(f"{p[0]:.0f}" for p, _ in figures)
                pull = ", ".join(f"{q[0]:.0f}" for _, q in figures)
                rate = statistics.median(p[1] for p, _ in figures)
                print(f"{label:<28} {registry:<22} {push:<26} {pull:<26} {rate:12.1f}")

        print("\npeak RSS (VmHWM)")
        pids = {"supervisor (alien serve)": ours.pid}
        pids.update({f"  {name}": pid for name, pid in sorted(daemons(ours.pid).items())})
        total = 0
        for name, pid in pids.items():
            kib = memory_kib(pid, "VmHWM")
            total += kib
            print(f"{name:<28} {kib / 1024:8.1f} MiB")
        print(f"{'ours, sum of the peaks':<28} {total / 1024:8.1f} MiB")
        print(f"{'docker-registry':<28} {memory_kib(theirs.pid, 'VmHWM') / 1024:8.1f} MiB")
    finally:
        stop(ours)
        stop(theirs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
