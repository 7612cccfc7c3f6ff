#!/usr/bin/env python3
"""How fast a new release reaches pull agents waiting in `POST /v1/sync?waitSeconds=30`, and
what the waiting costs the manager.

Usage: bench/sync_longpoll.py [--binary PATH] [--agents 50,500] [--rounds 3] [--idle 5]

Without --binary it runs `cargo build --release -p cli` and uses target/release/alien. It
starts `alien serve` on a fresh data directory (under /var/tmp, on disk) and a free loopback
port, makes as many local pull deployments as the largest --agents, each with an agent that
reached the first release, and then, for each number of agents, --rounds times:

  held      every agent sends its sync (its report: running on its release) with
            waitSeconds=30, each on its own keep-alive connection and thread; once all are
            held, the manager's resident memory (VmRSS) and its CPU time over --idle seconds
  wake-up   the admin creates a release; the time from its answer to each agent's answer
            carrying the new release as its target: p50, p99 and the last one

Everything runs on this machine over loopback with Python's http.client.
"""

import argparse
import http.client
import json
import os
import shutil
import tempfile
import threading
import time

from harness import cpu_seconds, daemons, memory_kib, release_binary, start_serve, stop

STACK = {
    "id": "bench",
    "resources": {
        "api": {
            "config": {"type": "worker", "id": "api", "permissions": "execution",
                       "code": {"type": "image", "image": "localhost/artifacts/default:x"},
                       "links": [], "triggers": []},
            "lifecycle": "live",
            "dependencies": [],
        }
    },
    "permissions": {"profiles": {}},
}


class Client:
    """One keep-alive connection to the manager."""

    def __init__(self, port, token):
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body, expect=200):
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        self.conn.request(method, path, body=json.dumps(body).encode(), headers=headers)
        response = self.conn.getresponse()
        raw = response.read()
        if response.status != expect:
            raise RuntimeError(f"{method} {path}: {response.status} {raw[:300]!r}")
        return json.loads(raw)


def running_on(release):
    return {"status": "running", "platform": "local", "protocolVersion": 1,
            "currentRelease": {"releaseId": release, "stack": STACK}}


def create_release(admin):
    return admin.call("POST", "/v1/releases", {"projectId": "default", "stack": {"local": STACK}},
                      expect=201)["id"]


def seed(port, admin, count):
    """`count` deployments whose agents reached the first release: (id, token) each."""
    group = admin.call("POST", "/v1/deployment-groups", {"name": "bench", "maxDeployments": count})
    release = create_release(admin)
    agents = []
    for n in range(count):
        created = admin.call("POST", "/v1/deployments", {
            "name": f"agent-{n}", "platform": "local", "deploymentGroupId": group["id"],
            "stackSettings": {"deploymentModel": "pull"}}, expect=201)
        agent = Client(port, created["token"])
        deployment = created["deployment"]["id"]
        reply = agent.call("POST", "/v1/sync", {"deploymentId": deployment,
                                                "currentState": running_on(release)})
        assert "target" not in reply, reply
        agents.append((deployment, agent))
    return agents, release


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def round_of(admin, agents, release, manager, idle):
    """One round: every agent waits, the manager is measured, a release wakes them all."""
    answers = [None] * len(agents)
    sent = threading.Barrier(len(agents) + 1)

    def wait(n, deployment, agent):
        sent.wait()
        reply = agent.call("POST", "/v1/sync?waitSeconds=30",
                           {"deploymentId": deployment, "currentState": running_on(release)})
        answers[n] = (time.perf_counter(), reply)

    threads = [threading.Thread(target=wait, args=(n, d, a)) for n, (d, a) in enumerate(agents)]
    for t in threads:
        t.start()
    sent.wait()
    # Every sync reaches the manager and is held well within a second, on two cores.
    time.sleep(1 + len(agents) / 500)
    assert all(a is None for a in answers), "a sync was answered before the release"
    rss = memory_kib(manager, "VmRSS")
    cpu = cpu_seconds(manager)
    time.sleep(idle)
    cpu = cpu_seconds(manager) - cpu
    new = create_release(admin)
    released = time.perf_counter()
    for t in threads:
        t.join()
    delays = []
    for at, reply in answers:
        assert reply["target"]["releaseInfo"]["releaseId"] == new, reply
        delays.append(max(0.0, at - released))
    return new, rss, cpu, delays


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary")
    parser.add_argument("--agents", default="50,500")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=float, default=5)
    args = parser.parse_args()
    counts = [int(n) for n in args.agents.split(",")]
    binary = release_binary(args.binary)
    data = tempfile.mkdtemp(prefix="alien-bench-sync-", dir="/var/tmp")
    process, port, token = start_serve(os.path.abspath(binary), data)
    try:
        admin = Client(port, token)
        agents, release = seed(port, admin, max(counts))
        manager = daemons(process.pid)["manager"]
        print(f"manager idle: VmRSS {memory_kib(manager, 'VmRSS')} KiB")
        ms = lambda s: f"{s * 1000:.1f} ms"
        for count in counts:
            for r in range(args.rounds):
                release, rss, cpu, delays = round_of(admin, agents[:count], release, manager,
                                                     args.idle)
                print(f"{count} agents, round {r + 1}: held: VmRSS {rss} KiB, CPU {cpu:.2f} s "
                      f"in {args.idle:.0f} s; release to answer: p50 {ms(percentile(delays, 50))} "
                      f"p99 {ms(percentile(delays, 99))} last {ms(max(delays))}")
                # The agents that were not waiting reach the release too, as they would.
                for deployment, agent in agents[count:]:
                    agent.call("POST", "/v1/sync", {"deploymentId": deployment,
                                                    "currentState": running_on(release)})
    finally:
        stop(process)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
