#!/usr/bin/env python3
"""Multi-process cluster tests: real kvnode processes on loopback, driven with kvctl and
loadgen. One scenario per invocation (meson registers each as its own test):

    cluster_test.py --kvnode PATH --kvctl PATH --loadgen PATH SCENARIO

Every node runs in a fresh temp dir on ports the kernel reports free at run time; every
process started here is killed when the scenario ends, passed or failed. Node logs are
printed when a scenario fails (and kept with --keep)."""
import argparse
import collections
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import tls_certs

ARGS = None
FAILOVER_LIMIT_S = 3.0


class TestFailure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise TestFailure(message)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_ports(n):
    """n distinct ports that were free a moment ago (bound to port 0, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(what, predicate, timeout_s, interval_s=0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


class Cluster:
    """A cluster of kvnode processes in one temp dir."""

    def __init__(self, root, size=3, node_flags=()):
        self.root = root
        self.size = size
        self.node_flags = list(node_flags)
        self.per_node_flags = {}  # node id -> flags used instead of node_flags
        self.client_flags = []    # given to every kvctl (e.g. --cacert)
        self.procs = {}      # node id -> Popen
        self.logs = {}       # node id -> log path
        self.others = []     # extra processes (loadgen, strangers) to clean up
        self.pick_ports()

    def pick_ports(self):
        ports = free_ports(2 * self.size)
        self.client_ports = {i + 1: ports[i] for i in range(self.size)}
        self.raft_ports = {i + 1: ports[self.size + i] for i in range(self.size)}

    def cluster_flag(self):
        """The initial configuration: nodes 1..size (nodes added later join instead)."""
        return ",".join(f"{i}=127.0.0.1:{self.raft_ports[i]}" for i in sorted(self.raft_ports)
                        if i <= self.size)

    def raft_addr(self, i):
        return f"127.0.0.1:{self.raft_ports[i]}"

    def add_ports(self, i):
        """Client and raft ports for node i, a node added after the start."""
        used = set(self.client_ports.values()) | set(self.raft_ports.values())
        ports = [p for p in free_ports(8) if p not in used][:2]
        self.client_ports[i], self.raft_ports[i] = ports

    def start_joiner(self, i, join_endpoints, extra=()):
        """Starts node i with --join (no --cluster): it asks to be added as a learner."""
        check(i not in self.procs or self.procs[i].poll() is not None, f"node {i} is running")
        self.logs[i] = os.path.join(self.root, f"node{i}.log")
        cmd = [ARGS.kvnode, "--id", str(i), "--data-dir", self.data_dir(i),
               "--client-addr", self.endpoint(i), "--raft-addr", self.raft_addr(i),
               "--join", join_endpoints] + self.per_node_flags.get(i, self.node_flags) + \
            list(extra)
        with open(self.logs[i], "a") as out:
            out.write(f"---- start (join) {time.strftime('%H:%M:%S')}\n")
            out.flush()
            self.procs[i] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                             start_new_session=True)

    def members(self, endpoints=None):
        """kvctl member list --json: {id: member} (raises if it fails)."""
        out = self.kvctl_ok("--json", "member", "list", endpoints=endpoints)
        return {m["id"]: m for m in json.loads(out)["members"]}

    def endpoint(self, i):
        return f"127.0.0.1:{self.client_ports[i]}"

    def endpoints(self, first=None, without=()):
        ids = [i for i in sorted(self.client_ports) if i not in without]
        if first is not None:
            ids.remove(first)
            ids.insert(0, first)
        return ",".join(self.endpoint(i) for i in ids)

    def data_dir(self, i):
        return os.path.join(self.root, f"node{i}")

    def node_command(self, i, extra=()):
        return [ARGS.kvnode, "--id", str(i), "--data-dir", self.data_dir(i),
                "--client-addr", self.endpoint(i),
                "--raft-addr", f"127.0.0.1:{self.raft_ports[i]}",
                "--cluster", self.cluster_flag()] + \
            self.per_node_flags.get(i, self.node_flags) + list(extra)

    def start_node(self, i, extra=()):
        check(i not in self.procs or self.procs[i].poll() is not None, f"node {i} is running")
        self.logs[i] = os.path.join(self.root, f"node{i}.log")
        with open(self.logs[i], "a") as out:
            out.write(f"---- start {time.strftime('%H:%M:%S')}\n")
            out.flush()
            self.procs[i] = subprocess.Popen(self.node_command(i, extra), stdout=out,
                                             stderr=subprocess.STDOUT,
                                             start_new_session=True)

    def start(self, attempts=3):
        """Starts every node; if a port was taken meanwhile, picks new ports and retries."""
        for attempt in range(attempts):
            for i in range(1, self.size + 1):
                self.start_node(i)
            time.sleep(0.3)
            dead = [i for i, p in self.procs.items() if p.poll() is not None]
            if not dead:
                return
            in_use = any("in use" in self.read_log(i) for i in dead)
            self.kill_all()
            if not in_use or attempt + 1 == attempts:
                raise TestFailure(f"nodes {dead} exited at start:\n" +
                                  "\n".join(self.read_log(i) for i in dead))
            log(f"ports in use, retrying with new ones")
            for i in range(1, self.size + 1):
                shutil.rmtree(self.data_dir(i), ignore_errors=True)
            self.pick_ports()

    def read_log(self, i):
        try:
            with open(self.logs[i], errors="replace") as f:
                return f.read()
        except (OSError, KeyError):
            return ""

    def kill9(self, i):
        p = self.procs[i]
        os.kill(p.pid, signal.SIGKILL)
        p.wait()

    def terminate(self, i, timeout_s=10):
        p = self.procs[i]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def kill_all(self):
        for p in list(self.procs.values()) + self.others:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def alive(self, i):
        return self.procs[i].poll() is None

    # ---- kvctl ----

    def kvctl(self, *args, endpoints=None, timeout_ms=5000, stdin=None):
        cmd = [ARGS.kvctl, "--endpoints", endpoints or self.endpoints(),
               "--timeout", str(timeout_ms)] + self.client_flags + list(args)
        r = subprocess.run(cmd, input=stdin, capture_output=True,
                           timeout=timeout_ms / 1000 + 30)
        return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

    def kvctl_ok(self, *args, **kw):
        rc, out, err = self.kvctl(*args, **kw)
        check(rc == 0, f"kvctl {' '.join(args)} exited {rc}: {err.strip()}")
        return out

    def status(self, endpoints=None):
        rc, out, err = self.kvctl("--json", "status", endpoints=endpoints, timeout_ms=1000)
        try:
            return json.loads(out)
        except ValueError:
            return []

    def leader(self):
        """The id of the node that reports itself leader with the highest term, or None."""
        return self.leader_among(None)

    def leader_among(self, endpoints):
        best = None
        for s in self.status(endpoints=endpoints):
            if s.get("role") == "leader" and (best is None or s["term"] > best["term"]):
                best = s
        return best["id"] if best else None

    def wait_healthy(self, timeout_s=15, endpoints=None):
        def healthy():
            rc, _, _ = self.kvctl("health", endpoints=endpoints, timeout_ms=1000)
            return rc == 0
        wait_until("a healthy cluster (a leader, every endpoint answering)", healthy, timeout_s)
        return self.leader()

    def stale_get(self, i, key):
        rc, out, _ = self.kvctl("--stale", "get", key, endpoints=self.endpoint(i),
                                timeout_ms=1000)
        return out.rstrip("\n") if rc == 0 else None

    # ---- load ----

    def start_load(self, out_path, stop_file, clients=8, extra=()):
        cmd = [ARGS.loadgen, "write", "--endpoints", self.endpoints(), "--out", out_path,
               "--clients", str(clients), "--channels", "2", "--stop-file", stop_file,
               "--timeout", "15000"] + list(extra)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.others.append(p)
        return p

    def stop_load(self, p, stop_file, timeout_s=30):
        open(stop_file, "w").close()
        try:
            out, _ = p.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            raise TestFailure("loadgen did not stop within 30 s")
        text = out.decode(errors="replace").strip()
        log(text)
        check(p.returncode == 0, f"loadgen exited {p.returncode}: {text}")

    def verify(self, ack_path, timeout_s=120):
        r = subprocess.run([ARGS.loadgen, "verify", "--endpoints", self.endpoints(),
                            "--in", ack_path], capture_output=True, timeout=timeout_s)
        text = (r.stdout + r.stderr).decode(errors="replace").strip()
        log(text)
        check(r.returncode == 0, f"acknowledged writes lost:\n{text}")


def read_acks(path):
    acks, errs = [], []
    with open(path) as f:
        for line in f:
            parts = line.split(" ", 5)
            if len(parts) < 5:
                continue
            entry = (float(parts[1]) / 1000, float(parts[2]) / 1000, parts[3], parts[4].strip())
            (acks if parts[0] == "ack" else errs).append(entry)
    return acks, errs


def count_acks(path):
    try:
        return len(read_acks(path)[0])
    except OSError:
        return 0


# ---------------------------------------------------------------- scenarios

def put_and_get_through_every_node(c):
    """Starts c; key<i> = value<i> written through node i first, each read through each
    node first. Returns the leader."""
    c.start()
    leader = c.wait_healthy()
    log(f"leader is node {leader}")
    for i in range(1, c.size + 1):
        # This node first: a follower answers NotLeader and the client follows its hint.
        c.kvctl_ok("put", f"key{i}", f"value{i}", endpoints=c.endpoints(first=i))
    for i in range(1, c.size + 1):
        for j in range(1, c.size + 1):
            out = c.kvctl_ok("get", f"key{j}", endpoints=c.endpoints(first=i))
            check(out == f"value{j}\n", f"get key{j} via node {i} first: {out!r}")
    return leader


def scenario_replication(c):
    """Writes through every node (followers too) succeed; every node serves them."""
    leader = put_and_get_through_every_node(c)
    # Each node's own state (stale read from that node alone) converges.
    for i in range(1, c.size + 1):
        for j in range(1, c.size + 1):
            wait_until(f"node {i} to apply key{j}",
                       lambda: c.stale_get(i, f"key{j}") == f"value{j}", 5)
    # Linearizable read through a follower alone: it asks the leader for a read index
    # (never answers from possibly stale local state) and serves it.
    follower = next(i for i in range(1, c.size + 1) if i != leader)
    rc, out, err = c.kvctl("get", "key1", endpoints=c.endpoint(follower), timeout_ms=2000)
    check(rc == 0 and out == "value1\n",
          f"linearizable get via follower alone: rc {rc} {out!r} {err!r}")
    # Read-your-writes: each write is visible to the next read, through any node.
    for n in range(20):
        i = 1 + n % c.size
        c.kvctl_ok("put", "ryw", str(n), endpoints=c.endpoints(first=i))
        j = 1 + (n + 1) % c.size
        out = c.kvctl_ok("get", "ryw", endpoints=c.endpoints(first=j))
        check(out == f"{n}\n", f"read-your-writes: wrote {n} via node {i}, read {out!r}")
    # range, cas, delete through a follower
    out = c.kvctl_ok("range", "key", "key~", endpoints=c.endpoints(first=follower))
    check(out == "".join(f"key{j}\tvalue{j}\n" for j in range(1, c.size + 1)), f"range: {out!r}")
    c.kvctl_ok("cas", "key1", "value1", "new1", endpoints=c.endpoints(first=follower))
    rc, _, err = c.kvctl("cas", "key1", "value1", "again", endpoints=c.endpoints(first=follower))
    check(rc == 1 and "new1" in err, f"cas mismatch: rc {rc} {err!r}")
    c.kvctl_ok("del", "key1", endpoints=c.endpoints(first=follower))
    rc, _, _ = c.kvctl("get", "key1")
    check(rc == 1, f"get after delete: rc {rc}")
    statuses = c.status()
    check(len(statuses) == c.size and all(s["reachable"] for s in statuses),
          f"status: {statuses}")


def scenario_failover(c):
    """kill -9 the leader under load: a new leader takes writes within 3 s; no acked write
    is lost."""
    c.start()
    leader = c.wait_healthy()
    acks = os.path.join(c.root, "acks.txt")
    stop = os.path.join(c.root, "stop")
    load = c.start_load(acks, stop)
    wait_until("the load to get going", lambda: count_acks(acks) >= 200, 20)
    leader = c.leader()
    log(f"killing leader node {leader} (pid {c.procs[leader].pid}) under load")
    killed_at = time.time()
    c.kill9(leader)
    # The first write sent after the kill and acknowledged: only a new leader can do that.
    def first_ack_after():
        later = [a for a in read_acks(acks)[0] if a[0] >= killed_at]
        return min(a[1] for a in later) if later else None
    first = wait_until("a write acknowledged after the kill", first_ack_after, 20)
    failover = first - killed_at
    new_leader = c.leader()
    log(f"FAILOVER: {failover * 1000:.0f} ms from kill -9 of node {leader} to the first "
        f"acknowledged write (new leader: node {new_leader})")
    time.sleep(0.5)
    c.stop_load(load, stop)
    check(new_leader is not None and new_leader != leader, f"new leader: {new_leader}")
    check(failover <= FAILOVER_LIMIT_S,
          f"failover took {failover:.2f} s, over the {FAILOVER_LIMIT_S} s limit")
    _, errs = read_acks(acks)
    log(f"{len(errs)} writes ended without a definite answer")
    c.verify(acks)


def restart_catchup(c, expect_snapshot):
    c.start()
    leader = c.wait_healthy()
    victim = leader
    c.kvctl_ok("put", "before", "kill")
    log(f"killing node {victim}")
    c.kill9(victim)
    acks = os.path.join(c.root, "acks.txt")
    stop = os.path.join(c.root, "stop")
    # The leader keeps 1000 entries behind its latest snapshot (Raft config
    # compactionKeepEntries), so a snapshot is only needed once the node is further behind.
    writes = 1600 if expect_snapshot else 600
    load = c.start_load(acks, stop, extra=["--max-writes", str(writes)])
    wait_until(f"{writes} writes", lambda: load.poll() is not None, 90)
    c.stop_load(load, stop)
    survivors = [i for i in range(1, c.size + 1) if i != victim]
    st = {s["id"]: s for s in c.status() if s.get("reachable")}
    new_leader = max(survivors, key=lambda i: st.get(i, {}).get("commit", 0))
    target = st[new_leader]["commit"]
    if expect_snapshot:
        check(st[new_leader]["snapshotIndex"] > 0,
              f"node {new_leader} took no snapshot (status {st[new_leader]})")
    log(f"restarting node {victim}; cluster commit index {target}, leader snapshot at "
        f"{st[new_leader]['snapshotIndex']}")
    c.start_node(victim)
    def caught_up():
        for s in c.status(endpoints=c.endpoint(victim)):
            if s.get("reachable") and s["applied"] >= target:
                return s
        return None
    s = wait_until(f"node {victim} to apply index {target}", caught_up, 30)
    log(f"node {victim} caught up: applied {s['applied']}, snapshot {s['snapshotIndex']}")
    if expect_snapshot:
        check(s["snapshotIndex"] > 0, f"node {victim} caught up without a snapshot: {s}")
        since_restart = c.read_log(victim).split("---- start")[-1]
        check("installed a snapshot from the leader" in since_restart,
              f"node {victim} did not log installing the leader's snapshot")
    check(c.stale_get(victim, "before") == "kill", "old write missing on the restarted node")
    for (_, _, key, value) in read_acks(acks)[0][-50:]:
        got = c.stale_get(victim, key)
        check(got == value, f"restarted node {victim}: {key} = {got!r}, want {value!r}")
    c.wait_healthy()
    c.verify(acks)


def scenario_restart_catchup(c):
    """A killed node restarts and catches up from the leader's log."""
    restart_catchup(c, expect_snapshot=False)


