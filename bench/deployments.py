#!/usr/bin/env python3
"""Push deployments on `local`: how long a release takes to reach every deployment, whether
any request fails while they update, and what deployd costs.

Usage: bench/deployments.py [--binary PATH] [--workload PATH] [--counts 1,10,50]

Builds (unless given) the release `alien` and `alien-test-web`, packs the latter as two OCI
images (its program and the shared libraries `ldd` names; version v1 and v2 in the image's
command) and pushes them with skopeo to the manager's `/v2`, as a vendor pushes a release.
For each count N, on a fresh `alien serve` (deployment loop every second): release v1, onboard
N push deployments on `local` (one container each, with an HTTP endpoint), and time until all
are `running` on it; then release v2 and time until all are `running` on v2, while a client
sends GETs round-robin to every deployment's stable URL (a new connection each) and counts
the answers that are not 200 `v1` or `v2`. deployd's resident memory (`VmRSS`) is read idle
(before the first deployment) and with N deployments running.
"""

import argparse
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request

from harness import daemons, memory_kib, start_serve, stop

SETTLE_TIMEOUT_S = 600


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(program):
    """A gzip tar of the program at app/<name> and the libraries it loads."""
    name = os.path.basename(program)
    files = {f"app/{name}": program}
    ldd = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
    for word in ldd.split():
        if word.startswith("/"):
            files[word.lstrip("/")] = word
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        dirs = set()
        for inside, host in sorted(files.items()):
            parts = inside.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            with open(host, "rb") as f:
                data = f.read()
            info = tarfile.TarInfo(inside)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return tar_bytes, gzip.compress(tar_bytes, compresslevel=1)


