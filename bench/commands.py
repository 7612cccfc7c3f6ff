#!/usr/bin/env python3
"""Round-trip latency and throughput of commands through the manager and commandd.

Usage: bench/commands.py [--binary PATH] [--count 200] [--duration 10] [--poll-ms 100]

Without --binary it runs `cargo build --release -p cli` and uses target/release/alien. It
starts `alien serve` on a fresh data directory (under /var/tmp, on disk: every accepted
command is fsynced) and a free loopback port, makes a local pull deployment whose release
has one container with commands enabled, reports it running, and measures:

  latency     one invoker, --count commands one after another: create (inline params),
              delivered to one receiver (lease), answered (inline response, signed URL,
              no bearer), result seen by the invoker (GET /v1/commands/{id}); p50 and p99
              of the whole round trip, once with long polls (waitSeconds=30 on both lease
              and status) and once polling every --poll-ms
  throughput  16 invokers and 4 receivers for --duration seconds, with long polls:
              completed round trips per second, and their p50/p99

Receivers resolve the envelope's relative submit URL against the lease URL, as the public
agents do. Everything runs on this machine over loopback, Python's http.client with
keep-alive connections, one per thread.
"""

import argparse
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse

from harness import start_serve, stop

STACK = {
    "id": "bench",
    "resources": {
        "jobs": {
            "config": {"type": "container", "id": "jobs", "commandsEnabled": True,
                       "code": {"type": "image", "image": "localhost/artifacts/default:x"}},
            "lifecycle": "live",
            "dependencies": [],
        }
    },
    "permissions": {"profiles": {}},
}


class Client:
    """One keep-alive connection to the manager."""

    def __init__(self, port, token=None):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None, token="default", expect=200):
        headers = {}
        token = self.token if token == "default" else token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    raise
        if expect is not None and response.status != expect:
            raise RuntimeError(f"{method} {path}: {response.status} {raw[:300]!r}")
        return json.loads(raw) if raw else None


def seed(port, admin):
    c = Client(port, admin)
    group = c.call("POST", "/v1/deployment-groups", {"name": "bench"})
    release = c.call("POST", "/v1/releases", {"projectId": "default", "stack": {"local": STACK}},
                     expect=201)
    created = c.call("POST", "/v1/deployments", {
        "name": "bench", "platform": "local", "deploymentGroupId": group["id"],
        "stackSettings": {"deploymentModel": "pull"}}, expect=201)
    deployment = created["deployment"]["id"]
    c.call("POST", "/v1/sync/reconcile", {
        "deploymentId": deployment, "session": "bench",
        "state": {"status": "running", "platform": "local", "protocolVersion": 1,
                  "currentRelease": {"releaseId": release["id"], "stack": STACK}}})
    return deployment, created["token"]


def receiver(port, token, deployment, stop, wait, poll_ms):
    c = Client(port, token)
    lease_path = "/v1/commands/leases" + (f"?waitSeconds={wait}" if wait else "")
    lease_url = f"http://127.0.0.1:{port}/v1/commands/leases"
    body = {"deploymentId": deployment,
            "target": {"resourceId": "jobs", "resourceType": "container"},
            "maxLeases": 4, "leaseSeconds": 60}
    while not stop.is_set():
        leases = c.call("POST", lease_path, body)["leases"]
        if not leases and not wait:
            time.sleep(poll_ms / 1000)
        for lease in leases:
            submit = urllib.parse.urljoin(lease_url, lease["envelope"]["responseHandling"]["submitResponseUrl"])
            path = urllib.parse.urlsplit(submit)
            answer = {"status": "success", "response": {"mode": "inline", "inlineBase64": "eyJvayI6dHJ1ZX0="}}
            c.call("PUT", f"{path.path}?{path.query}", answer, token=None)


def round_trip(c, deployment, wait, poll_ms):
    started = time.perf_counter()
    created = c.call("POST", "/v1/commands", {
        "deploymentId": deployment, "command": "bench",
        "params": {"mode": "inline", "inlineBase64": "eyJuIjoxfQ=="}})
    path = f"/v1/commands/{created['commandId']}" + (f"?waitSeconds={wait}" if wait else "")
    while True:
        status = c.call("GET", path)
        if status["state"] in ("SUCCEEDED", "FAILED", "EXPIRED"):
            assert status["state"] == "SUCCEEDED", status
            return time.perf_counter() - started
        if not wait:
            time.sleep(poll_ms / 1000)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def latency(port, admin, deployment, token, count, wait, poll_ms):
    stop = threading.Event()
    thread = threading.Thread(target=receiver, args=(port, token, deployment, stop, wait, poll_ms), daemon=True)
    thread.start()
    c = Client(port, admin)
    for _ in range(10):  # warm up
        round_trip(c, deployment, wait, poll_ms)
    times = [round_trip(c, deployment, wait, poll_ms) for _ in range(count)]
    stop.set()
    # Wake the receiver's long poll so that it sees the stop; the next run answers this one.
    c.call("POST", "/v1/commands", {"deploymentId": deployment, "command": "wake",
                                    "params": {"mode": "inline", "inlineBase64": "e30="}})
    thread.join()
    return percentile(times, 50), percentile(times, 99)


def throughput(port, admin, deployment, token, duration, invokers=16, receivers=4):
    stop = threading.Event()
    for _ in range(receivers):
        threading.Thread(target=receiver, args=(port, token, deployment, stop, 30, 0), daemon=True).start()
    times, lock = [], threading.Lock()
    end = time.perf_counter() + duration

    def invoke():
        c = Client(port, admin)
        while time.perf_counter() < end:
            t = round_trip(c, deployment, 30, 0)
            with lock:
                times.append(t)

    threads = [threading.Thread(target=invoke) for _ in range(invokers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    stop.set()
    return len(times) / elapsed, percentile(times, 50), percentile(times, 99), len(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--poll-ms", type=int, default=100)
    args = parser.parse_args()
    binary = args.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "-p", "cli"], check=True)
        binary = "target/release/alien"
    data = tempfile.mkdtemp(prefix="alien-bench-commands-", dir="/var/tmp")
    process, port, admin = start_serve(os.path.abspath(binary), data)
    try:
        deployment, token = seed(port, admin)
        ms = lambda s: f"{s * 1000:.1f} ms"
        p50, p99 = latency(port, admin, deployment, token, args.count, 30, args.poll_ms)
        print(f"latency, long polls (waitSeconds=30):   p50 {ms(p50)}  p99 {ms(p99)}  ({args.count} round trips)")
        p50, p99 = latency(port, admin, deployment, token, args.count, None, args.poll_ms)
        print(f"latency, polling every {args.poll_ms} ms:          p50 {ms(p50)}  p99 {ms(p99)}  ({args.count} round trips)")
        rate, p50, p99, n = throughput(port, admin, deployment, token, args.duration)
        print(f"throughput, 16 invokers, 4 receivers, long polls: {rate:.0f} round trips/s "
              f"(p50 {ms(p50)}, p99 {ms(p99)}, {n} in {args.duration:.0f} s)")
    finally:
        stop(process)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
