#!/usr/bin/env python3
"""`alien release` pushing an image beside `skopeo copy` of the same image to the same manager.

Usage: bench/release_push.py [--binary PATH] [--large-mib N] [--small-count N] [--small-kib N]

Starts `alien serve` (release build; built unless --binary names one) on a fresh data directory
under /var/tmp (on disk) and a free loopback port. Two images are written as OCI image
layouts: one layer of `--large-mib` MiB (1 GiB), and `--small-count` layers (200) of
`--small-kib` KiB (256) each; every layer is a plain tar of one file of random bytes, which no
compression would shrink. Each tool gets its own copy of each image, made of different bytes,
so that neither finds blobs the other pushed. Then, for each image:

- `alien release --stack FILE --json`: asks where to push, pushes the image (HEAD per blob,
  4 blobs at once, 64 MiB chunks for larger blobs), creates the release;
- `skopeo copy --preserve-digests --dest-creds token:<key> oci:DIR:TAG docker://HOST/...`
  (`--preserve-digests` keeps skopeo from compressing the layers on the way, which would
  change what is pushed);
- each again, with every blob already there.

Both reach the manager's public port with the admin key, so authentication, the `/v2` proxy
and registryd's fsync of every blob are in every figure. The disk's writeback is finished
(`sync`) before each push. Printed: wall time and MiB/s (image bytes / wall time).
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

from harness import release_binary, start_serve, stop

MIB = 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
WRITE_CHUNK = 8 * MIB


def tar_header(name, size):
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 1_700_000_000
    return info.tobuf(format=tarfile.GNU_FORMAT)


def write_random_layer(path, size):
    """A tar of one file of `size` random bytes, written and hashed as it goes; its digest
    and size."""
    digest = hashlib.sha256()
    written = 0
    with open(path, "wb") as out:

        def put(data):
            nonlocal written
            out.write(data)
            digest.update(data)
            written += len(data)

        put(tar_header("data.bin", size))
        left = size
        while left:
            n = min(left, WRITE_CHUNK)
            put(os.urandom(n))
            left -= n
        put(b"\0" * ((512 - size % 512) % 512))
        put(b"\0" * 1024)
    return "sha256:" + digest.hexdigest(), written


def put_blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


def write_layout(directory, layer_sizes, tag):
    """An OCI image layout at `directory` of one image tagged `tag`; its total bytes."""
    blobs = os.path.join(directory, "blobs", "sha256")
    os.makedirs(blobs)
    layers = []
    for size in layer_sizes:
        part = os.path.join(blobs, "layer.partial")
        digest, length = write_random_layer(part, size)
        os.rename(part, os.path.join(blobs, digest.split(":", 1)[1]))
        layers.append({"mediaType": LAYER_TAR, "digest": digest, "size": length})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": put_blob(blobs, config),
                "size": len(config),
            },
            "layers": layers,
        }
    ).encode()
    descriptor = {
        "mediaType": OCI_MANIFEST,
        "digest": put_blob(blobs, manifest),
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    with open(os.path.join(directory, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [descriptor]}, f)
    with open(os.path.join(directory, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    return sum(l["size"] for l in layers) + len(config) + len(manifest)


def stack_file(work, name, layout):
    """A stack of one container, `name`, whose image is the layout."""
    stack = {
        "id": "bench",
        "permissions": {"profiles": {"execution": {}}},
        "resources": {
            name: {
                "config": {
                    "type": "container",
                    "id": name,
                    "permissions": "execution",
                    "code": {"type": "image", "image": f"oci:{layout}:v1"},
                    "links": [],
                    "ports": [{"port": 8080}],
                    "cpu": {"min": "0.1", "desired": "0.5"},
                    "memory": {"min": "64Mi", "desired": "128Mi"},
                },
                "lifecycle": "live",
                "dependencies": [],
            }
        },
    }
    path = os.path.join(work, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"local": stack}, f)
    return path


def timed(argv, env=None):
    subprocess.run(["sync"], check=True)
    started = time.monotonic()
    run = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if run.returncode != 0:
        sys.exit(f"{argv[0]} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    return seconds


def skopeo_env(work):
    """skopeo's own home and temporary directory: no credentials or policy of the user's."""
    home = os.path.join(work, "skopeo-home")
    os.makedirs(home, exist_ok=True)
    env = dict(os.environ, HOME=home, TMPDIR=home)
    env.pop("REGISTRY_AUTH_FILE", None)
    env.pop("DOCKER_CONFIG", None)
    return env


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary")
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--small-count", type=int, default=200)
    parser.add_argument("--small-kib", type=int, default=256)
    args = parser.parse_args()
    if not shutil.which("skopeo"):
        sys.exit("skopeo is not installed: apt-get install -y skopeo")
    binary = os.path.abspath(release_binary(args.binary))
    work = tempfile.mkdtemp(prefix="release-push-", dir="/var/tmp")
    serve = None
    try:
        images = {
            "large": [args.large_mib * MIB],
            "small": [args.small_kib * 1024] * args.small_count,
        }
        layouts = {}
        for image, sizes in images.items():
            for tool in ("alien", "skopeo"):
                layout = os.path.join(work, f"{image}-{tool}")
                layouts[(image, tool)] = (layout, write_layout(layout, sizes, "v1"))
        serve, port, token = start_serve(binary, os.path.join(work, "data"))
        host = f"127.0.0.1:{port}"
        alien_env = dict(os.environ, ALIEN_MANAGER_URL=f"http://{host}", ALIEN_API_KEY=token)
        rows = []
        for image, sizes in images.items():
            description = (
                f"1 layer of {sizes[0] // MIB} MiB"
                if len(sizes) == 1
                else f"{len(sizes)} layers of {sizes[0] // 1024} KiB"
            )
            layout, size = layouts[(image, "alien")]
            stack = stack_file(work, f"{image}-alien", layout)
            release = [binary, "release", "--stack", stack, "--json"]
            first = timed(release, alien_env)
            again = timed(release, alien_env)
            rows.append((description, "alien release", size, first, again))

            layout, size = layouts[(image, "skopeo")]
            copy = [
                "skopeo", "--insecure-policy", "copy", "--preserve-digests",
                "--dest-creds", f"token:{token}", "--dest-tls-verify=false",
                f"oci:{layout}:v1", f"docker://{host}/artifacts/default/{image}-skopeo:v1",
            ]
            env = skopeo_env(work)
            first = timed(copy, env)
            again = timed(copy, env)
            rows.append((description, "skopeo copy", size, first, again))

        print(f"{'image':<28} {'tool':<14} {'MiB':>7} {'push s':>8} {'MiB/s':>7} {'again s':>8}")
        for description, tool, size, first, again in rows:
            mib = size / MIB
            print(
                f"{description:<28} {tool:<14} {mib:>7.1f} {first:>8.2f} "
                f"{mib / first:>7.0f} {again:>8.2f}"
            )
    finally:
        stop(serve)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