def scenario_restart_snapshot(c):
    """A killed node restarts and catches up by snapshot: the log it needs was compacted."""
    c.node_flags += ["--snapshot-entries", "50"]
    restart_catchup(c, expect_snapshot=True)


def scenario_retry_once(c):
    """A retried request (same client id and request id) applies once."""
    c.start()
    c.wait_healthy()
    client = c.kvctl_ok("session").strip()
    check(client.isdigit() and int(client) > 0, f"session id {client!r}")
    ids = lambda n: ["--client-id", client, "--request-id", str(n)]
    c.kvctl_ok(*ids(5), "put", "k", "v1")
    c.kvctl_ok(*ids(6), "put", "k", "v2")
    rc, _, err = c.kvctl(*ids(5), "put", "k", "v1")
    check(rc == 2, f"a retry older than the session's last request: rc {rc} {err!r}")
    check(c.kvctl_ok("get", "k") == "v2\n", "the old retry was applied again")
    # Retrying the last request returns its saved answer without applying it again: the
    # cas succeeds twice, where applying it twice would report a mismatch.
    c.kvctl_ok(*ids(7), "cas", "k", "v2", "v3")
    rc, out, err = c.kvctl(*ids(7), "cas", "k", "v2", "v3")
    check(rc == 0, f"retried cas (same ids) answered rc {rc} {err!r}; it was applied twice")
    c.kvctl_ok(*ids(8), "put", "counter", "a")
    c.kvctl_ok(*ids(8), "put", "counter", "b")   # same ids: the saved reply, no new write
    check(c.kvctl_ok("get", "counter") == "a\n", "a retry with the same ids wrote again")
    rc, _, err = c.kvctl("--client-id", "999999999", "--request-id", "1", "put", "x", "y")
    check(rc == 2 and "session" in err, f"unknown session: rc {rc} {err!r}")


def scenario_whole_restart(c):
    """kill -9 every node under load, restart them: no acknowledged write is lost."""
    c.start()
    c.wait_healthy()
    acks = os.path.join(c.root, "acks.txt")
    stop = os.path.join(c.root, "stop")
    load = c.start_load(acks, stop, extra=["--timeout", "2000"])
    wait_until("the load to get going", lambda: count_acks(acks) >= 300, 20)
    for i in range(1, c.size + 1):
        os.kill(c.procs[i].pid, signal.SIGKILL)
    for i in range(1, c.size + 1):
        c.procs[i].wait()
    log(f"killed every node after {count_acks(acks)} acknowledged writes")
    c.stop_load(load, stop)
    for i in range(1, c.size + 1):
        c.start_node(i)
    leader = c.wait_healthy(timeout_s=20)
    log(f"restarted; leader node {leader}")
    c.verify(acks)
    c.kvctl_ok("put", "after", "restart")
    check(c.kvctl_ok("get", "after") == "restart\n", "write after restart")


