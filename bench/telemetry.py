#!/usr/bin/env python3
"""Telemetry forwarded end to end: records and bytes per second from senders through the
manager and otelfwd's durable queue to an OTLP/HTTP backend, and otelfwd's CPU and memory.

Usage: bench/telemetry.py [--binary PATH] [--duration 10] [--connections 4] [--dir /var/tmp]

Without --binary it runs `cargo build --release -p cli` and uses target/release/alien. It
runs under the Python of target/telemetry-tools/venv (made by .ci/run), whose
opentelemetry-proto package builds the requests. It starts a backend (Python's threading HTTP
server on a free loopback port: reads each body, answers 200) and `alien serve` on a fresh
data directory under --dir (on disk) forwarding to it, makes a deployment, and then, for each
request size, sends OTLP/HTTP protobuf log exports with the deployment's token over
--connections keep-alive connections for --duration seconds:

  small: 1 kB requests (2 log records of some 500 bytes)
  large: 256 kB requests (256 log records of some 1 kB)

Every request is acknowledged only once fsynced in otelfwd's queue. The run ends when
otelfwd's counters (GET /v1/telemetry/status) say everything acknowledged was sent. Printed:
requests and log records per second and MiB/s of request bodies, for ingest (acknowledged)
and end to end (until the last one was delivered); the bytes the backend received (gzip);
otelfwd's and the manager's CPU (utime + stime over wall time, 100% = one core) and
otelfwd's resident memory at the end and its peak (VmHWM).
"""

import argparse
import http.client
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from harness import cpu_seconds, daemons, free_port, memory_kib, start_serve, stop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PYTHON = os.path.join(ROOT, "target", "telemetry-tools", "venv", "bin", "python")

try:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
except ImportError:
    if os.path.exists(VENV_PYTHON) and os.path.abspath(sys.executable) != VENV_PYTHON:
        os.execv(VENV_PYTHON, [VENV_PYTHON] + sys.argv)
    sys.exit("opentelemetry-proto is missing: run .ci/run, which makes target/telemetry-tools/venv")

MIB = 1024 * 1024


class Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    requests = 0
    bytes = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with Backend.lock:
            Backend.requests += 1
            Backend.bytes += len(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def export(records, record_size):
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value="bench"))
    )
    scope = resource_logs.scope_logs.add()
    for i in range(records):
        record = scope.log_records.add()
        record.time_unix_nano = time.time_ns()
        record.severity_text = "INFO"
        record.body.string_value = f"log line {i} " + "x" * (record_size - 40)
    return request.SerializeToString()


class Api:
    def __init__(self, port, token):
        self.port, self.token = port, token

    def call(self, method, path, body=None, token=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"authorization": f"Bearer {token or self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["content-type"] = "application/json"
        conn.request(method, path, data, headers)
        response = conn.getresponse()
        text = response.read()
        conn.close()
        if response.status >= 300:
            sys.exit(f"{method} {path}: {response.status} {text[:300]!r}")
        return json.loads(text)

    def status(self):
        return self.call("GET", "/v1/telemetry/status")["signals"]["logs"]


def run(api, token, body, records_per_request, seconds, connections):
    """Sends `body` as fast as acknowledged on each connection for `seconds`; returns
    (requests acknowledged, refusals)."""
    stop = time.monotonic() + seconds
    counts = [[0, 0] for _ in range(connections)]

    def work(slot):
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
        headers = {
            "authorization": f"Bearer {token}",
            "content-type": "application/x-protobuf",
        }
        while time.monotonic() < stop:
            conn.request("POST", "/v1/logs", body, headers)
            response = conn.getresponse()
            text = response.read()
            if response.status == 200 and text == b'{"accepted":true}':
                counts[slot][0] += 1
            else:
                counts[slot][1] += 1
        conn.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", help="an alien binary (default: build the release one)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--dir", default="/var/tmp", help="where the data directory goes")
    args = parser.parse_args()

    if args.binary:
        binary = os.path.abspath(args.binary)
    else:
        subprocess.run(["cargo", "build", "--release", "-p", "cli"], check=True, cwd=ROOT)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        binary = os.path.join(target, "release", "alien")

    backend_port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", backend_port), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    work = tempfile.mkdtemp(prefix="alien-bench-telemetry-", dir=args.dir)
    config = os.path.join(work, "alien-manager.toml")
    with open(config, "w") as f:
        f.write(f'[telemetry]\notlp-endpoint = "http://127.0.0.1:{backend_port}"\n')
    proc, port, admin = start_serve(binary, os.path.join(work, "data"), config)
    try:
        api = Api(port, admin)
        group = api.call("POST", "/v1/deployment-groups", {"name": "bench"})
        created = api.call(
            "POST",
            "/v1/deployments",
            {"name": "bench", "platform": "local", "deploymentGroupId": group["id"],
             "stackSettings": {"deploymentModel": "pull"}},
        )
        token = created["token"]
        pids = daemons(proc.pid)
        otelfwd, manager = pids["otelfwd"], pids["manager"]

        print(f"{args.connections} connections, {args.duration:.0f} s per size, data in {work}\n")
        header = (f"{'size':<7}{'requests/s':>12}{'records/s':>12}{'MiB/s':>8}"
                  f"{'e2e records/s':>15}{'e2e MiB/s':>11}{'gzip MiB out':>14}"
                  f"{'otelfwd CPU':>13}{'manager CPU':>13}{'otelfwd RSS':>13}")
        print(header)
        for name, records, record_size in [("small", 2, 500), ("large", 256, 1000)]:
            body = export(records, record_size)
            before = api.status()
            sent_before = before["sentRecords"]
            backend_before = Backend.bytes
            cpu_before = (cpu_seconds(otelfwd), cpu_seconds(manager))
            start = time.monotonic()
            acknowledged, refused = run(api, token, body, records, args.duration, args.connections)
            ingest_seconds = time.monotonic() - start
            while True:
                status = api.status()
                if status["sentRecords"] - sent_before >= acknowledged:
                    break
                if time.monotonic() - start > args.duration + 120:
                    sys.exit(f"not drained: {status}")
                time.sleep(0.05)
            e2e_seconds = time.monotonic() - start
            cpu = [(cpu_seconds(p) - b) / e2e_seconds * 100 for p, b in zip((otelfwd, manager), cpu_before)]
            items = acknowledged * records
            mib = acknowledged * len(body) / MIB
            print(
                f"{name + ' ' + str(round(len(body) / 1024)) + 'k':<7}"
                f"{acknowledged / ingest_seconds:>12.0f}{items / ingest_seconds:>12.0f}"
                f"{mib / ingest_seconds:>8.1f}{items / e2e_seconds:>15.0f}{mib / e2e_seconds:>11.1f}"
                f"{(Backend.bytes - backend_before) / MIB:>14.1f}"
                f"{cpu[0]:>12.0f}%{cpu[1]:>12.0f}%"
                f"{memory_kib(otelfwd, 'VmRSS') / 1024:>10.1f} MiB"
            )
            if refused:
                print(f"  {refused} requests were refused (503): the queue was full")
        print(f"\notelfwd peak RSS (VmHWM): {memory_kib(otelfwd, 'VmHWM') / 1024:.1f} MiB; "
              f"backend received {Backend.requests} requests")
    finally:
        stop(proc)
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