def write_layout(directory, program, version, tar_bytes, blob):
    """An OCI image layout of one image whose command names `version`."""
    blobs = os.path.join(directory, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data):
        digest = sha256(data)
        with open(os.path.join(blobs, digest.split(":")[1]), "wb") as f:
            f.write(data)
        return digest

    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": [f"/app/{os.path.basename(program)}", "--version", version],
                   "WorkingDir": "/app"},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar_bytes)]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": put(blob), "size": len(blob)}],
    }).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": put(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": version}}]}
    with open(os.path.join(directory, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(directory, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')


def push_images(port, token, layouts):
    """Pushes the v1 and v2 layouts with skopeo as the admin; their references by version."""
    repo = f"127.0.0.1:{port}/artifacts/default/web"
    refs = {}
    for version in ("v1", "v2"):
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                        "--dest-creds", f"token:{token}",
                        f"oci:{layouts[version]}:{version}", f"docker://{repo}:{version}"],
                       check=True)
        refs[version] = f"{repo}:{version}"
    return refs


def api(port, token, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    connection.request(method, path, body=data, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    if response.status >= 300:
        sys.exit(f"{method} {path}: {response.status} {payload[:300]!r}")
    return json.loads(payload) if payload else None


def stack(image):
    return {"id": "bench", "permissions": {"profiles": {"execution": {}}}, "resources": {"web": {
        "config": {"type": "container", "id": "web", "permissions": "execution",
                   "code": {"type": "image", "image": image}, "links": [],
                   "ports": [{"port": 8080}],
                   "publicEndpoints": [{"name": "default", "port": 8080, "protocol": "http"}],
                   "cpu": {"min": "0.1", "desired": "0.25"},
                   "memory": {"min": "32Mi", "desired": "64Mi"}},
        "lifecycle": "live", "dependencies": []}}}


def wait_all(port, token, ids, release):
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        done = 0
        for i in ids:
            d = api(port, token, "GET", f"/v1/deployments/{i}")
            if d["status"] == "running" and d.get("currentReleaseId") == release:
                done += 1
            elif d["status"].endswith("failed"):
                sys.exit(f"{i} is {d['status']}: {json.dumps(d.get('error'))[:500]}")
        if done == len(ids):
            return
        time.sleep(0.2)
    sys.exit(f"not every deployment reached {release} within {SETTLE_TIMEOUT_S} s")


def hammer(urls, stop_event, counts):
    while not stop_event.is_set():
        for url in urls:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    ok = response.status == 200 and response.read() in (b"v1", b"v2")
            except OSError:
                ok = False
            counts["total"] += 1
            counts["failed"] += 0 if ok else 1


def run(binary, layout_dir, count):
    data = tempfile.mkdtemp(prefix="bench-deployments-", dir="/var/tmp")
    config = os.path.join(data, "alien-manager.toml")
    with open(config, "w") as f:
        f.write("[server]\ndeployment-interval-secs = 1\nheartbeat-interval-secs = 60\n")
    proc, port, token = start_serve(binary, os.path.join(data, "data"), config)
    try:
        refs = push_images(port, token, layout_dir)
        time.sleep(2)
        deployd = daemons(proc.pid)["deployd"]
        idle_kib = memory_kib(deployd, "VmRSS")
        first = api(port, token, "POST", "/v1/releases",
                    {"projectId": "default", "stack": {"local": stack(refs["v1"])}})["id"]
        group = api(port, token, "POST", "/v1/deployment-groups",
                    {"name": "bench", "maxDeployments": count + 1})["id"]
        began = time.monotonic()
        ids = [api(port, token, "POST", "/v1/deployments",
                   {"name": f"d{i}", "platform": "local", "deploymentGroupId": group})
               ["deployment"]["id"] for i in range(count)]
        wait_all(port, token, ids, first)
        rollout_s = time.monotonic() - began
        urls = []
        for i in ids:
            d = api(port, token, "GET", f"/v1/deployments/{i}")
            urls.append(d["stackState"]["resources"]["web"]["outputs"]["publicEndpoints"]
                        ["default"]["url"])
        busy_kib = memory_kib(deployd, "VmRSS")
        counts = {"total": 0, "failed": 0}
        stop_event = threading.Event()
        client = threading.Thread(target=hammer, args=(urls, stop_event, counts))
        client.start()
        began = time.monotonic()
        second = api(port, token, "POST", "/v1/releases",
                     {"projectId": "default", "stack": {"local": stack(refs["v2"])}})["id"]
        wait_all(port, token, ids, second)
        update_s = time.monotonic() - began
        stop_event.set()
        client.join()
        for i in ids:
            api(port, token, "POST", f"/v1/deployments/{i}/delete", {"action": "cleanup"})
        return rollout_s, update_s, counts, idle_kib, busy_kib
    finally:
        stop(proc)
        shutil.rmtree(data, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/release/alien")
    parser.add_argument("--workload", default="target/release/alien-test-web")
    parser.add_argument("--counts", default="1,10,50")
    args = parser.parse_args()
    if not (os.path.exists(args.binary) and os.path.exists(args.workload)):
        subprocess.run(["cargo", "build", "--release", "-p", "cli", "-p", "test-workloads"],
                       check=True)
    scratch = tempfile.mkdtemp(prefix="bench-images-")
    try:
        tar_bytes, blob = layer(os.path.abspath(args.workload))
        layouts = {}
        for version in ("v1", "v2"):
            layouts[version] = os.path.join(scratch, version)
            write_layout(layouts[version], args.workload, version, tar_bytes, blob)
        print("| deployments | release → all running (new) | release → all running (update) "
              "| failed requests during the update | deployd RSS idle | deployd RSS with all |")
        print("|---|---|---|---|---|---|")
        for count in (int(c) for c in args.counts.split(",")):
            rollout, update, counts, idle, busy = run(args.binary, layouts, count)
            print(f"| {count} | {rollout:.1f} s | {update:.1f} s | "
                  f"{counts['failed']} of {counts['total']} | {idle / 1024:.1f} MiB | "
                  f"{busy / 1024:.1f} MiB |", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