def scenario_bad_input(c):
    """Bad requests get clear errors; garbage on the wire and strangers leave the cluster
    serving."""
    c.start()
    c.wait_healthy()
    big_key = "k" * 5000
    big_value = b"v" * (1024 * 1024 + 1)
    for local in ([], ["--no-local-check"]):
        where = "server" if local else "client"
        rc, _, err = c.kvctl(*local, "put", big_key, "v")
        check(rc == 2 and "key" in err and "large" in err,
              f"oversized key ({where} check): rc {rc} {err!r}")
        rc, _, err = c.kvctl(*local, "put", "k", "-", stdin=big_value)
        check(rc == 2 and "value" in err and "large" in err,
              f"oversized value ({where} check): rc {rc} {err!r}")
        rc, _, err = c.kvctl(*local, "put", "", "v")
        check(rc == 2 and "empty" in err, f"empty key ({where} check): rc {rc} {err!r}")
        rc, _, err = c.kvctl(*local, "get", "")
        check(rc == 2 and "empty" in err, f"get empty key ({where} check): rc {rc} {err!r}")
    rc, _, err = c.kvctl("frobnicate")
    check(rc == 2 and "unknown command" in err, f"unknown command: rc {rc} {err!r}")
    rc, _, err = c.kvctl("put", "k")
    check(rc == 2 and "usage" in err, f"missing argument: rc {rc} {err!r}")
    c.kvctl_ok("put", "k", "still-fine")

    # Garbage bytes at every client and raft port, some as a plausible Cap'n Proto frame
    # header announcing a huge message.
    garbage = [os.urandom(4096), b"\x00\x00\x00\x00\xff\xff\xff\x7f" + os.urandom(64),
               b"\xff" * 100000, b"GET / HTTP/1.1\r\n\r\n"]
    for i in range(1, c.size + 1):
        for port in (c.client_ports[i], c.raft_ports[i]):
            for blob in garbage:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    try:
                        s.sendall(blob)
                        s.shutdown(socket.SHUT_WR)
                        s.settimeout(2)
                        s.recv(1024)
                    except OSError:
                        pass  # the node may hang up on us: that is fine
    for i in range(1, c.size + 1):
        check(c.alive(i), f"node {i} died from garbage input:\n{c.read_log(i)[-2000:]}")
    c.wait_healthy(timeout_s=10)
    c.kvctl_ok("put", "after-garbage", "ok")
    check(c.kvctl_ok("get", "after-garbage") == "ok\n", "get after garbage")

    # A stranger from another cluster (its own --cluster list, hence another cluster id)
    # dials our raft ports.
    stranger_ports = free_ports(2)
    stranger_dir = os.path.join(c.root, "stranger")
    stranger_log = os.path.join(c.root, "stranger.log")
    with open(stranger_log, "w") as out:
        stranger = subprocess.Popen(
            [ARGS.kvnode, "--id", "1", "--data-dir", stranger_dir,
             "--client-addr", f"127.0.0.1:{stranger_ports[0]}",
             "--raft-addr", f"127.0.0.1:{stranger_ports[1]}",
             "--cluster", f"1=127.0.0.1:{stranger_ports[1]},2=127.0.0.1:{c.raft_ports[2]},"
                          f"3=127.0.0.1:{c.raft_ports[3]}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    c.others.append(stranger)
    term_before = max(s["term"] for s in c.status() if s.get("reachable"))
    time.sleep(2)
    refused = any("does not match this node's cluster" in c.read_log(i) for i in (2, 3))
    check(refused, "no node logged refusing the stranger's cluster id")
    c.kvctl_ok("put", "with-stranger", "ok")
    term_after = max(s["term"] for s in c.status() if s.get("reachable"))
    check(term_after == term_before,
          f"the stranger disturbed the cluster: term {term_before} -> {term_after}")
    stranger.kill()
    stranger.wait()

    # A node restarted on its data dir with another cluster id refuses to start.
    rc = c.terminate(3)
    log(f"node 3 stopped with exit code {rc}")
    c.start_node(3, extra=["--cluster-id", "12345"])
    try:
        c.procs[3].wait(15)
    except subprocess.TimeoutExpired:
        raise TestFailure("node 3 started on a data dir of another cluster")
    text = c.read_log(3).split("---- start")[-1]
    check(c.procs[3].returncode == 2 and "cluster" in text,
          f"wrong cluster id on an existing data dir: exit {c.procs[3].returncode}, log:\n{text}")
    log("refused as expected: " + text.strip().splitlines()[-1])
    c.kvctl_ok("put", "two-of-three", "ok")
    # And the right flags bring it back.
    c.start_node(3)
    c.wait_healthy()
    wait_until("node 3 to apply the write made without it",
               lambda: c.stale_get(3, "two-of-three") == "ok", 10)


def start_with_writes(c):
    """Starts the cluster and makes at least 300 acknowledged writes; returns the ack file."""
    c.start()
    c.wait_healthy()
    acks = os.path.join(c.root, "acks.txt")
    stop = os.path.join(c.root, "stop")
    load = c.start_load(acks, stop, extra=["--timeout", "2000"])
    wait_until("the load to get going", lambda: count_acks(acks) >= 300, 30)
    c.stop_load(load, stop)
    return acks


def newest_segment(data_dir):
    segs = sorted(f for f in os.listdir(data_dir) if f.startswith("wal-") and f.endswith(".log"))
    check(segs, f"no WAL segment in {data_dir}")
    return os.path.join(data_dir, segs[-1])


def scenario_wal_damage(c):
    """Garbage appended to a node's newest WAL file is cut off as a torn tail and the node
    serves every acknowledged write; a flipped byte in the middle of a segment is cut
    there, named in the log, and the node recovers the rest from the leader."""
    acks = start_with_writes(c)
    victim = next(i for i in range(1, c.size + 1) if i != c.leader())
    c.kill9(victim)
    seg = newest_segment(c.data_dir(victim))
    with open(seg, "ab") as f:
        f.write(os.urandom(3000))
    log(f"appended 3000 garbage bytes to {seg}")
    c.start_node(victim)
    c.wait_healthy()
    check(c.alive(victim), f"node {victim} did not survive a torn tail:\n{c.read_log(victim)[-2000:]}")
    # Every acknowledged write is readable, and the damaged node itself applies the last.
    acked = read_acks(acks)[0]
    last_key = acked[-1][2] if acked else None
    c.verify(acks)
    if last_key is not None:
        wait_until(f"node {victim} to apply the last acknowledged write",
                   lambda: c.stale_get(victim, last_key) is not None, 10)
    c.kill9(victim)
    size = os.path.getsize(seg)
    check(size > 4096, f"segment {seg} too small to damage in the middle ({size} bytes)")
    at = payload_byte_after(seg, size // 2)
    with open(seg, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x10]))
    log(f"flipped a bit at byte {at} of {seg} (a record payload in the middle)")
    # Damage in the middle: the node cuts the WAL there, says so, and recovers the rest
    # from the leader (issue 14); before, it refused to start.
    c.start_node(victim)
    c.wait_healthy()
    wait_for_log(c, victim, "recovered: the log matches the leader's")
    text = since_start(c, victim)
    check(os.path.basename(seg) in text and "storage damage" in text,
          f"the repair does not name {os.path.basename(seg)}:\n{text[-2000:]}")
    log("repaired: " + [l for l in text.splitlines() if "storage damage" in l][-1][:300])
    c.verify(acks)
    c.kvctl_ok("put", "after-damage", "ok")
    check(c.kvctl_ok("get", "after-damage") == "ok\n", "the cluster keeps serving")


# WAL format v2 (docs/STORAGE.md): a record is header | payload | header, the header 60
# bytes: magic, u8 type at 4, u32 payload length at 8.
WAL_HEADER = 60
WAL_ENTRIES = 2


def payload_byte_after(seg, offset):
    """A byte in the middle of the payload of the first record ending after `offset` (a
    flip in a header copy is harmless: the other copy tells the record)."""
    data = open(seg, "rb").read()
    pos = 0
    while pos + 2 * WAL_HEADER <= len(data):
        check(data[pos:pos + 4] == b"KVW2", f"{seg}: no record header at byte {pos}")
        length = int.from_bytes(data[pos + 8:pos + 12], "little")
        if pos + WAL_HEADER + length > offset and length > 0:
            return pos + WAL_HEADER + length // 2
        pos += 2 * WAL_HEADER + length
    raise TestFailure(f"{seg}: no record after byte {offset}")


def newest_entries_record(seg):
    """(payload offset, payload length) of the last Entries record of a segment."""
    data = open(seg, "rb").read()
    end = len(data)
    while end >= 2 * WAL_HEADER:
        trailer = data[end - WAL_HEADER:end]
        check(trailer[:4] == b"KVW2", f"{seg}: no record trailer before byte {end}")
        length = int.from_bytes(trailer[8:12], "little")
        start = end - 2 * WAL_HEADER - length
        if trailer[4] == WAL_ENTRIES:
            return start + WAL_HEADER, length
        end = start
    raise TestFailure(f"{seg}: no entries record")


def since_start(c, i):
    return c.read_log(i).split("---- start")[-1]


def wait_for_log(c, i, text, timeout_s=30):
    wait_until(f"node {i} to log '{text}'", lambda: text in since_start(c, i), timeout_s)


def damaged_follower_rejoins(c, damage, what):
    """Writes through the leader, damages a follower that acknowledged them (while it is
    down), then keeps it from catching up: it must restart recovering (no vote, shown by
    kvctl status), repair itself once a leader is back, and the cluster must keep every
    acknowledged write."""
    acks = start_with_writes(c)
    leader = c.leader()
    victim = next(i for i in range(1, c.size + 1) if i != leader)
    other = next(i for i in range(1, c.size + 1) if i not in (leader, victim))
    # The victim acknowledged the newest writes: it applies the last acknowledged one.
    acked = read_acks(acks)[0]
    last_key, last_value = acked[-1][2], acked[-1][3]
    wait_until(f"node {victim} to apply the last acknowledged write",
               lambda: c.stale_get(victim, last_key) == last_value, 10)
    for i in (victim, other, leader):
        c.kill9(i)
    damage(c.data_dir(victim))
    # Alone, the victim cannot catch up: it stays recovering and must not elect itself.
    c.start_node(victim)
    wait_for_log(c, victim, "recovering: storage damage")
    text = since_start(c, victim)
    check(what in text, f"node {victim}'s log does not say '{what}':\n{text[-3000:]}")
    log("node log: " + [l for l in text.splitlines() if "storage damage" in l][-1][:400])
    st = [s for s in c.status(endpoints=c.endpoint(victim)) if s.get("reachable")]
    check(st and st[0]["recovering"] is True and st[0]["recoverUntil"] > 0,
          f"kvctl status does not show node {victim} recovering: {st}")
    # The other follower alone with it: no leader may come of the damaged node's vote.
    c.start_node(other)
    time.sleep(3)
    st = {s["id"]: s for s in c.status(endpoints=c.endpoints()) if s.get("reachable")}
    check(all(s["role"] != "leader" for s in st.values()),
          f"a leader was elected with the recovering node's vote: {st}")
    c.start_node(leader)
    c.wait_healthy(timeout_s=30)
    wait_for_log(c, victim, "recovered: the log matches the leader's")
    st = [s for s in c.status(endpoints=c.endpoint(victim)) if s.get("reachable")]
    check(st and st[0]["recovering"] is False, f"node {victim} still recovering: {st}")
    check(c.stale_get(victim, last_key) == last_value,
          f"node {victim} lost the last acknowledged write {last_key}")
    c.verify(acks)


def scenario_newest_record_damage(c):
    """Issue 14: a flipped byte in the newest WAL record of a follower that acknowledged
    it is corruption, not a torn tail: the node says so, recovers from the leader, and
    the cluster keeps every acknowledged write."""
    def damage(data_dir):
        seg = newest_segment(data_dir)
        at, length = newest_entries_record(seg)
        with open(seg, "r+b") as f:
            f.seek(at + length // 2)
            b = f.read(1)
            f.seek(at + length // 2)
            f.write(bytes([b[0] ^ 0x04]))
        log(f"flipped a bit at byte {at + length // 2} of {seg} (newest entries record)")
    damaged_follower_rejoins(c, damage, "completely written record")


def scenario_snapshot_damage(c):
    """A flipped byte in a follower's snapshot file: the node drops snapshot and log
    (keeping term and vote), says so, and recovers from the leader."""
    c.node_flags += ["--snapshot-entries", "50"]
    def damage(data_dir):
        snaps = sorted(f for f in os.listdir(data_dir) if f.startswith("snap-") and f.endswith(".snap"))
        check(snaps, f"no snapshot file in {data_dir}")
        path = os.path.join(data_dir, snaps[-1])
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(size - 7)
            b = f.read(1)
            f.seek(size - 7)
            f.write(bytes([b[0] ^ 0x01]))
        log(f"flipped a bit at byte {size - 7} of {path}")
    damaged_follower_rejoins(c, damage, "Dropped the snapshot and the whole WAL")


def scenario_big_stdin_value(c):
    """kvctl put K - with a value far over the limit on stdin reports the value's real
    size (never the size of the prefix it kept), with or without the local check, and
    writes nothing; a value of exactly the limit goes through."""
    c.start()
    c.wait_healthy()
    limit = 1024 * 1024
    huge = 64 * limit
    for local in ([], ["--no-local-check"]):
        rc, out, err = c.kvctl(*local, "put", "huge", "-", stdin=b"x" * huge)
        sizes = {int(n) for n in re.findall(r"\d+", err)}
        check(rc == 2, f"64 MiB value{' ' + local[0] if local else ''}: rc {rc} {err!r}")
        check(str(huge) in err or "more than" in err,
              f"64 MiB value: the error names neither its size nor 'more than': {err!r}")
        wrong = sizes - {huge, limit}
        check(not wrong, f"64 MiB value: the error reports a wrong size {sorted(wrong)}: {err!r}")
        log(f"refused as expected: {err.strip()}")
    rc, _, _ = c.kvctl("get", "huge")
    check(rc == 1, f"a refused value was written: get rc {rc}")
    c.kvctl_ok("put", "exact", "-", stdin=b"y" * limit)
    out = c.kvctl_ok("get", "exact", timeout_ms=10000)
    check(out == "y" * limit + "\n", f"a value of exactly the limit: got {len(out)} bytes back")

def dir_contents(path):
    """{file name: bytes} of every regular file in a directory."""
    out = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            with open(full, "rb") as f:
                out[name] = f.read()
    return out


def describe_dir_change(before, after):
    changes = []
    for name in sorted(set(before) | set(after)):
        if name not in after:
            changes.append(f"{name} deleted")
        elif name not in before:
            changes.append(f"{name} created ({len(after[name])} bytes)")
        elif before[name] != after[name]:
            changes.append(f"{name} changed ({len(before[name])} -> {len(after[name])} bytes)")
    return "; ".join(changes)


def scenario_wiped_member(c):
    """A member whose data dir was wiped (an operator's rm -rf, a replaced disk) forgot its
    votes and the entries it acknowledged. Restarted with the same flags it must not take
    part as that member: its peers recorded its data dir's incarnation and refuse the new
    one, and it exits 2 within seconds, saying why. The cluster keeps serving, every
    acknowledged write reads back, and a restart on an intact data dir is accepted. The
    peers count the refusal in their metrics."""
    urls = with_metrics(c, "text")
    c.start()
    c.wait_healthy()
    for n in range(20):
        c.kvctl_ok("put", f"w{n}", str(n))
    leader = c.leader()
    victim = next(i for i in sorted(c.procs) if i != leader)
    # Intact data dir: a restart is accepted.
    check(c.terminate(victim) == 0, f"node {victim} did not stop cleanly")
    c.start_node(victim)
    c.wait_healthy()
    c.kvctl_ok("put", "w-after-restart", "x")
    # Wiped.
    check(c.terminate(victim) == 0, f"node {victim} did not stop cleanly")
    shutil.rmtree(c.data_dir(victim))
    c.start_node(victim)
    p = c.procs[victim]
    try:
        p.wait(15)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"node {victim} with a wiped data dir still runs after 15 s:\n"
                          f"{c.read_log(victim)[-2000:]}")
    text = c.read_log(victim).split("---- start")[-1]
    check(p.returncode == 2, f"the wiped node exited {p.returncode}:\n{text[-2000:]}")
    check("cannot rejoin the cluster" in text and "wiped or replaced" in text,
          f"the wiped node does not say why it stopped:\n{text[-2000:]}")
    others = c.endpoints(without=(victim,))
    refused = sum(metric(scrape(urls[i]), "kvraft_network_peer_hellos_refused_total",
                         reason="stale_incarnation") for i in urls if i != victim)
    check(refused >= 1, f"the peers counted {refused} stale-incarnation refusals")
    c.kvctl_ok("put", "w-after-wipe", "y", endpoints=others)
    for n in range(20):
        got = c.kvctl_ok("get", f"w{n}", endpoints=others).strip()
        check(got == str(n), f"w{n} reads {got!r} after the wipe")
    log(f"node {victim} with a wiped data dir exited 2: "
        f"{[l for l in text.splitlines() if 'cannot rejoin' in l][0][:160]}")


def scenario_datadir_lock(c):
    """A second kvnode on a live node's data dir (same flags, or other ports) exits 2 at
    once naming the holder's pid, and changes nothing: the dir is byte-identical when
    quiet; under write load with frequent snapshots, the live node keeps serving and
    later restarts from its data with every acknowledged write."""
    c.node_flags += ["--snapshot-entries", "50"]
    c.start()
    c.wait_healthy()
    for n in range(60):  # a snapshot, so there are snapshot files to lose
        c.kvctl_ok("put", f"pre{n % 7}", str(n))
    victim = 1
    pid = c.procs[victim].pid
    data = c.data_dir(victim)

    def intrude(other_ports):
        """Starts a second node {victim} on the live data dir; returns its output."""
        if other_ports:
            cp, rp = free_ports(2)
            cmd = [ARGS.kvnode, "--id", str(victim), "--data-dir", data,
                   "--client-addr", f"127.0.0.1:{cp}", "--raft-addr", f"127.0.0.1:{rp}",
                   "--cluster", c.cluster_flag()] + c.node_flags
        else:
            cmd = c.node_command(victim)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        c.others.append(p)
        started = time.monotonic()
        try:
            out, _ = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            raise TestFailure(f"a second node {victim} on a live data dir (other ports: "
                              f"{other_ports}) was still running after 5 s:\n"
                              f"{out.decode(errors='replace')[-2000:]}")
        text = out.decode(errors="replace")
        took = time.monotonic() - started
        check(p.returncode == 2, f"second node on a live data dir exited {p.returncode}:\n{text}")
        check(str(pid) in text and "in use" in text,
              f"the refusal does not say the data dir is in use by pid {pid}:\n{text}")
        check(took < 2, f"the second node took {took:.1f} s to give up")
        return text.strip()

    # Quiet: the dir must stay byte-identical.
    before = wait_until("node 1's data dir to settle", lambda: (
        lambda a: a if (time.sleep(0.3) or dir_contents(data) == a) else None)(dir_contents(data)), 10)
    for other_ports in (False, True):
        log("refused: " + intrude(other_ports).splitlines()[-1])
        after = dir_contents(data)
        check(after == before, f"a refused second node changed node {victim}'s data dir: "
                               f"{describe_dir_change(before, after)}")
    check(c.alive(victim), f"node {victim} died")
    lock_path = os.path.join(data, "LOCK")
    with open(lock_path) as f:
        check(f.read().strip() == str(pid), f"{lock_path} does not hold node {victim}'s pid {pid}")

    # Under write load (snapshots every 50 entries): intruders again and again.
    acks = os.path.join(c.root, "acks.txt")
    stop = os.path.join(c.root, "stop")
    load = c.start_load(acks, stop, extra=["--timeout", "5000"])
    wait_until("the load to get going", lambda: count_acks(acks) >= 200, 20)
    for k in range(10):
        intrude(other_ports=k % 2 == 1)
        check(c.alive(victim), f"node {victim} died:\n{c.read_log(victim)[-2000:]}")
    n0 = count_acks(acks)
    wait_until("writes to continue", lambda: count_acks(acks) >= n0 + 100, 20)
    c.stop_load(load, stop)
    wait_until(f"node {victim} to serve the last write", lambda: (
        lambda a: a and c.stale_get(victim, a[-1][2]) == a[-1][3])(read_acks(acks)[0]), 10)
    # Its files are its own: it restarts from them (no hole, no lost snapshot).
    c.kill9(victim)
    c.start_node(victim)
    c.wait_healthy()
    since = c.read_log(victim).split("---- start")[-1]
    check(c.alive(victim) and "cannot start" not in since,
          f"node {victim} does not restart from its data dir:\n{since[-2000:]}")
    c.verify(acks)
    for (_, _, key, value) in read_acks(acks)[0][-20:]:
        got = c.stale_get(victim, key)
        check(got == value, f"restarted node {victim}: {key} = {got!r}, want {value!r}")

def raise_fd_limit(want):
    """Raises this process's soft RLIMIT_NOFILE to `want` (capped by the hard limit);
    the kvnode processes started after inherit it. Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Squatters:
    """Keeps `idle` idle TCP connections and `slow` connections that send a garbage byte
    every 0.2 s open to each of `ports`, reopening within 0.1 s any the server closes
    (or that could not connect because the node was down), until stop()."""

    def __init__(self, ports, idle, slow):
        self.want = [(port, kind) for port in ports
                     for kind in ["idle"] * idle + ["slow"] * slow]
        self.socks = [None] * len(self.want)
        self.closed_by_server = 0
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def open_count(self):
        return sum(1 for s in self.socks if s is not None)

    def run(self):
        last_garbage = 0.0
        while self.running:
            for k, (port, kind) in enumerate(self.want):
                s = self.socks[k]
                if s is not None:
                    try:
                        r, _, _ = select.select([s], [], [], 0)
                        if r and not s.recv(65536):
                            raise OSError("closed")
                    except OSError:
                        s.close()
                        self.socks[k] = s = None
                        self.closed_by_server += 1
                if s is None:
                    try:
                        s = socket.create_connection(("127.0.0.1", port), timeout=0.2)
                        s.setblocking(False)
                        self.socks[k] = s
                    except OSError:
                        continue
            now = time.monotonic()
            if now - last_garbage >= 0.2:
                last_garbage = now
                for k, (port, kind) in enumerate(self.want):
                    if kind == "slow" and self.socks[k] is not None:
                        try:
                            self.socks[k].send(os.urandom(1))
                        except OSError:
                            pass
            time.sleep(0.1)

    def stop(self):
        self.running = False
        self.thread.join(5)
        for s in self.socks:
            if s is not None:
                s.close()


def timed_put(c, key, value, limit_s, what):
    started = time.monotonic()
    rc, _, err = c.kvctl("put", key, value, timeout_ms=int(limit_s * 1000))
    took = time.monotonic() - started
    check(rc == 0, f"{what}: no successful write within {limit_s} s: {err.strip()}")
    log(f"{what}: a write succeeded {took:.2f} s after")
    return took


def scenario_raft_flood(c):
    """Strangers holding connections to every raft port (20 idle and 4 sending garbage
    slowly per node, reopened as soon as they are closed) cannot keep the peers apart:
    after a whole-cluster restart, and after the leader restarts, a leader exists and
    writes succeed within a few seconds."""
    limit_s = 5.0
    c.start()
    c.wait_healthy()
    squat = Squatters(list(c.raft_ports.values()), idle=20, slow=4)
    try:
        wait_until("the strangers to connect", lambda: squat.open_count() >= len(squat.want), 10)
        time.sleep(1)
        timed_put(c, "flood0", "v", limit_s, "strangers on every raft port")
        for i in range(1, c.size + 1):
            c.kill9(i)
        wait_until("the strangers to notice", lambda: squat.open_count() == 0, 10)
        for i in range(1, c.size + 1):
            c.start_node(i)
        log("restarted every node")
        timed_put(c, "flood1", "v", limit_s, "whole-cluster restart among strangers")
        leader = c.leader()
        check(leader is not None, "no leader after the write")
        c.kill9(leader)
        time.sleep(0.5)
        c.start_node(leader)
        log(f"restarted the leader, node {leader}")
        timed_put(c, "flood2", "v", limit_s, "leader restart among strangers")
        c.wait_healthy(timeout_s=limit_s)
        for i in range(1, c.size + 1):
            check(c.alive(i), f"node {i} died:\n{c.read_log(i)[-2000:]}")
        log(f"{squat.closed_by_server} stranger connections were closed by the nodes; "
            f"{squat.open_count()} open now")
        check(c.kvctl_ok("get", "flood1") == "v\n", "get flood1")
    finally:
        squat.stop()


def scenario_client_flood(c):
    """1,100 idle TCP connections to the leader's client port do not lock new clients
    out: kvctl put, get and status through that node alone succeed promptly."""
    want = 1100
    limit = raise_fd_limit(want + 512)
    check(limit >= want + 100, f"RLIMIT_NOFILE {limit} is too low for {want} connections")
    c.start()
    c.wait_healthy()
    c.kvctl_ok("put", "before", "flood")
    target = c.leader()  # writes need it: a client of it alone cannot go elsewhere
    check(target is not None, "no leader")
    port = c.client_ports[target]
    socks = []
    try:
        for _ in range(want):
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError as e:
                raise TestFailure(f"could not open connection {len(socks) + 1}: {e}")
        log(f"{len(socks)} idle connections open to node {target}'s client port")
        time.sleep(0.5)
        started = time.monotonic()
        rc, _, err = c.kvctl("put", "during", "flood", endpoints=c.endpoint(target), timeout_ms=3000)
        check(rc == 0, f"put through node {target} with {want} idle connections on it: {err.strip()}")
        rc, out, err = c.kvctl("get", "before", endpoints=c.endpoint(target), timeout_ms=3000)
        check(rc == 0 and out == "flood\n", f"get through node {target}: rc {rc} {out!r} {err.strip()}")
        rc, _, err = c.kvctl("status", endpoints=c.endpoint(target), timeout_ms=3000)
        check(rc == 0, f"status of node {target}: {err.strip()}")
        took = time.monotonic() - started
        log(f"put, get and status through node {target} took {took:.2f} s")
        check(took < 5, f"put, get and status through node {target} took {took:.1f} s")
        check(c.alive(target), f"node {target} died")
    finally:
        for s in socks:
            s.close()


def rss_mb(pid):
    """VmRSS of a process, in MiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# What 2,000 clients may add to a node's memory: per connection the RPC state and socket
# buffers, per request one value and its reply (the queues behind them are bounded:
# core/limits.h), and the data written meanwhile (small values keep that to a few MB;
# the first version, with 4 KiB values, grew by 244 MB, most of it data and snapshots).
OVERLOAD_CLIENTS = 2000
OVERLOAD_RSS_GROWTH_MB = 160


def sanitized(binary):
    """Whether an executable was built with AddressSanitizer."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def cpu_seconds(pid):
    """User + system CPU seconds of a live process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scenario_overload(c):
    """2,000 clients, one connection each, write 256 B values as fast as they can through
    the leader alone for 6 s. The leader's RSS grows by less than OVERLOAD_RSS_GROWTH_MB,
    every request ends (acknowledged, or a clear error: busy, timeout, or an expired
    session, never a hang), every acknowledged write reads back, and a new client is
    served promptly afterwards. Issue 10: sessions left by retried OpenSessions are
    evicted before sessions in use, so no client's session expires (an uninstrumented
    build; under ASan at most 1% of the clients, kept loose: those nodes are ~5x slower).
    The leader also sheds load by queue age (busy once its oldest pending request waited
    a quarter of its request timeout), but the attempts that time out here mostly wait
    outside its queue (connections, a starved event loop: the node's own latency p99 stays
    under 0.5 s), so their number is logged, not bounded."""
    want = OVERLOAD_CLIENTS
    urls = with_metrics(c, "text")
    limit = raise_fd_limit(2 * want + 512)
    check(limit >= want + 200, f"RLIMIT_NOFILE {limit} is too low for {want} connections")
    # ASan keeps freed memory in a quarantine (256 MB by default): RSS would show that,
    # not what the node holds. No effect on an uninstrumented build.
    asan = os.environ.get("ASAN_OPTIONS", "")
    os.environ["ASAN_OPTIONS"] = (asan + ":" if asan else "") + \
        "quarantine_size_mb=16:thread_local_quarantine_size_kb=256"
    c.start()
    c.wait_healthy()
    target = c.leader()
    check(target is not None, "no leader")
    pid = c.procs[target].pid
    c.kvctl_ok("put", "before", "overload")
    base = rss_mb(pid)
    acks = os.path.join(c.root, "acks.txt")
    p = subprocess.Popen([ARGS.loadgen, "write", "--endpoints", c.endpoint(target), "--out", acks,
                          "--clients", str(want), "--channels", str(want), "--value-bytes", "256",
                          "--duration-ms", "6000", "--timeout", "5000"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    c.others.append(p)
    started = time.monotonic()
    peak = base
    loadgen_cpu = 0.0
    while p.poll() is None:
        peak = max(peak, rss_mb(pid))
        try:
            loadgen_cpu = cpu_seconds(p.pid)
        except (OSError, IndexError, ValueError):
            pass
        check(time.monotonic() - started < 90, "loadgen still running after 90 s: requests hang")
        time.sleep(0.1)
    text = p.communicate()[0].decode(errors="replace").strip()
    log(text)
    check(p.returncode == 0, f"loadgen exited {p.returncode}: {text}")
    check(c.alive(target), f"node {target} died under {want} clients")
    # What the nodes answered, all of them: the clients follow the leader if it changes.
    answers = collections.Counter()
    for i in urls:
        if c.alive(i):
            for n, labels, v in scrape(urls[i])["kvraft_client_requests_total"]["samples"]:
                answers[labels["status"]] += int(v)
    families = scrape(urls[target])
    # How long requests took inside the node (arrival to reply), against what the
    # clients saw: a request that waits outside (socket buffers, a starved loop) is not
    # in the node's queue, so no queue-age rule can shed it.
    for op in ("put", "open_session"):
        buckets = sorted((float(l["le"]), v) for n, l, v in
                         families["kvraft_client_request_duration_seconds"]["samples"]
                         if n.endswith("_bucket") and l.get("op") == op)
        if buckets and buckets[-1][1] > 0:
            total = buckets[-1][1]
            p50 = next(le for le, v in buckets if v >= 0.5 * total)
            p99 = next(le for le, v in buckets if v >= 0.99 * total)
            log(f"node {target} {op} latency: {int(total)} requests, p50 <= {p50} s, "
                f"p99 <= {p99} s")
    log(f"CPU seconds: node {target} {cpu_seconds(pid):.1f}, loadgen {loadgen_cpu:.1f} (sampled)")
    acked, errs = 0, collections.Counter()
    with open(acks) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 4)
            if len(parts) < 5:
                continue
            if parts[0] == "ack":
                acked += 1
            else:
                errs[parts[4]] += 1
    log(f"{want} clients: {acked} acknowledged, {sum(errs.values())} failed in "
        f"{time.monotonic() - started:.1f} s; node {target} RSS {base:.0f} MB before, "
        f"peak {peak:.0f} MB (+{peak - base:.0f} MB, bound +{OVERLOAD_RSS_GROWTH_MB} MB)")
    for msg, n in errs.most_common(5):
        log(f"  {n} x {msg}")
    kinds = collections.Counter()
    for msg, n in errs.items():
        kind = ("session_expired" if "session expired" in msg or "session_expired" in msg else
                "busy" if "busy" in msg else
                "timeout" if "timed out" in msg or "timeout" in msg else
                "disconnected" if "disconnected" in msg or "Connection reset" in msg else
                "other")
        kinds[kind] += n
    log(f"the nodes answered (requests, retries included): " +
        ", ".join(f"{k} {n}" for k, n in sorted(answers.items())))
    log(f"requests failed: busy {kinds['busy']}, timeout {kinds['timeout']}, "
        f"session_expired {kinds['session_expired']}, disconnected {kinds['disconnected']}, "
        f"other {kinds['other']}")
    # Progress: some write acknowledged. Under ASan the load generator is itself short of
    # CPU (about 8.7 CPU s in 11 s beside the nodes on 2 cores): in some runs its 1 s
    # attempt timers fire before its loop reads answers the node sent in 0.2 s, and no
    # client sees an ack. There the node's own count of ok answers shows the progress.
    check(acked > 0 or (sanitized(ARGS.kvnode) and answers["ok"] > 0),
          f"no write was acknowledged (the nodes answered {dict(answers)})")
    # "disconnected": the node's connection cap (1024 by default, below 2,000 clients)
    # closed the connection of a client whose request it had not read yet: outcome unknown.
    # "not_leader": an overloaded (ASan) leader can lose office; a client whose earlier
    # attempt timed out then ends "outcome unknown ... answered not_leader" (clean-clone
    # run at c3f5f86). A clear error too; the acknowledged writes are verified below.
    unclear = [m for m in errs if not any(k in m for k in ("busy", "timed out", "timeout",
                                                           "session expired", "disconnected",
                                                           "Connection reset", "not_leader"))]
    check(not unclear, f"errors other than busy, timeout, a disconnect, an expired session "
          f"or a leader change: {unclear[:3]}")
    expired_cap = want // 100 if sanitized(ARGS.kvnode) else 0
    check(kinds["session_expired"] <= expired_cap,
          f"{kinds['session_expired']} clients saw their session expire (at most {expired_cap})")
    check(peak - base < OVERLOAD_RSS_GROWTH_MB,
          f"node {target} grew by {peak - base:.0f} MB under {want} clients")
    rc, out, err = c.kvctl("get", "before", endpoints=c.endpoint(target), timeout_ms=3000)
    check(rc == 0 and out == "overload\n", f"get after the overload: rc {rc} {out!r} {err.strip()}")
    r = subprocess.run([ARGS.loadgen, "verify", "--endpoints", c.endpoints(), "--in", acks,
                        "--value-bytes", "256", "--concurrency", "64"],
                       capture_output=True, timeout=180)
    text = (r.stdout + r.stderr).decode(errors="replace").strip()
    log(text)
    check(r.returncode == 0, f"acknowledged writes lost:\n{text}")


def scenario_client_idle(c):
    """A client connection with no request for --client-idle-timeout-ms is closed by the
    node; one that keeps sending requests is not."""
    c.node_flags += ["--client-idle-timeout-ms", "1000"]
    c.start()
    c.wait_healthy()
    port = c.client_ports[1]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
    started = time.monotonic()

    def all_closed():
        for s in idle:
            s.settimeout(0.01)
            try:
                if s.recv(1) != b"":
                    return False
            except socket.timeout:
                return False
            except OSError:
                pass  # reset: closed
        return True
    wait_until("the node to close idle client connections", all_closed, 5)
    log(f"idle connections closed after {time.monotonic() - started:.1f} s")
    # A busy client (the load generator: requests all the time) is not cut off.
    acks = os.path.join(c.root, "acks.txt")
    stop = os.path.join(c.root, "stop")
    load = c.start_load(acks, stop, clients=2, extra=["--timeout", "2000"])
    time.sleep(3)
    c.stop_load(load, stop)
    acked, errs = read_acks(acks)
    check(acked and not errs, f"writes over busy connections: {len(acked)} acked, {len(errs)} failed")
    for s in idle:
        s.close()

def restore_node(c, i, backup, extra=()):
    """kvnode --restore for node i of cluster c: (exit code, output)."""
    r = subprocess.run(c.node_command(i, ["--restore", backup] + list(extra)),
                       capture_output=True, timeout=60)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def snapshot_status(c, path):
    rc, out, err = c.kvctl("--json", "snapshot", "status", path)
    try:
        info = json.loads(out)
    except ValueError:
        info = {}
    return rc, info, err


def scenario_backup_restore(c):
    """kvctl snapshot save of a live 3-node cluster (through a follower), kill it, restore
    three fresh data dirs from the file, start a new cluster on them: every key written
    before the save is there, the one written after is not, writes work, sessions of the
    old cluster are gone."""
    c.node_flags += ["--snapshot-entries", "100"]  # the saved state spans local snapshots
    c.start()
    leader = c.wait_healthy()
    keys = {f"key{n:03d}": f"value{n}" for n in range(60)}
    for k, v in keys.items():
        c.kvctl_ok("put", k, v)
    c.kvctl_ok("del", "key059")
    del keys["key059"]
    acks = os.path.join(c.root, "acks.txt")
    stop = os.path.join(c.root, "stop")
    load = c.start_load(acks, stop, extra=["--max-writes", "400", "--prefix", "load"])
    wait_until("400 writes", lambda: load.poll() is not None, 60)
    c.stop_load(load, stop)
    acked, errs = read_acks(acks)
    check(len(acked) == 400 and not errs, f"load: {len(acked)} acked, {len(errs)} failed")
    session = c.kvctl_ok("session").strip()
    last = json.loads(c.kvctl_ok("--json", "put", "last-before-save", "yes"))
    keys["last-before-save"] = "yes"

    follower = next(i for i in range(1, c.size + 1) if i != leader)
    backup = os.path.join(c.root, "backup.kvb")
    out = c.kvctl_ok("--json", "snapshot", "save", backup, endpoints=c.endpoint(follower))
    saved = json.loads(out)
    log(f"saved through follower node {follower}: {saved}")
    check(saved["node"] == follower, f"saved by node {saved['node']}, asked node {follower}")
    check(saved["index"] >= last["index"],
          f"snapshot index {saved['index']} is older than an acknowledged write at {last['index']}")
    check(not os.path.exists(backup + ".tmp"), "temp file left behind")
    expected_keys = len(keys) + len(acked)
    check(saved["keys"] == expected_keys, f"saved {saved['keys']} keys, want {expected_keys}")
    rc, info, err = snapshot_status(c, backup)
    check(rc == 0 and info.get("checksum") == "ok" and info.get("valid") is True,
          f"snapshot status: rc {rc} {info} {err!r}")
    check(info["index"] == saved["index"] and info["term"] == saved["term"] and
          info["keys"] == expected_keys and info["size"] == saved["size"] and
          info["fileBytes"] == os.path.getsize(backup),
          f"snapshot status {info} disagrees with save {saved}")
    rc, text, err = c.kvctl("snapshot", "status", backup)
    check(rc == 0 and f"index      {saved['index']}\n" in text and
          f"keys       {expected_keys}\n" in text and "checksum   ok" in text,
          f"snapshot status text: rc {rc} {text!r} {err!r}")
    c.kvctl_ok("put", "after-save", "must not survive")
    c.kill_all()
    log("old cluster killed")

    new = Cluster(os.path.join(c.root, "restored"))
    os.makedirs(new.root)
    for i in range(1, new.size + 1):
        rc, text = restore_node(new, i, backup)
        log(text.strip())
        check(rc == 0, f"restore of node {i} exited {rc}: {text}")
        check(f"index {saved['index']}" in text, f"restore output: {text}")
    try:
        new.start()
        new.wait_healthy(timeout_s=20)
        got = new.kvctl_ok("range", "", "", "--limit", "10000")
        want = "".join(f"{k}\t{v}\n" for k, v in sorted(
            list(keys.items()) + [(a[2], a[3]) for a in acked]))
        check(got == want, f"restored data differs: {len(got.splitlines())} pairs, "
                           f"want {len(want.splitlines())}")
        for k in ("key000", "key058", "last-before-save"):
            out = new.kvctl_ok("get", k)
            check(out == keys[k] + "\n", f"get {k}: {out!r}")
        rc, _, _ = new.kvctl("get", "after-save")
        check(rc == 1, f"a key written after the save is present (rc {rc})")
        rc, _, _ = new.kvctl("get", "key059")
        check(rc == 1, f"a key deleted before the save is present (rc {rc})")
        new.verify(acks)
        # The old cluster's sessions are gone: a client must open a new one.
        rc, _, err = new.kvctl("--client-id", session, "--request-id", "1", "put", "x", "y")
        check(rc == 2 and "session" in err, f"old session still works: rc {rc} {err!r}")
        new.kvctl_ok("put", "after-restore", "works")
        check(new.kvctl_ok("get", "after-restore") == "works\n", "write after restore")
        st = {s["id"]: s for s in new.status() if s.get("reachable")}
        check(all(s["commit"] > saved["index"] for s in st.values()),
              f"the new log does not continue after the snapshot index: {st}")
        # Restarted normally (no --restore), the data is still there.
        for i in range(1, new.size + 1):
            new.terminate(i)
            new.start_node(i)
        new.wait_healthy(timeout_s=20)
        check(new.kvctl_ok("get", "key000") == "value0\n", "data after restarting")
    finally:
        new.kill_all()


def scenario_backup_refusals(c):
    """A truncated backup, one with a flipped byte, a missing one: snapshot status and
    kvnode --restore refuse them naming the file and what is wrong, exit 2, and leave no
    data dir; a non-empty data dir is refused and left as it was."""
    c.start()
    c.wait_healthy()
    for n in range(20):
        c.kvctl_ok("put", f"k{n}", f"v{n}")
    good = os.path.join(c.root, "good.kvb")
    saved = json.loads(c.kvctl_ok("--json", "snapshot", "save", good))
    data = open(good, "rb").read()
    cut = len(data) - 100
    truncated = os.path.join(c.root, "truncated.kvb")
    with open(truncated, "wb") as f:
        f.write(data[:cut])
    flipped = os.path.join(c.root, "flipped.kvb")
    with open(flipped, "wb") as f:
        f.write(data[:60] + bytes([data[60] ^ 0x04]) + data[61:])
    badmagic = os.path.join(c.root, "badmagic.kvb")
    with open(badmagic, "wb") as f:
        f.write(b"X" + data[1:])
    missing = os.path.join(c.root, "missing.kvb")
    cases = [(truncated, f"truncated at byte {cut}"), (flipped, "checksum mismatch"),
             (badmagic, "bad magic"), (missing, "cannot read")]
    new = Cluster(os.path.join(c.root, "restored"))
    os.makedirs(new.root)
    for path, what in cases:
        rc, info, err = snapshot_status(c, path)
        check(rc == 2 and path in err and what in err,
              f"snapshot status {os.path.basename(path)}: rc {rc} {err!r}, want {what!r}")
        if path == flipped:
            check(info.get("checksum") == "bad" and info.get("index") == saved["index"],
                  f"status of a flipped byte: {info}")
        rc, text = restore_node(new, 1, path)
        check(rc == 2 and path in text and what in text,
              f"restore from {os.path.basename(path)}: rc {rc} {text!r}, want {what!r}")
        check(not os.path.exists(new.data_dir(1)) and
              not os.path.exists(new.data_dir(1) + ".restore.tmp"),
              f"restore from {os.path.basename(path)} left a data dir behind")
        log(f"refused {os.path.basename(path)}: {text.strip()}")
    # A data dir that holds anything is refused and left alone.
    os.makedirs(new.data_dir(2))
    marker = os.path.join(new.data_dir(2), "keep-me")
    with open(marker, "w") as f:
        f.write("old")
    rc, text = restore_node(new, 2, good)
    check(rc == 2 and "not empty" in text, f"restore into a non-empty dir: rc {rc} {text!r}")
    check(os.listdir(new.data_dir(2)) == ["keep-me"] and open(marker).read() == "old",
          "a refused restore changed the non-empty data dir")
    # The good file restores.
    rc, text = restore_node(new, 3, good)
    check(rc == 0, f"restore of the good file: rc {rc} {text!r}")


# ---------------------------------------------------------------- observability

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
SAMPLE_LINE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)\Z")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|\Z)')
TS_RFC3339_MS_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")


def parse_value(text, where):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    check(re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text) is not None,
          f"{where}: bad sample value {text!r}")
    return float(text)


def parse_labels(text, where):
    labels = {}
    pos = 0
    while pos < len(text):
        m = LABEL_PAIR.match(text, pos)
        check(m is not None, f"{where}: bad labels {{{text}}}")
        check(m.group(1) not in labels, f"{where}: label {m.group(1)} twice")
        labels[m.group(1)] = re.sub(r"\\(.)", lambda x: "\n" if x.group(1) == "n" else x.group(1),
                                    m.group(2))
        if m.group(3) == "" and m.end() != len(text):
            raise TestFailure(f"{where}: bad labels {{{text}}}")
        pos = m.end()
    return labels


def parse_exposition(text):
    """Parses Prometheus text format 0.0.4 strictly. Returns {family: {"type", "samples":
    [(name, labels, value)]}}. Fails on anything malformed: a sample line that is not
    `name{labels} value`, a sample before its family's # TYPE, a family typed twice,
    non-cumulative histogram buckets, a histogram without +Inf or with _count != +Inf."""
    check(text.endswith("\n"), "exposition does not end with a newline")
    families = {}
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {n} {line!r}"
        check(line != "", f"{where}: empty line")
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            check(len(parts) == 4, f"{where}: bad TYPE line")
            name, kind = parts[2], parts[3]
            check(METRIC_NAME.match(name), f"{where}: bad metric name")
            check(kind in ("counter", "gauge", "histogram", "summary", "untyped"),
                  f"{where}: bad type")
            check(name not in families, f"{where}: {name} typed twice")
            families[name] = {"type": kind, "samples": []}
            continue
        if line.startswith("# HELP "):
            check(METRIC_NAME.match(line.split(" ")[2]), f"{where}: bad HELP line")
            continue
        check(not line.startswith("#"), f"{where}: unexpected comment")
        m = SAMPLE_LINE.match(line)
        check(m is not None, f"{where}: not `name{{labels}} value`")
        name, labels, value = m.group(1), parse_labels(m.group(2) or "", where), \
            parse_value(m.group(3), where)
        family = name
        if name not in families:
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and name[:-len(suffix)] in families:
                    family = name[:-len(suffix)]
        check(family in families, f"{where}: sample without a # TYPE before it")
        check(family == name or families[family]["type"] == "histogram",
              f"{where}: suffixed sample of a non-histogram")
        check(family == list(families)[-1], f"{where}: samples of {family} are not together")
        families[family]["samples"].append((name, labels, value))
    for family, f in families.items():
        check(family.startswith("kvraft_"), f"{family}: no kvraft_ prefix")
        check(f["samples"] or f["type"] == "histogram", f"{family}: no samples")
        if f["type"] == "counter":
            check(family.endswith("_total"), f"counter {family} does not end in _total")
            check(all(v >= 0 for _, _, v in f["samples"]), f"{family}: negative counter")
        if f["type"] != "histogram":
            continue
        series = {}
        for name, labels, value in f["samples"]:
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            h = series.setdefault(key, {"buckets": [], "sum": None, "count": None})
            if name.endswith("_bucket"):
                check("le" in labels, f"{family}{dict(key)}: bucket without le")
                h["buckets"].append((parse_value(labels["le"], family), value))
            elif name.endswith("_sum"):
                h["sum"] = value
            else:
                h["count"] = value
        for key, h in series.items():
            where = f"{family}{dict(key)}"
            b = h["buckets"]
            check(b and b[-1][0] == float("inf"), f"{where}: buckets do not end with +Inf")
            check(all(b[i][0] < b[i + 1][0] for i in range(len(b) - 1)),
                  f"{where}: le not increasing")
            check(all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)),
                  f"{where}: buckets not cumulative")
            check(h["sum"] is not None and h["count"] is not None, f"{where}: no _sum/_count")
            check(h["count"] == b[-1][1], f"{where}: _count {h['count']} != +Inf {b[-1][1]}")
    return families


