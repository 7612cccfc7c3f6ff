#!/usr/bin/env python3
"""Throughput and latency of four manager API requests under 32 concurrent connections, with
1,000 deployments and 100 releases in the database, and the manager's memory.

Usage: bench/api.py [--binary PATH] [--duration 10s] [--connections 32] [--threads 2]

Without --binary it runs `cargo build --release -p cli` and uses target/release/alien. It
starts `alien serve` on a fresh data directory and a free loopback port, seeds through the
API (100 releases, then 10 deployment groups of 100 deployments each: local, pull model, so
that the manager's own deployment loop leaves them alone, each desiring the latest release),
then runs wrk (installed with apt-get when missing and we are root) against:

  GET  /v1/deployments/{id}                    admin; a random one of the 1,000
  GET  /v1/deployments?include=deploymentGroup admin; all 1,000 (there is no pagination)
  POST /v1/releases                            admin; one small local stack
  POST /v1/sync                                a deployment's own token, no report (an
                                               agent's poll); a random one of 100

and prints requests/s, p50 and p99 latency, non-2xx answers, and the manager daemon's
resident memory (VmRSS) after seeding and after each run, its peak (VmHWM), and the CPU time
it spent per request (user and system), which moves less with the machine's other load.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

from harness import cpu_seconds, daemons, memory_kib, start_serve, stop

GROUPS = 10
PER_GROUP = 100
RELEASES = 100
SYNC_AGENTS = 100

STACK = {
    "id": "my-app",
    "resources": {
        "api": {
            "config": {
                "type": "worker",
                "id": "api",
                "permissions": "execution",
                "code": {"type": "image", "image": "localhost:8080/artifacts/default:api-1"},
                "links": [],
                "triggers": [],
            },
            "lifecycle": "live",
            "dependencies": [],
        }
    },
    "permissions": {"profiles": {}},
}
RELEASE = {"projectId": "default", "stack": {"local": STACK}}


def ensure_wrk():
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("wrk is not installed (apt-get install wrk)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)


class Client:
    def __init__(self, port, token):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.token = token

    def call(self, method, path, body=None, status=200, token=None):
        headers = {"Authorization": f"Bearer {token or self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        text = response.read()
        if response.status != status:
            sys.exit(f"{method} {path}: want {status}, got {response.status} {text[:300]!r}")
        return json.loads(text) if text else None


def seed(client):
    for _ in range(RELEASES):
        client.call("POST", "/v1/releases", RELEASE, status=201)
    deployments = []
    for g in range(GROUPS):
        group = client.call(
            "POST", "/v1/deployment-groups", {"name": f"fleet-{g}", "maxDeployments": PER_GROUP}
        )
        for d in range(PER_GROUP):
            created = client.call(
                "POST",
                "/v1/deployments",
                {
                    "name": f"customer-{g}-{d}",
                    "platform": "local",
                    "deploymentGroupId": group["id"],
                    "stackSettings": {"deploymentModel": "pull"},
                },
                status=201,
            )
            deployments.append((created["deployment"]["id"], created["token"]))
    return deployments


def lua(value):
    """A Lua literal of a string or a (nested) list of strings."""
    if isinstance(value, list):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    return json.dumps(value)


def scripts(work, token, deployments):
    ids = [d for d, _ in deployments]
    agents = deployments[:SYNC_AGENTS]
    common = f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    files = {
        "get-deployment": common
        + f"local ids = {lua(ids)}\n"
        + textwrap.dedent(
            """
            request = function()
              return wrk.format("GET", "/v1/deployments/" .. ids[math.random(#ids)])
            end
            """
        ),
        "list-deployments": common
        + 'wrk.path = "/v1/deployments?include=deploymentGroup"\n',
        "create-release": common
        + 'wrk.method = "POST"\n'
        + 'wrk.path = "/v1/releases"\n'
        + 'wrk.headers["Content-Type"] = "application/json"\n'
        + f"wrk.body = {json.dumps(json.dumps(RELEASE))}\n",
        "sync": f"local agents = {lua([[d, t] for d, t in agents])}\n"
        + textwrap.dedent(
            """
            request = function()
              local agent = agents[math.random(#agents)]
              local headers = {}
              headers["Authorization"] = "Bearer " .. agent[2]
              headers["Content-Type"] = "application/json"
              return wrk.format("POST", "/v1/sync", headers, '{"deploymentId":"' .. agent[1] .. '"}')
            end
            """
        ),
    }
    paths = {}
    for name, text in files.items():
        path = os.path.join(work, f"{name}.lua")
        with open(path, "w") as f:
            f.write(text)
        paths[name] = path
    return paths


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def millis(text):
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * UNITS[unit]


def run_wrk(port, script, args):
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}",
        "--latency",
        "-s",
        script,
        f"http://127.0.0.1:{port}",
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = millis(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = millis(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    return requests, rps, p50, p99, int(errors.group(1)) if errors else 0, socket_errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", help="an alien binary (default: build the release one)")
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if args.binary:
        binary = os.path.abspath(args.binary)
    else:
        subprocess.run(["cargo", "build", "--release", "-p", "cli"], check=True, cwd=root)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
        binary = os.path.join(target, "release", "alien")
    ensure_wrk()

    work = tempfile.mkdtemp(prefix="alien-bench-api-")
    proc = None
    try:
        proc, port, token = start_serve(binary, os.path.join(work, "data"))
        manager = daemons(proc.pid)["manager"]
        began = time.monotonic()
        deployments = seed(Client(port, token))
        print(
            f"seeded {RELEASES} releases and {len(deployments)} deployments "
            f"in {time.monotonic() - began:.1f} s ({binary})"
        )
        print(f"manager RSS after seeding: {memory_kib(manager, 'VmRSS') / 1024:.1f} MiB\n")
        paths = scripts(work, token, deployments)
        print(
            f"wrk -t{args.threads} -c{args.connections} -d{args.duration} --latency\n"
            f"{'request':<44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'RSS MiB':>8} {'CPU µs/req':>10}"
        )
        failed = False
        for label, name in [
            ("GET /v1/deployments/{id}", "get-deployment"),
            ("GET /v1/deployments?include=deploymentGroup", "list-deployments"),
            ("POST /v1/releases", "create-release"),
            ("POST /v1/sync", "sync"),
        ]:
            cpu_before = cpu_seconds(manager)
            requests, rps, p50, p99, errors, socket_errors = run_wrk(port, paths[name], args)
            # The manager's CPU time per request: less at the mercy of the machine's other
            # load than the rate is.
            cpu = (cpu_seconds(manager) - cpu_before) / max(requests, 1) * 1e6
            rss = memory_kib(manager, "VmRSS") / 1024
            print(
                f"{label:<44} {rps:9.0f} {p50:8.2f} {p99:8.2f} {errors:8d} {rss:8.1f} {cpu:10.0f}"
            )
            if socket_errors:
                print(f"  {socket_errors.group(0)}")
            failed = failed or errors > 0 or socket_errors is not None
        print(f"\nmanager peak RSS (VmHWM): {memory_kib(manager, 'VmHWM') / 1024:.1f} MiB")
        if failed:
            sys.exit("some requests failed: the figures above do not measure what they say")
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
