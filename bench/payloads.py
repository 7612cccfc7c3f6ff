#!/usr/bin/env python3
"""Large command payloads through the local backend's storage URLs: time and peak memory.

Usage: bench/payloads.py [--binary PATH] [--uploads 6] [--size-mib 60]

Without --binary it runs `cargo build --release -p cli` and uses target/release/alien. It
starts `alien serve` on a fresh data directory (under /var/tmp, on disk: every body is
fsynced before its 200) and a free loopback port, makes the local pull deployment of
bench/commands.py, and creates --uploads commands whose params (--size-mib each) go to
storage. Then:

  upload    every command's params PUT at once to its storage URL, each on a connection of
            its own (Content-Length, no bearer: the signature is the credential), then
            upload-complete
  download  one receiver leases all of them and every envelope's params are downloaded at
            once with their storageGetRequest, resolved against the lease URL

For each phase it reports the wall time and the bytes moved per second, and the peak
resident memory (VmHWM) of the manager and of commandd: before the uploads, after them, and
after the downloads.
"""

import argparse
import http.client
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse

from commands import Client, seed
from harness import daemons, memory_kib, start_serve, stop

MIB = 1024 * 1024


def put(port, path, body, results, index):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("PUT", path, body=body, headers={"Content-Type": "application/octet-stream"})
    response = conn.getresponse()
    results[index] = (response.status, response.read()[:300])
    conn.close()


def get(port, path, results, index):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("GET", path)
    response = conn.getresponse()
    size = 0
    while chunk := response.read(MIB):
        size += len(chunk)
    results[index] = (response.status, size)
    conn.close()


def at_once(target, jobs):
    """Runs target(*job, results, i) for every job in its own thread; the results and the
    wall time."""
    results = [None] * len(jobs)
    threads = [threading.Thread(target=target, args=(*job, results, i)) for i, job in enumerate(jobs)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - started


def path_of(url):
    parts = urllib.parse.urlsplit(url)
    return f"{parts.path}?{parts.query}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary")
    parser.add_argument("--uploads", type=int, default=6)
    parser.add_argument("--size-mib", type=int, default=60)
    args = parser.parse_args()
    binary = args.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "-p", "cli"], check=True)
        binary = "target/release/alien"
    size = args.size_mib * MIB
    body = (bytes(range(256)) * (size // 256 + 1))[:size]
    data = tempfile.mkdtemp(prefix="alien-bench-payloads-", dir="/var/tmp")
    process, port, admin = start_serve(os.path.abspath(binary), data)
    try:
        deployment, token = seed(port, admin)
        pids = daemons(process.pid)
        peaks = lambda: {name: memory_kib(pids[name], "VmHWM") for name in ("manager", "commandd")}
        invoker = Client(port, admin)
        commands = []
        for _ in range(args.uploads):
            created = invoker.call("POST", "/v1/commands", {
                "deploymentId": deployment, "command": "bench",
                "params": {"mode": "storage", "size": size}})
            assert created["state"] == "PENDING_UPLOAD", created
            commands.append((created["commandId"], created["storageUpload"]["putRequest"]["backend"]["url"]))
        before = peaks()

        results, upload_s = at_once(put, [(port, path_of(url), body) for _, url in commands])
        assert all(status == 200 for status, _ in results), results
        for command_id, _ in commands:
            invoker.call("POST", f"/v1/commands/{command_id}/upload-complete", {"size": size})
        after_upload = peaks()

        lease_url = f"http://127.0.0.1:{port}/v1/commands/leases"
        leases = Client(port, token).call("POST", "/v1/commands/leases", {
            "deploymentId": deployment,
            "target": {"resourceId": "jobs", "resourceType": "container"},
            "maxLeases": args.uploads, "leaseSeconds": 600})["leases"]
        assert len(leases) == args.uploads, leases
        urls = [urllib.parse.urljoin(lease_url, lease["envelope"]["params"]["storageGetRequest"]["backend"]["url"])
                for lease in leases]
        results, download_s = at_once(get, [(port, path_of(url)) for url in urls])
        assert all(result == (200, size) for result in results), results
        after_download = peaks()

        total = args.uploads * size / MIB
        print(f"{args.uploads} x {args.size_mib} MiB at once")
        print(f"upload:   {upload_s:.2f} s, {total / upload_s:.0f} MiB/s")
        print(f"download: {download_s:.2f} s, {total / download_s:.0f} MiB/s")
        mib = lambda kib: f"{kib / 1024:.1f} MiB"
        for name in ("manager", "commandd"):
            print(f"{name:9} VmHWM: before {mib(before[name])}, after the uploads "
                  f"{mib(after_upload[name])}, after the downloads {mib(after_download[name])}")
    finally:
        stop(process)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