def metric(families, name, **labels):
    """The value of one sample (labels must match exactly; le excluded for histograms)."""
    family = name
    for suffix in ("_count", "_sum"):
        if name.endswith(suffix) and name[:-len(suffix)] in families:
            family = name[:-len(suffix)]
    check(family in families, f"metric {name} is missing")
    for n, l, v in families[family]["samples"]:
        if n == name and l == labels:
            return v
    raise TestFailure(f"metric {name}{labels} is missing")


def http_get(url, method="GET"):
    """(status, headers, body) of one HTTP request."""
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def with_metrics(c, log_format):
    """Gives every node --metrics-addr (fresh ports) and --log-format; returns the URLs."""
    ports = dict(zip(range(1, c.size + 1), free_ports(c.size)))
    base = c.node_command
    c.node_command = lambda i, extra=(): base(i, extra) + [
        "--metrics-addr", f"127.0.0.1:{ports[i]}", "--log-format", log_format]
    return {i: f"http://127.0.0.1:{ports[i]}/metrics" for i in ports}


def scrape(url):
    status, headers, body = http_get(url)
    check(status == 200, f"GET {url}: {status}")
    check(headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
          f"GET {url}: content type {headers.get('Content-Type')}")
    return parse_exposition(body)


def scenario_metrics(c):
    """/metrics on every node parses strictly and its values move with the workload."""
    urls = with_metrics(c, "text")
    c.start()
    leader = c.wait_healthy()
    before = {i: scrape(urls[i]) for i in urls}
    leaders = [i for i in urls if metric(before[i], "kvraft_server_is_leader") == 1]
    check(len(leaders) == 1, f"nodes reporting leader: {leaders}")
    check(leaders == [leader], f"metrics say node {leaders} leads, kvctl says {leader}")
    for i, m in before.items():
        term = metric(m, "kvraft_server_term")
        check(term > 0, f"node {i}: term {term}")
        roles = {l["role"]: v for n, l, v in m["kvraft_server_role"]["samples"]}
        check(sum(roles.values()) == 1 and roles["leader"] == (i == leader),
              f"node {i}: roles {roles}")

    writes = 25
    for k in range(writes):
        c.kvctl_ok("put", f"m{k}", f"v{k}", endpoints=c.endpoint(leader))
    for k in range(5):
        c.kvctl_ok("get", f"m{k}", endpoints=c.endpoint(leader))
    rc, _, _ = c.kvctl("get", "absent", endpoints=c.endpoint(leader))
    check(rc == 1, f"get of an absent key exited {rc}")

    def moved():
        after = {i: scrape(urls[i]) for i in urls}
        for i in urls:
            grown = (metric(after[i], "kvraft_server_proposals_committed_total") -
                     metric(before[i], "kvraft_server_proposals_committed_total"))
            applied = metric(after[i], "kvraft_server_applied_index")
            if grown < writes or applied < metric(after[leader], "kvraft_server_commit_index"):
                return None
        return after
    after = wait_until("every node to see the writes committed", moved, 10, 0.2)

    puts = sum(metric(after[i], "kvraft_client_requests_total", op="put", status="ok") -
               metric(before[i], "kvraft_client_requests_total", op="put", status="ok")
               for i in urls)
    check(puts == writes, f"put/ok counted {puts} times for {writes} puts")
    gets = metric(after[leader], "kvraft_client_requests_total", op="get", status="ok")
    check(gets >= 5, f"get/ok counted {gets}")
    missing = metric(after[leader], "kvraft_client_requests_total", op="get", status="not_found")
    check(missing >= 1, f"get/not_found counted {missing}")
    lat = metric(after[leader], "kvraft_client_request_duration_seconds_count", op="put")
    check(lat >= writes, f"put latency observations {lat}")
    check(metric(after[leader], "kvraft_server_proposals_pending") == 0, "proposals pending")

    # Every member holds the writes and applied them: their payloads left the leader's
    # in-memory log (docs/ARCHITECTURE.md, "The log between snapshots keeps terms").
    wait_until(f"the leader's payload floor to pass {writes} writes",
               lambda: metric(scrape(urls[leader]),
                              "kvraft_server_log_payload_floor_index") >= writes, 10, 0.2)

    # A peer connection times its first ping a pingInterval (1 s) after it opens; on a
    # fast machine the writes above are done before that.
    def pinged():
        m = scrape(urls[leader])
        timed = all(metric(m, "kvraft_network_peer_round_trip_time_seconds_count",
                           peer=str(j)) > 0 for j in urls if j != leader)
        return m if timed else None
    after[leader] = wait_until("the leader to time a ping round trip to every peer", pinged,
                               10, 0.2)
    for i in urls:
        m = after[i]
        check(metric(m, "kvraft_disk_wal_fsync_duration_seconds_count") > 0,
              f"node {i}: no fsync observed")
        check(metric(m, "kvraft_disk_wal_written_bytes_total") > 0, f"node {i}: no WAL bytes")
        check(metric(m, "kvraft_disk_wal_writes_total") > 0, f"node {i}: no WAL writes")
        check(metric(m, "kvraft_disk_wal_batches_total") >=
              metric(m, "kvraft_disk_wal_writes_total"), f"node {i}: batches < writes")
        check(metric(m, "kvraft_server_commit_index") >= writes, f"node {i}: commit index")
        check(metric(m, "kvraft_process_resident_memory_bytes") > 1 << 20, f"node {i}: RSS")
        start = metric(m, "kvraft_process_start_time_seconds")
        check(time.time() - 600 < start <= time.time() + 1, f"node {i}: start time {start}")
        check(metric(m, "kvraft_server_leader_changes_seen_total") >= 1,
              f"node {i}: no leader change seen")
        for j in urls:
            if j == i:
                continue
            check(metric(m, "kvraft_network_peer_up", peer=str(j)) == 1,
                  f"node {i}: peer {j} not up")
            rtts = metric(m, "kvraft_network_peer_round_trip_time_seconds_count", peer=str(j))
            check(i != leader or rtts > 0, f"leader: no round trips to peer {j}")
    log(f"metrics moved: {puts} puts counted, leader fsyncs "
        f"{metric(after[leader], 'kvraft_disk_wal_fsync_duration_seconds_count'):.0f}")

    # A stopped peer shows as down.
    victim = next(i for i in urls if i != leader)
    c.kill9(victim)
    wait_until(f"node {leader} to report peer {victim} down",
               lambda: metric(scrape(urls[leader]), "kvraft_network_peer_up",
                              peer=str(victim)) == 0, 10, 0.2)

    status, _, _ = http_get(urls[leader].replace("/metrics", "/nope"))
    check(status == 404, f"GET /nope: {status}")
    status, headers, _ = http_get(urls[leader], method="POST")
    check(status == 405 and headers.get("Allow") == "GET", f"POST /metrics: {status}")
    status, _, _ = http_get(urls[leader], method="DELETE")
    check(status == 405, f"DELETE /metrics: {status}")

    # Text logs: every line a node wrote has a timestamp and a level.
    text_line = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (info|warn|error) "
                           r"kvnode \d+( term \d+)?: .")
    for i in urls:
        for line in c.read_log(i).splitlines():
            if line.startswith("---- start"):
                continue  # written by this script
            check(text_line.match(line), f"node {i}: log line without time/level: {line!r}")


