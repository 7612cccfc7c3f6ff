"""What every benchmark needs of a running alien-manager: a free loopback port, `alien serve`
started on a fresh data directory with its admin key, the daemons' pids, their memory, and
an orderly stop. Imported by the scripts beside it."""

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time

START_TIMEOUT_S = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port):
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False


def release_binary(binary):
    """`binary`, or else the release build of `alien`, built now."""
    if binary is not None:
        return binary
    subprocess.run(["cargo", "build", "--release", "-p", "cli"], check=True)
    return "target/release/alien"


def start_serve(binary, data, config=None):
    """Starts `alien serve` on 127.0.0.1 and a free port, in its own session, and waits until
    it is healthy. Returns (process, port, admin token)."""
    port = free_port()
    argv = [binary, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data]
    if config:
        argv += ["-c", config]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    token = None
    for line in proc.stdout:
        if line.startswith("export ALIEN_API_KEY="):
            token = line.strip().split("=", 1)[1]
            break
    if token is None:
        stop(proc)
        sys.exit("alien serve printed no admin token")
    # Keep draining stdout so that the server never blocks on a full pipe.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not healthy(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            sys.exit(f"alien serve was not healthy within {START_TIMEOUT_S} s")
        time.sleep(0.05)
    return proc, port, token


def stop(proc):
    """SIGTERM to the process group, then SIGKILL if it is still there after 15 s."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def daemons(supervisor):
    """The supervisor's daemons, {name: pid}."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if ppid == supervisor and len(argv) > 2 and argv[1] == b"daemon":
            found[argv[2].decode()] = int(entry)
    return found


def memory_kib(pid, field):
    """A /proc/<pid>/status field in KiB (VmRSS, VmHWM), 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def cpu_seconds(pid):
    """User plus system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
