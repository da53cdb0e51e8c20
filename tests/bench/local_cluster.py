"""A fresh local 3-node cluster for the by-hand measurement scripts beside this file
(load_stall.py, cpu_split.py, member_down.py): kvnode processes on free loopback ports
with their data dirs in a temp dir, fsync on.

    with LocalCluster("build/bin", "kvload-") as c:
        c.start_all()
        c.wait_healthy()
        ... c.endpoints, c.procs[i], c.status() ...

Leaving the block stops every node (SIGTERM, SIGKILL after 10 s) and removes the dir."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def status_mb(pid, field="VmRSS"):
    """A /proc/PID/status size (VmRSS, VmHWM) in MB of 10^6 bytes (its kB are KiB); 0 if
    the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(re.search(field + r":\s+(\d+) kB", f.read()).group(1)) * 1024 / 1e6
    except (OSError, AttributeError):
        return 0.0


class LocalCluster:
    def __init__(self, bindir, prefix, node_args=()):
        self.bin = bindir
        self.node_args = list(node_args)
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.ports = free_ports(6)
        self.cluster = ",".join(f"{i}=127.0.0.1:{self.ports[2 + i]}" for i in (1, 2, 3))
        self.endpoints = self.endpoints_of((1, 2, 3))
        self.procs = {}

    def endpoints_of(self, ids):
        return ",".join(f"127.0.0.1:{self.ports[i - 1]}" for i in ids)

    def start(self, i):
        """Starts node i (again, on its data dir, if it ran before)."""
        self.procs[i] = subprocess.Popen(
            [f"{self.bin}/kvnode", "--id", str(i), "--data-dir", f"{self.work}/n{i}",
             "--client-addr", f"127.0.0.1:{self.ports[i - 1]}",
             "--raft-addr", f"127.0.0.1:{self.ports[2 + i]}", "--cluster", self.cluster] +
            self.node_args,
            stdout=open(f"{self.work}/node{i}.log", "a"), stderr=subprocess.STDOUT,
            start_new_session=True)

    def start_all(self):
        for i in (1, 2, 3):
            self.start(i)

    def stop(self, i):
        os.killpg(self.procs[i].pid, signal.SIGTERM)
        self.procs[i].wait()

    def wait_healthy(self, timeout_s=30):
        deadline = time.monotonic() + timeout_s
        while subprocess.run([f"{self.bin}/kvctl", "--endpoints", self.endpoints, "--timeout",
                              "1000", "health"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"no healthy cluster within {timeout_s} s")
            time.sleep(0.1)

    def status(self):
        """kvctl status of every reachable node: {id: status}; {} if it cannot be read."""
        out = subprocess.run([f"{self.bin}/kvctl", "--endpoints", self.endpoints, "--timeout",
                              "500", "--json", "status"], capture_output=True, text=True).stdout
        try:
            return {s["id"]: s for s in json.loads(out) if s.get("reachable", True)}
        except (ValueError, KeyError, TypeError):
            return {}

    def kvbench(self, *args, endpoints=None, check=True):
        """kvbench with 8 B keys and 256 B values; `args` name the rest."""
        return subprocess.run([f"{self.bin}/kvbench", "--endpoints", endpoints or self.endpoints,
                               "--key-size", "8", "--val-size", "256"] + list(args),
                              capture_output=True, text=True, check=check)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(self.work, ignore_errors=True)
        return False