def scenario_json_logs(c):
    """--log-format json: every line of every node's stderr is one JSON object."""
    with_metrics(c, "json")
    c.start()
    leader = c.wait_healthy()
    for k in range(10):
        c.kvctl_ok("put", f"j{k}", "x")
    victim = next(i for i in range(1, c.size + 1) if i != leader)
    c.kill9(victim)          # the others log "peer N down" (a warning)
    time.sleep(0.5)
    survivor = next(i for i in range(1, c.size + 1) if i not in (leader, victim))
    rc = c.terminate(survivor)  # logs "shutting down" and "stopped"
    check(rc == 0, f"node {survivor} exited {rc} on SIGTERM")
    c.start_node(survivor)
    c.wait_healthy(endpoints=",".join(c.endpoint(i) for i in (leader, survivor)))
    time.sleep(0.3)
    c.terminate(leader)

    seen = {}
    for i in range(1, c.size + 1):
        for n, line in enumerate(c.read_log(i).splitlines(), 1):
            if line.startswith("---- start"):
                continue  # written by this script
            where = f"node {i} line {n} {line!r}"
            try:
                event = json.loads(line)
            except ValueError:
                raise TestFailure(f"{where}: not JSON")
            check(isinstance(event, dict) and
                  sorted(event) == ["level", "msg", "node", "term", "ts"],
                  f"{where}: wrong keys")
            check(TS_RFC3339_MS_UTC.match(event["ts"]), f"{where}: ts not RFC 3339 UTC ms")
            check(event["level"] in ("info", "warn", "error"), f"{where}: level")
            check(event["node"] == i, f"{where}: node")
            check(event["term"] is None or (isinstance(event["term"], int) and
                                            event["term"] >= 0), f"{where}: term")
            check(isinstance(event["msg"], str) and event["msg"], f"{where}: msg")
            seen.setdefault(i, []).append(event)
    became = [e for e in seen[leader] if e["msg"] == "became leader"]
    check(became and became[0]["term"] > 0, f"node {leader}: no 'became leader' with a term")
    down = [e for e in seen[leader] if e["msg"].startswith(f"peer {victim} down")]
    check(down and all(e["level"] == "warn" for e in down),
          f"node {leader}: 'peer {victim} down' missing or not a warning")
    msgs = [e["msg"] for e in seen[survivor]]
    check("shutting down" in msgs and "stopped" in msgs,
          f"node {survivor}: no shutdown lines: {msgs}")
    log(f"{sum(len(v) for v in seen.values())} JSON log lines parsed")


