#!/usr/bin/env python3
"""Image pull and unpack time: the `images` crate (the local platform's image cache) against
`alien serve`'s `/v2`, beside skopeo downloading the same image and GNU tar unpacking it.

Usage: bench/images.py [--binary PATH] [--example PATH] [--runs N] [--big-mib N] [--small-count N]

Starts `alien serve` on a fresh data directory under /var/tmp and a free loopback port,
builds one image of three layers (`--small-count` files of 4 KiB, gzip; one file of
`--big-mib` MiB of random bytes, gzip; the same small files again as text, zstd), pushes it
with skopeo and the admin key, then:

- ours: `images/examples/pull.rs` (release build) pulls it into a new store, `--runs` times
  (cold: download, verify, unpack, syncfs, rename), then once more from the cache (warm);
- reference: `skopeo copy docker://... dir:` (download and verify), then `tar -x` of each
  layer in order into one directory (no whiteouts in this image, so that is the same root),
  then `sync`.

Both read through the manager's public port with the admin key as Basic credentials.
"""

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

from harness import start_serve, stop

REPO = "artifacts/default/bench"


def tar_bytes(files):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def gzip_bytes(data):
    return subprocess.run(["gzip", "-1", "-c"], input=data, capture_output=True, check=True).stdout


def zstd_bytes(data):
    return subprocess.run(["zstd", "-3", "-c", "-q"], input=data, capture_output=True, check=True).stdout


def sha256(data):
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_layout(work, big_mib, small_count):
    rng = random.Random(7)
    small = [(f"small/{i // 100}/f{i}", rng.randbytes(4096)) for i in range(small_count)]
    text = [(f"text/{i // 100}/f{i}", (f"line {i}\n" * 400).encode()) for i in range(small_count)]
    big = [("big/blob", b"".join(rng.randbytes(1024 * 1024) for _ in range(big_mib)))]
    tars = [tar_bytes(small), tar_bytes(big), tar_bytes(text)]
    layers = [
        ("application/vnd.oci.image.layer.v1.tar+gzip", gzip_bytes(tars[0])),
        ("application/vnd.oci.image.layer.v1.tar+gzip", gzip_bytes(tars[1])),
        ("application/vnd.oci.image.layer.v1.tar+zstd", zstd_bytes(tars[2])),
    ]
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/big/blob"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in tars]},
    }).encode()
    descriptor = lambda media, data: {"mediaType": media, "digest": sha256(data), "size": len(data)}
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor(m, d) for m, d in layers],
    }).encode()
    layout = os.path.join(work, "layout")
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs)
    for data in [config, manifest] + [d for _, d in layers]:
        with open(os.path.join(blobs, sha256(data)[7:]), "wb") as f:
            f.write(data)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "manifests": [dict(
        descriptor("application/vnd.oci.image.manifest.v1+json", manifest),
        annotations={"org.opencontainers.image.ref.name": "v1"},
    )]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    total = sum(len(d) for _, d in layers)
    return layout, total


def skopeo(*args):
    subprocess.run(["skopeo", "--insecure-policy", *args], check=True, capture_output=True)


def reference_pull(host, creds, work):
    out = os.path.join(work, "ref-dir")
    root = os.path.join(work, "ref-root")
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    started = time.monotonic()
    skopeo("copy", "--src-tls-verify=false", "--src-creds", creds,
           f"docker://{host}/{REPO}:v1", f"dir:{out}")
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    for layer in manifest["layers"]:
        path = os.path.join(out, layer["digest"][7:])
        flag = "--zstd" if layer["mediaType"].endswith("zstd") else "-z"
        subprocess.run(["tar", flag, "-xf", path, "-C", root], check=True)
    subprocess.run(["sync"], check=True)
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/alien")
    parser.add_argument("--example", default="target/release/examples/pull")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--small-count", type=int, default=2000)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-images-", dir="/var/tmp")
    proc = None
    try:
        proc, port, token = start_serve(args.binary, os.path.join(work, "data"))
        host = f"127.0.0.1:{port}"
        creds = f"token:{token}"
        layout, total = write_layout(work, args.big_mib, args.small_count)
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", creds,
               f"oci:{layout}:v1", f"docker://{host}/{REPO}:v1")
        print(f"image: 3 layers, {total / 2**20:.1f} MiB compressed")
        subprocess.run(["sync"], check=True)
        ours = subprocess.run(
            [args.example, "--reference", f"{host}/{REPO}:v1", "--user", "token",
             "--password", token, "--runs", str(args.runs), "--dir", work],
            check=True, capture_output=True, text=True,
        ).stdout
        for line in ours.splitlines():
            print("ours:", line)
        for run in range(args.runs):
            subprocess.run(["sync"], check=True)
            print(f"reference: run {run}: {reference_pull(host, creds, work):.3f} s")
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
