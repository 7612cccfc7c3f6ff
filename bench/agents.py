#!/usr/bin/env python3
"""Pull agents: how long a release takes to reach N agents, with the sync long-poll and with
plain syncs every 30 s, what N agents waiting in long-polls cost the manager, and an idle
agent's memory.

Usage: bench/agents.py [--binary PATH] [--workload PATH] [--count 50]

Builds (unless given) the release `alien` and `alien-test-web`, packs the latter as two OCI
images (v1, v2) and pushes them with skopeo to a fresh `alien serve` (its deployment loop
off: the agents deploy). Then, for each mode, N `alien agent` processes, each with its own
data directory, set themselves up with one deployment-group token and run the release (one
container each, in runc as root). "Onboard" is the time from the agents' start until the
manager records all N running v1; "release" the time from `POST /v1/releases` of v2 until it
records all N running v2. While the N agents idle (their syncs held by the manager, or
between plain syncs), the manager daemon's CPU over 10 s and its RSS, and the agents' RSS
(median and largest, and the private part: RssAnon, without the binary's shared pages) are
read from /proc.
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from deployments import api, layer, push_images, stack, write_layout
from harness import cpu_seconds, daemons, memory_kib, start_serve, stop

SETTLE_TIMEOUT_S = 900


def group_deployments(port, token, group):
    return api(port, token, "GET", f"/v1/deployments?deploymentGroupId={group}")["items"]


def wait_running(port, token, group, count, release):
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        items = group_deployments(port, token, group)
        done = sum(1 for d in items
                   if d["status"] == "running" and d.get("currentReleaseId") == release)
        failed = [d for d in items if d["status"].endswith("failed")]
        if failed:
            sys.exit(f"{failed[0]['id']} is {failed[0]['status']}")
        if len(items) == count and done == count:
            return
        time.sleep(0.1)
    sys.exit(f"not all {count} agents reached {release} within {SETTLE_TIMEOUT_S} s")


def run(binary, layouts, count, long_poll):
    work = tempfile.mkdtemp(prefix="bench-agents-", dir="/var/tmp")
    config = os.path.join(work, "alien-manager.toml")
    with open(config, "w") as f:
        f.write("[server]\ndisable-deployment-loop = true\ndisable-heartbeat-loop = true\n")
    proc, port, token = start_serve(binary, os.path.join(work, "data"), config)
    agents = []
    try:
        host = f"127.0.0.1:{port}"
        refs = push_images(port, token, layouts)
        first = api(port, token, "POST", "/v1/releases",
                    {"projectId": "default", "stack": {"local": stack(refs["v1"])}})["id"]
        group = api(port, token, "POST", "/v1/deployment-groups",
                    {"name": "bench", "maxDeployments": count + 1})["id"]
        group_token = api(port, token, "POST", f"/v1/deployment-groups/{group}/tokens")["token"]
        token_file = os.path.join(work, "token")
        with open(token_file, "w") as f:
            f.write(group_token)
        os.chmod(token_file, 0o600)
        began = time.monotonic()
        for i in range(count):
            command = [binary, "agent", "--sync-url", f"http://{host}",
                       "--sync-token-file", token_file, "--operator-name", f"agent-{i}",
                       "--data-dir", os.path.join(work, f"agent-{i}"), "--otlp-port", "0"]
            if not long_poll:
                command.append("--no-long-poll")
            log = open(os.path.join(work, f"agent-{i}.log"), "w")
            agents.append(subprocess.Popen(command, stdout=log, stderr=log,
                                           env={**os.environ, "RUST_LOG": "warn"}))
        wait_running(port, token, group, count, first)
        onboard_s = time.monotonic() - began
        time.sleep(5)
        manager = daemons(proc.pid)["manager"]
        cpu_before = cpu_seconds(manager)
        time.sleep(10)
        manager_cpu = cpu_seconds(manager) - cpu_before
        manager_kib = memory_kib(manager, "VmRSS")
        agent_kib = [memory_kib(a.pid, "VmRSS") for a in agents]
        agent_anon_kib = [memory_kib(a.pid, "RssAnon") for a in agents]
        began = time.monotonic()
        second = api(port, token, "POST", "/v1/releases",
                     {"projectId": "default", "stack": {"local": stack(refs["v2"])}})["id"]
        wait_running(port, token, group, count, second)
        release_s = time.monotonic() - began
        return onboard_s, release_s, manager_cpu, manager_kib, agent_kib, agent_anon_kib
    finally:
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
        for agent in agents:
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/release/alien")
    parser.add_argument("--workload", default="target/release/alien-test-web")
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    if not (os.path.exists(args.binary) and os.path.exists(args.workload)):
        subprocess.run(["cargo", "build", "--release", "-p", "cli", "-p", "test-workloads"],
                       check=True)
    binary = os.path.abspath(args.binary)
    scratch = tempfile.mkdtemp(prefix="bench-images-")
    try:
        tar_bytes, blob = layer(os.path.abspath(args.workload))
        layouts = {}
        for version in ("v1", "v2"):
            layouts[version] = os.path.join(scratch, version)
            write_layout(layouts[version], args.workload, version, tar_bytes, blob)
        print("| agents | syncs | start → all running | release → all running "
              "| manager CPU idle (10 s) | manager RSS | agent RSS median / max "
              "| agent private (anonymous) RSS median |")
        print("|---|---|---|---|---|---|---|---|")
        for long_poll in (True, False):
            onboard, release, cpu, manager_kib, agent_kib, anon_kib = run(
                binary, layouts, args.count, long_poll)
            print(f"| {args.count} | {'long-poll' if long_poll else 'every 30 s'} "
                  f"| {onboard:.1f} s | {release:.1f} s | {cpu:.2f} s "
                  f"| {manager_kib / 1024:.1f} MiB "
                  f"| {statistics.median(agent_kib) / 1024:.1f} / "
                  f"{max(agent_kib) / 1024:.1f} MiB "
                  f"| {statistics.median(anon_kib) / 1024:.1f} MiB |", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