def run_kvctl(*args, timeout_s=30, stdin=None):
    """kvctl with exactly these arguments (no --endpoints or --timeout added)."""
    started = time.monotonic()
    r = subprocess.run([ARGS.kvctl] + list(args), input=stdin, capture_output=True,
                       timeout=timeout_s)
    return (r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"),
            time.monotonic() - started)


def put_through_one_node(c, i, key, value, limit_s=3.0):
    """kvctl put with node i as the only endpoint; must succeed within limit_s."""
    rc, out, err, took = run_kvctl("--endpoints", c.endpoint(i), "--timeout", "5000",
                                   "put", key, value)
    check(rc == 0 and out == "ok\n",
          f"put {key} with only node {i} as endpoint: rc {rc} {out!r} {err!r}")
    check(took <= limit_s, f"put {key} through node {i} took {took:.2f} s")
    return took


def scenario_any_node(c):
    """Any one node is enough: a write given only a follower's address succeeds (the
    follower names the leader's advertised client address, the client goes there), and
    so does one given only node 1's address (plain kvctl) whichever node leads."""
    c.start()
    leader = c.wait_healthy()
    log(f"leader is node {leader}")
    for i in range(1, c.size + 1):
        took = put_through_one_node(c, i, f"any{i}", f"v{i}")
        log(f"put through node {i} ({'leader' if i == leader else 'follower'}) alone: "
            f"{took * 1000:.0f} ms")
    for i in range(1, c.size + 1):
        for j in range(1, c.size + 1):
            rc, out, err, _ = run_kvctl("--endpoints", c.endpoint(i), "get", f"any{j}")
            check(rc == 0 and out == f"v{j}\n", f"get any{j} via node {i}: {rc} {out!r} {err!r}")
    # Every node knows where every other serves clients, and says who leads.
    statuses = c.status()
    check(all(s.get("leaderAddr") == c.endpoint(leader) for s in statuses),
          f"leader addresses in status: {statuses}")
    check(all(s.get("clientAddr") == c.endpoint(s["id"]) for s in statuses),
          f"client addresses in status: {statuses}")
    # Move the leadership around: stop the leader (SIGTERM), write through node 1 alone
    # (kvctl's default endpoint in a ./dev run cluster) each time, restart it.
    leaders = {leader}
    for round in range(3):
        old = c.leader()
        check(c.terminate(old) == 0, f"node {old} did not stop cleanly")
        survivors = ",".join(c.endpoint(i) for i in range(1, c.size + 1) if i != old)
        new = c.wait_healthy(endpoints=survivors)
        leaders.add(new)
        # Node 1 alone, or while it is the one down, the surviving follower alone.
        via = 1 if old != 1 else next(i for i in range(1, c.size + 1) if i not in (old, new))
        took = put_through_one_node(c, via, f"round{round}", str(round), limit_s=4.0)
        log(f"round {round}: node {old} stopped, node {new} leads, put via node {via} "
            f"alone took {took * 1000:.0f} ms")
        c.start_node(old)
        c.wait_healthy()
        put_through_one_node(c, old, f"back{round}", str(round))
    log(f"leaders seen: {sorted(leaders)}")
    check(len(leaders) >= 2, f"the leadership never moved: {leaders}")


def scenario_no_leader(c):
    """One node of three up: no leader can be elected. A write through it reports
    clearly that it was not applied, within the deadline, not 'outcome unknown'."""
    c.start_node(1)
    def answers():
        s = c.status(endpoints=c.endpoint(1))
        return s and s[0].get("reachable")
    wait_until("node 1 to answer status", answers, 10)
    rc, out, err, took = run_kvctl("--endpoints", c.endpoint(1), "--timeout", "1500",
                                   "put", "a", "b")
    log(f"put with no leader: rc {rc} in {took * 1000:.0f} ms: {err.strip()}")
    check(rc == 2, f"put with no leader: rc {rc} {out!r} {err!r}")
    check("not applied" in err and "no leader" in err, f"unclear error: {err!r}")
    check("this node reaches 0 of its 2 peers, and electing a leader needs 2 of the 3 nodes"
          in err, f"no word on why there is no leader: {err!r}")
    check("unknown" not in err, f"a NotLeader answer reported as unknown: {err!r}")
    check(took < 3.5, f"put with no leader took {took:.2f} s with --timeout 1500")
    rc, out, err, took = run_kvctl("--endpoints", c.endpoint(1), "--timeout", "1000",
                                   "--client-id", "5", "--request-id", "1", "put", "a", "b",
                                   "--json")
    check(rc == 2, f"put --json with no leader: rc {rc} {out!r} {err!r}")
    reply = json.loads(out)
    check(reply["outcome"] == "error" and reply["maybeApplied"] is False and
          reply["status"] == "not_leader" and reply["error"].startswith("not applied: no leader"),
          f"put --json with no leader: {reply}")
    rc, out, err, took = run_kvctl("--endpoints", c.endpoint(1), "--timeout", "1000",
                                   "get", "a")
    check(rc == 2 and "not served" in err and "no leader" in err,
          f"get with no leader: rc {rc} {err!r}")


def scenario_flags_anywhere(c):
    """kvctl takes its flags anywhere on the line, as etcdctl does."""
    c.start()
    leader = c.wait_healthy()
    e = c.endpoints()
    rc, before, err, _ = run_kvctl("--json", "--endpoints", e, "status")
    check(rc == 0, f"kvctl --json status: {rc} {err!r}")
    rc, after, err, _ = run_kvctl("status", "--json", "--endpoints", e)
    check(rc == 0, f"kvctl status --json: {rc} {err!r}")
    a, b = json.loads(before), json.loads(after)
    check([s["id"] for s in a] == [s["id"] for s in b] == [1, 2, 3], f"{a} vs {b}")
    def ok(*args, want="ok\n"):
        rc, out, err, _ = run_kvctl(*args)
        check(rc == 0 and out == want, f"kvctl {' '.join(args)}: rc {rc} {out!r} {err!r}")
    ok("put", "k1", "v1", "--endpoints", e, "--timeout", "3000")
    ok("put", "--endpoints=" + e, "k2", "v2", "--timeout=3000")
    ok("get", "k1", "--endpoints", e, want="v1\n")
    rc, out, err, _ = run_kvctl("get", "k2", "--json", "--endpoints", e)
    check(rc == 0 and json.loads(out)["value"] == "v2", f"get --json: {rc} {out!r} {err!r}")
    ok("range", "k", "l", "--endpoints", e, "--limit", "1", want="k1\tv1\n")
    ok("cas", "fresh", "--absent", "1", "--endpoints", e)
    ok("cas", "--absent", "fresh2", "1", "--endpoints", e)
    rc, _, err, _ = run_kvctl("--endpoints", e, "cas", "fresh", "1", "--absent")
    check(rc == 1 and "cas mismatch" in err, f"cas --absent at the end: {rc} {err!r}")
    ok("--endpoints", e, "put", "--", "--dash", "--value")  # after --: arguments
    ok("get", "--endpoints", e, "--", "--dash", want="--value\n")
    ok("--stale", "get", "k1", "--endpoints", c.endpoint(leader), want="v1\n")
    for args, message in [(("put", "k", "v", "--bogus"), "unknown flag --bogus"),
                          (("get", "k", "--limit", "3"), "--limit goes with range only"),
                          (("put", "k", "v", "--timeout"), "--timeout needs a value"),
                          (("status", "--json=yes"), "--json takes no value"),
                          (("get", "k", "--timeout", "x"), "--timeout needs a number")]:
        rc, out, err, _ = run_kvctl("--endpoints", e, *args)
        check(rc == 2 and message in err, f"kvctl {' '.join(args)}: rc {rc} {err!r}")

# ---------------------------------------------------------------- TLS

def tls_cluster(c):
    """Certificates for c (made now with openssl) and TLS flags for its nodes and kvctl."""
    certs = tls_certs.make_certs(os.path.join(c.root, "certs"))
    c.node_flags += ["--tls-cert", certs["node_cert"], "--tls-key", certs["node_key"],
                     "--tls-ca", certs["ca"]]
    c.client_flags = ["--cacert", certs["ca"]]
    return certs


def plaintext_exchange(port, send, timeout_s=5):
    """Connects, sends `send`, returns everything read until the server closes (or None
    if it did not close within timeout_s) and how long that took."""
    started = time.monotonic()
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        if send:
            s.sendall(send)
        s.settimeout(0.2)
        while time.monotonic() - started < timeout_s:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return data, time.monotonic() - started
            if not chunk:
                return data, time.monotonic() - started
            data += chunk
    return None, time.monotonic() - started


def kvctl_fails_fast(c, args, want, what, limit_s=2.0):
    """kvctl with exactly `args` must exit 2 within limit_s, saying `want` (a regular
    expression) on stderr."""
    rc, _, err, took = run_kvctl(*args, timeout_s=30)
    check(rc == 2 and re.search(want, err) and took < limit_s,
          f"{what}: rc {rc} in {took:.2f} s (limit {limit_s} s), stderr {err.strip()!r}; "
          f"want exit 2 saying {want!r}")
    log(f"{what}: {err.strip()}")
    return err


def tls_server(cert, key):
    """A TLS server on a free port that presents `cert` and closes each connection after
    its handshake; returns (port, stop). Stands in for a node with a certificate that
    kvnode itself would refuse to start with."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    running = [True]

    def serve():
        while running[0]:
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                conn.settimeout(2)
                ctx.wrap_socket(conn, server_side=True).close()
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def stop():
        running[0] = False
        thread.join(2)
        listener.close()
    return listener.getsockname()[1], stop


def tls_client_handshake(port, ca, cert, key):
    """A TLS client presenting cert/key to port: the error the handshake or the first read
    ends with (a TLS 1.3 server refuses a client certificate after the client's side of
    the handshake), or None if the server kept the connection."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = False
    ctx.load_cert_chain(cert, key)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as s:
                s.settimeout(2)
                s.recv(1)
        except (OSError, ssl.SSLError) as e:
            return str(e)
    return None


def scenario_tls(c):
    """A 3-node cluster with TLS on every port (mutual TLS between peers, which check the
    name localhost: kvnode --tls-server-name): writes and reads through every node with
    kvctl --cacert, also naming the nodes by DNS name (--tls-server-name localhost); a
    backup over TLS. A plaintext kvctl on a TLS port fails
    fast saying the port requires TLS, and the node logs it; plaintext Cap'n Proto on a raft
    port gets the same refusal; a stranger that opens TCP and never starts TLS is closed
    within the raft port's 2 s handshake bound and the client port's 5 s TLS bound."""
    certs = tls_cluster(c)
    # Peers check each other's certificate for this name (the other TLS scenarios: for
    # the host of the --cluster address).
    c.node_flags += ["--tls-server-name", "localhost"]
    put_and_get_through_every_node(c)
    out = c.kvctl_ok("--tls-server-name", "localhost", "get", "key1")
    check(out == "value1\n", f"get with --tls-server-name localhost: {out!r}")
    backup = os.path.join(c.root, "backup.kvb")
    saved = json.loads(c.kvctl_ok("--json", "snapshot", "save", backup))
    check(saved.get("keys") == c.size, f"backup over TLS: {saved}")
    # A name the certificate does not carry is refused, naming it.
    kvctl_fails_fast(c, ["--endpoints", c.endpoint(1), "--cacert", certs["ca"],
                         "--tls-server-name", "elsewhere.example", "get", "key1"],
                     "does not carry the name 'elsewhere\\.example'", "a wrong server name")

    # Plaintext kvctl on a TLS client port: refused with the reason, not a hang or reset.
    kvctl_fails_fast(c, ["--endpoints", c.endpoint(1), "--timeout", "5000", "get", "key1"],
                     "requires TLS", "plaintext kvctl on a TLS port")
    wait_until("node 1 to log the plaintext client",
               lambda: "refused a plaintext connection" in c.read_log(1), 5)
    # Plaintext Cap'n Proto (a frame header: one segment of 0 words) on a raft port.
    data, took = plaintext_exchange(c.raft_ports[2], b"\0" * 8)
    check(data is not None and b"requires TLS" in data,
          f"plaintext on a raft port: got {data!r} in {took:.2f} s")

    # Strangers that never start TLS do not keep a slot.
    results = {}

    def silent(name, port):
        results[name] = plaintext_exchange(port, b"", timeout_s=10)
    threads = [threading.Thread(target=silent, args=("raft", c.raft_ports[1])),
               threading.Thread(target=silent, args=("client", c.client_ports[1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    raft_data, raft_took = results["raft"]
    client_data, client_took = results["client"]
    check(raft_data is not None and 1.5 <= raft_took < 4,
          f"silent stranger on the raft port: closed after {raft_took:.2f} s, want 2 s + sweep")
    check(client_data is not None and 4.5 <= client_took < 8,
          f"silent stranger on the client port: closed after {client_took:.2f} s, want 5 s")
    log(f"silent strangers closed after {raft_took:.1f} s (raft) and {client_took:.1f} s "
        f"(client)")
    c.wait_healthy(timeout_s=5)
    for i in range(1, c.size + 1):
        check(c.alive(i), f"node {i} died:\n{c.read_log(i)[-2000:]}")


def scenario_tls_wrong_ca(c):
    """Node 3's certificate comes from another CA (and it trusts only that CA): nodes 1 and
    2 still elect a leader and take writes; node 3 never joins, and both sides log why
    (node 3: the peers' certificates are not signed by its CA; nodes 1 and 2: a failed
    handshake from node 3). kvctl trusting the cluster's CA refuses node 3, and trusting
    the other CA refuses nodes 1 and 2: exit 2 at once, saying why, not a timeout. A node
    whose certificate its own --tls-ca did not sign does not start (exit 2)."""
    certs = tls_cluster(c)
    c.per_node_flags[3] = [f for f in c.node_flags]
    c.per_node_flags[3][c.per_node_flags[3].index("--tls-cert") + 1] = certs["other_node_cert"]
    c.per_node_flags[3][c.per_node_flags[3].index("--tls-key") + 1] = certs["other_node_key"]
    c.per_node_flags[3][c.per_node_flags[3].index("--tls-ca") + 1] = certs["other_ca"]
    c.start()
    majority = ",".join(c.endpoint(i) for i in (1, 2))
    c.wait_healthy(endpoints=majority)
    c.kvctl_ok("put", "k", "v", endpoints=majority)
    check(c.kvctl_ok("get", "k", endpoints=majority) == "v\n", "get k via nodes 1, 2")
    wait_until("node 3 to log that it does not trust its peers",
               lambda: re.search(r"peer [12]: TLS handshake with .* not signed by the CA we "
                                 r"trust", c.read_log(3)), 10)
    for i in (1, 2):
        wait_until(f"node {i} to log node 3's failed handshake",
                   lambda: re.search(r"warn .*TLS handshake from 127\.0\.0\.1:\d+ failed: "
                                     r"the other side's certificate did not verify",
                                     c.read_log(i)), 10)
    kvctl_fails_fast(c, ["--endpoints", c.endpoint(3), "--cacert", certs["ca"], "get", "k"],
                     "not signed by the CA we trust", "kvctl with the cluster's CA on node 3")
    kvctl_fails_fast(c, ["--endpoints", majority, "--cacert", certs["other_ca"], "put", "k", "x"],
                     "not signed by the CA we trust", "kvctl with the other CA on nodes 1, 2")
    c.client_flags = ["--cacert", certs["other_ca"]]
    rc, out, err = c.kvctl("--json", "status", endpoints=c.endpoint(3), timeout_ms=2000)
    check(rc == 0, f"status of node 3 with its own CA: rc {rc} {err!r}")
    st = json.loads(out)[0]
    check(st["role"] != "leader" and st["commit"] == 0,
          f"node 3 must be cut off from the cluster: {st}")
    # A node whose own certificate its --tls-ca did not sign cannot start: its peers would
    # refuse it in every handshake.
    data_dir = os.path.join(c.root, "mixed-data")
    r = subprocess.run([ARGS.kvnode, "--id", "1", "--data-dir", data_dir, "--client-addr",
                        "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--tls-cert",
                        certs["other_node_cert"], "--tls-key", certs["other_node_key"],
                        "--tls-ca", certs["ca"]], capture_output=True, timeout=30)
    err = r.stderr.decode(errors="replace")
    check(r.returncode == 2 and "does not chain to --tls-ca" in err and
          not os.path.exists(data_dir), f"kvnode with a certificate of another CA: "
          f"rc {r.returncode}, {err!r}")


def scenario_tls_expired(c):
    """Certificates out of their validity: kvnode refuses to start with an expired or a
    not-yet-valid one (exit 2 naming the file and the date; no data dir made); kvctl
    refuses an expired --cert at once; a server presenting an expired certificate (a
    stand-in: kvnode would not start with one) is refused by kvctl, which says the
    certificate has expired. With --client-cert-auth: a client presenting an expired
    certificate is refused and the node logs it, kvctl without a certificate is told it
    needs one, and kvctl with a good one is served."""
    certs = tls_cluster(c)
    for which, want in (("expired", "expired on 2020-01-02 00:00:00 UTC"),
                        ("future", "is not valid until 2099-01-01 00:00:00 UTC")):
        data_dir = os.path.join(c.root, f"{which}-data")
        flags = [f for f in c.node_flags]
        flags[flags.index("--tls-cert") + 1] = certs[f"{which}_cert"]
        flags[flags.index("--tls-key") + 1] = certs[f"{which}_key"]
        r = subprocess.run([ARGS.kvnode, "--id", "1", "--data-dir", data_dir,
                            "--client-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"] + flags,
                           capture_output=True, timeout=30)
        err = r.stderr.decode(errors="replace")
        check(r.returncode == 2 and want in err and certs[f"{which}_cert"] in err,
              f"kvnode with the {which} certificate: rc {r.returncode}, {err!r}")
        check(not os.path.exists(data_dir), f"kvnode with the {which} certificate made {data_dir}")
        log(f"kvnode with the {which} certificate: {err.strip().splitlines()[-1]}")

    kvctl_fails_fast(c, ["--endpoints", "127.0.0.1:1", "--cacert", certs["ca"], "--cert",
                         certs["expired_cert"], "--key", certs["expired_key"], "get", "k"],
                     "expired on 2020-01-02", "kvctl with an expired --cert")
    port, stop = tls_server(certs["expired_cert"], certs["expired_key"])
    try:
        kvctl_fails_fast(c, ["--endpoints", f"127.0.0.1:{port}", "--cacert", certs["ca"],
                             "get", "k"], "certificate has expired",
                         "kvctl against a server with an expired certificate")
    finally:
        stop()

    c.node_flags.append("--client-cert-auth")
    c.client_flags += ["--cert", certs["client_cert"], "--key", certs["client_key"]]
    c.start()
    c.wait_healthy()
    c.kvctl_ok("put", "k", "v")
    check(c.kvctl_ok("get", "k") == "v\n", "get with a client certificate")
    # One refusal a second is logged per port: one case per port, or a pause between.
    kvctl_fails_fast(c, ["--endpoints", c.endpoint(1), "--cacert", certs["ca"], "get", "k"],
                     "requires a client certificate", "kvctl without a client certificate")
    wait_until("node 1 to log the client without a certificate",
               lambda: "the client presented no certificate" in c.read_log(1), 5)
    err = tls_client_handshake(c.raft_ports[1], certs["ca"], certs["expired_cert"],
                               certs["expired_key"])
    check(err is not None, "the raft port kept a peer with an expired certificate")
    wait_until("node 1 to log the expired peer certificate",
               lambda: re.search(r"warn .*TLS handshake from 127\.0\.0\.1:\d+ failed: the "
                                 r"other side's certificate did not verify", c.read_log(1)), 5)
    time.sleep(1.1)
    err = tls_client_handshake(c.client_ports[1], certs["ca"], certs["expired_cert"],
                               certs["expired_key"])
    check(err is not None, "the client port kept a client with an expired certificate")
    kvctl_fails_fast(c, ["--endpoints", c.endpoints(), "--cacert", certs["ca"],
                         "--cert", certs["other_node_cert"], "--key", certs["other_node_key"],
                         "get", "k"],
                     # The alert, if kvctl reads it before the end of the session.
                     r"refused our certificate|does not trust our certificate \(unknown CA\)",
                     "kvctl with a client certificate of another CA")
    check(c.read_log(1).count("certificate did not verify") >= 2,
          "node 1 did not log both refused certificates")
    c.wait_healthy(timeout_s=5)



# ---------------------------------------------------------------- membership

MEMBERSHIP_GAP_LIMIT_S = 3.0  # "about one election", with slack for ASan on 2 busy cores
REMOVE_LEADER_GAP_LIMIT_S = 0.9  # a hand-over, no election (measured: 25-40 ms)


def longest_ack_gap(acks_path, since, until):
    """The longest time (s) in [since, until] with no write acknowledged, and when."""
    times = sorted(a[1] for a in read_acks(acks_path)[0] if since <= a[1] <= until)
    points = [since] + times + [until]
    gap, at = 0.0, since
    for a, b in zip(points, points[1:]):
        if b - a > gap:
            gap, at = b - a, a
    return gap, at


def voters_learners(members):
    voters = sorted(i for i, m in members.items() if m["role"] == "voter")
    learners = sorted(i for i, m in members.items() if m["role"] == "learner")
    return voters, learners


def wait_caught_up(c, i, timeout_s=30):
    """Until the leader sees learner i within a few entries of its own log."""
    def caught_up():
        try:
            m = c.members()
        except TestFailure:
            return False
        lead = next((x for x in m.values() if x["leader"]), None)
        return i in m and lead is not None and m[i]["match"] + 32 >= lead["match"]
    wait_until(f"node {i} to catch up with the leader", caught_up, timeout_s, 0.2)


def join_and_promote(c, i, join_endpoints):
    """Starts node i with --join, waits for its catch-up, promotes it."""
    c.add_ports(i)
    c.start_joiner(i, join_endpoints)
    wait_until(f"node {i} to be a learner",
               lambda: c.members().get(i, {}).get("role") == "learner", 20, 0.2)
    wait_caught_up(c, i)
    out = c.kvctl_ok("member", "promote", str(i), timeout_ms=20000)
    check(out == f"promoted node {i} to voter\n", f"promote {i}: {out!r}")
    check(c.members()[i]["role"] == "voter", f"node {i} is not a voter after promote")


def remove_member(c, i):
    out = c.kvctl_ok("member", "remove", str(i), timeout_ms=10000)
    check(out == f"removed node {i}\n", f"remove {i}: {out!r}")
    check(i not in c.members(), f"node {i} still listed after its removal")


def start_under_load(c):
    """Starts the cluster and a steady write load (4 clients); returns once it runs."""
    c.start()
    c.wait_healthy()
    acks, stop = os.path.join(c.root, "acks.txt"), os.path.join(c.root, "stop")
    load = c.start_load(acks, stop, clients=4)
    wait_until("the load to get going", lambda: count_acks(acks) >= 200, 20)
    return load, acks, stop


def finish_load(c, load, acks, stop, since, what, limit_s=MEMBERSHIP_GAP_LIMIT_S):
    """Stops the load, prints and checks the longest unavailability since `since` (at
    most limit_s), and reads every acknowledged write back."""
    until = time.time()
    c.stop_load(load, stop)
    gap, at = longest_ack_gap(acks, since, until)
    log(f"LONGEST GAP ({what}): {gap * 1000:.0f} ms with no acknowledged write, from "
        f"{at - since:.2f} s into the {until - since:.1f} s of changes; "
        f"{count_acks(acks)} writes acknowledged in all")
    check(gap <= limit_s, f"{what}: writes stalled for {gap:.2f} s, over {limit_s} s")
    c.verify(acks)


def scenario_member_replace(c):
    """Under a steady write load: kill -9 node 3 and wipe its data, add node 4 as a
    learner with a fresh kvnode --join, promote it, remove node 3. No acknowledged write
    is lost; the longest stretch without an acknowledged write is printed and bounded."""
    load, acks, stop = start_under_load(c)
    since = time.time()
    log("killing node 3 (kill -9) and wiping its data dir")
    c.kill9(3)
    shutil.rmtree(c.data_dir(3))
    join_and_promote(c, 4, c.endpoints(without=(3,)))
    remove_member(c, 3)
    voters, learners = voters_learners(c.members())
    check(voters == [1, 2, 4] and learners == [], f"after the replacement: {voters} {learners}")
    wait_until("more writes after the changes",
               lambda: max((a[1] for a in read_acks(acks)[0]), default=0) > time.time() - 0.2,
               10)
    time.sleep(0.5)
    finish_load(c, load, acks, stop, since, "replace node 3 by node 4")
    # Node 4 serves what was written before it joined, from its own state.
    first = read_acks(acks)[0][0]
    wait_until("node 4 to serve a write from before it joined",
               lambda: c.stale_get(4, first[2]) == first[3], 10)
    statuses = {s["id"]: s for s in c.status(endpoints=c.endpoints(without=(3,)))
                if s.get("reachable")}
    check(sorted(statuses) == [1, 2, 4], f"status after the replacement: {statuses}")
    # Restarts take the configuration from the data dir: node 1 from its log (its
    # --cluster still names node 3), node 4 from its join file and log (asking nobody).
    for i in (1, 4):
        check(c.terminate(i) == 0, f"node {i} did not stop cleanly")
        if i == 4:
            c.start_joiner(4, "127.0.0.1:1")  # nobody there: it must not ask
        else:
            c.start_node(i)
        c.wait_healthy(endpoints=c.endpoints(without=(3,)))
        started = [l for l in c.read_log(i).splitlines() if "started: data dir" in l][-1]
        check("configuration voters=1,2,4 (from the data dir)" in started,
              f"node {i} restarted with: {started}")
        check("dialling node 3" not in since_start(c, i), f"node {i} dials removed node 3")
    c.kvctl_ok("put", "after", "restarts", endpoints=c.endpoints(without=(3,)))
    check(voters_learners(c.members(endpoints=c.endpoints(without=(3,))))[0] == [1, 2, 4],
          "members after the restarts")


def scenario_member_grow_shrink(c):
    """Under load: 3 -> 5 (node 4 by `kvctl member add` without --learner, which waits
    and promotes, while `kvnode --join` finds itself added; node 5 joins by itself and is
    promoted), then 5 -> 3 (remove 5, then 4). Then node 5 joins again with a new data
    dir: once removed, its id is free (the peers forgot its data dir's incarnation)."""
    load, acks, stop = start_under_load(c)
    since = time.time()
    c.add_ports(4)
    add = subprocess.Popen([ARGS.kvctl, "--endpoints", c.endpoints(without=(4,)), "member",
                            "add", "4", c.raft_addr(4), c.endpoint(4), "--timeout", "30000"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    c.others.append(add)
    wait_until("node 4 to be a learner",
               lambda: c.members().get(4, {}).get("role") == "learner", 10, 0.1)
    c.start_joiner(4, c.endpoint(2))
    out, err = add.communicate(timeout=60)
    check(add.returncode == 0 and out.decode() == "added node 4 as a voter\n",
          f"member add 4: rc {add.returncode} {out!r} {err!r}")
    join_and_promote(c, 5, c.endpoints(without=(4, 5)))
    voters, learners = voters_learners(c.members())
    check(voters == [1, 2, 3, 4, 5] and not learners, f"grown: {voters} {learners}")
    log("grown to 5 voters")
    for i in (5, 4):
        remove_member(c, i)
    voters, learners = voters_learners(c.members())
    check(voters == [1, 2, 3] and not learners, f"shrunk: {voters} {learners}")
    log("shrunk to 3 voters")
    time.sleep(0.5)
    finish_load(c, load, acks, stop, since, "3 -> 5 -> 3")
    for i in (4, 5):
        c.terminate(i)
    shutil.rmtree(c.data_dir(5))
    join_and_promote(c, 5, c.endpoints(without=(4, 5)))
    voters, learners = voters_learners(c.members())
    check(voters == [1, 2, 3, 5] and not learners, f"node 5 again: {voters} {learners}")
    check(c.alive(5), f"node 5 stopped:\n{c.read_log(5)[-2000:]}")
    log("node 5 joined again with a new data dir")


def scenario_member_remove_leader(c):
    """Remove the leader under load: another node leads and writes go on; the removed
    node, left running, disturbs nobody (no term changes afterwards)."""
    load, acks, stop = start_under_load(c)
    since = time.time()
    # Leader transfer first: to the follower with the highest id, through another node.
    first = c.leader()
    target = max(i for i in (1, 2, 3) if i != first)
    out = c.kvctl_ok("leader", "transfer", str(target), endpoints=c.endpoints(first=target),
                     timeout_ms=10000)
    check(out == f"node {target} is the leader\n", f"leader transfer {target}: {out!r}")
    check(c.leader() == target, f"after the transfer to {target}: leader {c.leader()}")
    log(f"leadership moved from node {first} to node {target}")
    old = c.leader()
    out = c.kvctl_ok("member", "remove", str(old), timeout_ms=10000)
    # The answer to the first attempt may be lost with the leader it removed: kvctl then
    # finds the member gone on its retry and says so.
    check(out.startswith(f"removed node {old}"), f"remove leader {old}: {out!r}")
    rest = c.endpoints(without=(old,))
    new = wait_until("a new leader", lambda: c.leader_among(rest), 10)
    check(new != old, f"node {old} still leads")
    voters, _ = voters_learners(c.members(endpoints=rest))
    check(old not in voters and len(voters) == 2, f"voters after removing {old}: {voters}")
    terms = {s["id"]: s["term"] for s in c.status(endpoints=rest)}
    log(f"node {old} removed; node {new} leads; terms {terms}; node {old} keeps running")
    time.sleep(3.0)
    later = {s["id"]: s["term"] for s in c.status(endpoints=rest)}
    check(later == terms, f"terms moved while the removed node ran: {terms} -> {later}")
    check(c.alive(old), f"the removed node {old} exited")
    removed = c.status(endpoints=c.endpoint(old))
    check(removed and removed[0]["role"] != "leader" and removed[0]["term"] <= later[new],
          f"the removed node's status: {removed}")
    log(f"removed node {old}: {removed[0]['role']}, term {removed[0]['term']}; "
        f"cluster terms unchanged {later}")
    # No election is needed (the removed leader hands over), and the requests it still
    # held are answered at once: well under the client's 1 s attempt timeout.
    finish_load(c, load, acks, stop, since, f"remove leader node {old}",
                limit_s=REMOVE_LEADER_GAP_LIMIT_S)


def kvctl_fails(c, want, *args, **kw):
    rc, out, err = c.kvctl(*args, **kw)
    check(rc == 2 and want in err, f"kvctl {' '.join(args)}: rc {rc}, stderr {err!r}, "
          f"wanted {want!r}")
    log(f"kvctl {' '.join(args)}: {err.strip()}")


def scenario_member_bad_input(c):
    """Each bad membership change fails with its exact error and changes nothing."""
    # A long election timeout: the leader keeps leading while its followers are stopped.
    c.node_flags = ["--election-timeout-ms", "1500", "--heartbeat-ms", "50"]
    c.start()
    c.wait_healthy(timeout_s=30)
    before = c.members()
    free = free_ports(4)
    raft2, client1 = c.raft_addr(2), c.endpoint(1)
    cases = [
        ("invalid: a member with this id already exists",
         ("member", "add", "2", f"127.0.0.1:{free[0]}", f"127.0.0.1:{free[1]}", "--learner")),
        ("invalid: the node id must be 1..7",
         ("member", "add", "9", f"127.0.0.1:{free[0]}", f"127.0.0.1:{free[1]}", "--learner")),
        ("invalid: no member has this id", ("member", "promote", "6")),
        ("invalid: no member has this id", ("member", "remove", "6")),
        ("invalid: the member is already a voter", ("member", "promote", "2")),
        (f"invalid: another member already uses this address: node 2 uses {raft2}",
         ("member", "add", "6", raft2, f"127.0.0.1:{free[1]}", "--learner")),
        (f"invalid: another member already uses this address: node 1 uses {client1}",
         ("member", "add", "6", f"127.0.0.1:{free[0]}", client1, "--learner")),
        ("invalid: raft address 'nohost' is not of the form HOST:PORT",
         ("member", "add", "6", "nohost", f"127.0.0.1:{free[1]}", "--learner")),
        ("invalid: client address '127.0.0.1:99999' is not of the form HOST:PORT",
         ("member", "add", "6", f"127.0.0.1:{free[0]}", "127.0.0.1:99999", "--learner")),
        ("invalid: cannot transfer leadership: no member has id 6", ("leader", "transfer", "6")),
        ("node id needs a number, got 'x'", ("member", "remove", "x")),
    ]
    for want, args in cases:
        kvctl_fails(c, want, *args)
        check(c.members() == before or _same_conf(c.members(), before),
              f"kvctl {' '.join(args)} changed the members: {c.members()}")
    # A second change while one is in progress: the followers stopped, the first change
    # cannot commit (its kvctl gives up, outcome unknown); the second is refused.
    leader = c.leader()
    followers = [i for i in (1, 2, 3) if i != leader]
    for i in followers:
        os.kill(c.procs[i].pid, signal.SIGSTOP)
    try:
        rc, out, err = c.kvctl("member", "add", "5", f"127.0.0.1:{free[2]}",
                               f"127.0.0.1:{free[3]}", "--learner",
                               endpoints=c.endpoint(leader), timeout_ms=300)
        check(rc == 2 and "outcome unknown" in err, f"the first change: rc {rc} {err!r}")
        kvctl_fails(c, "invalid: another membership change is in progress (not committed yet)",
                    "member", "add", "6", f"127.0.0.1:{free[0]}", f"127.0.0.1:{free[1]}",
                    "--learner", endpoints=c.endpoint(leader), timeout_ms=300)
    finally:
        for i in followers:
            os.kill(c.procs[i].pid, signal.SIGCONT)
    after = wait_until("the first change to commit", lambda: 5 in c.members() and c.members(), 10)
    check(sorted(after) == [1, 2, 3, 5] and after[5]["role"] == "learner",
          f"after the change race: {after}")
    # Promoting a learner that never ran: it lags, and stays a learner.
    kvctl_fails(c, "invalid: the learner has not caught up with the leader's log yet",
                "member", "promote", "5", timeout_ms=600)
    check(c.members()[5]["role"] == "learner", "a lagging learner was promoted")
    # Down to one voter, then the last one cannot go.
    for i in (5,) + tuple(followers):
        remove_member(c, i)
    kvctl_fails(c, "invalid: cannot remove the last voter", "member", "remove", str(leader),
                endpoints=c.endpoint(leader))
    voters, learners = voters_learners(c.members(endpoints=c.endpoint(leader)))
    check(voters == [leader] and not learners, f"after the last-voter refusal: {voters}")


def _same_conf(a, b):
    """The same members, roles and addresses (match indexes move)."""
    key = lambda m: {i: (x["role"], x["raftAddr"], x["clientAddr"]) for i, x in m.items()}
    return key(a) == key(b)


SCENARIOS = {
    "replication": scenario_replication,
    "failover": scenario_failover,
    "restart_catchup": scenario_restart_catchup,
    "restart_snapshot": scenario_restart_snapshot,
    "retry_once": scenario_retry_once,
    "whole_restart": scenario_whole_restart,
    "bad_input": scenario_bad_input,
    "wal_damage": scenario_wal_damage,
    "newest_record_damage": scenario_newest_record_damage,
    "snapshot_damage": scenario_snapshot_damage,
    "big_stdin_value": scenario_big_stdin_value,
    "datadir_lock": scenario_datadir_lock,
    "wiped_member": scenario_wiped_member,
    "raft_flood": scenario_raft_flood,
    "client_flood": scenario_client_flood,
    "client_idle": scenario_client_idle,
    "overload": scenario_overload,
    "backup_restore": scenario_backup_restore,
    "backup_refusals": scenario_backup_refusals,
    "metrics": scenario_metrics,
    "json_logs": scenario_json_logs,
    "any_node": scenario_any_node,
    "no_leader": scenario_no_leader,
    "flags_anywhere": scenario_flags_anywhere,
    "tls": scenario_tls,
    "tls_wrong_ca": scenario_tls_wrong_ca,
    "tls_expired": scenario_tls_expired,
    "member_replace": scenario_member_replace,
    "member_grow_shrink": scenario_member_grow_shrink,
    "member_remove_leader": scenario_member_remove_leader,
    "member_bad_input": scenario_member_bad_input,
}


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kvnode", required=True)
    p.add_argument("--kvctl", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    ARGS = p.parse_args()
    for tool in (ARGS.kvnode, ARGS.kvctl, ARGS.loadgen):
        if not os.access(tool, os.X_OK):
            print(f"cluster_test: {tool} is not executable", file=sys.stderr)
            return 2

    root = tempfile.mkdtemp(prefix=f"kvcluster-{ARGS.scenario}-")
    cluster = Cluster(root)
    # Also clean up when meson's timeout sends SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(TestFailure("SIGTERM")))
    ok = False
    started = time.monotonic()
    try:
        log(f"scenario {ARGS.scenario} in {root}")
        SCENARIOS[ARGS.scenario](cluster)
        ok = True
    except (TestFailure, subprocess.TimeoutExpired) as e:
        print(f"FAIL: {e}", file=sys.stderr)
    finally:
        cluster.kill_all()
        if not ok:
            for i in sorted(cluster.logs):
                print(f"---- node {i} log (tail)", file=sys.stderr)
                print(cluster.read_log(i)[-4000:], file=sys.stderr)
        if ARGS.keep or not ok and os.environ.get("KEEP_CLUSTER_DIRS"):
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    log(f"scenario {ARGS.scenario}: {'PASS' if ok else 'FAIL'} "
        f"in {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
