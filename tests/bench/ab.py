#!/usr/bin/env python3
"""A/B: the issue-10 kvbench shapes against fresh local 3-node clusters, alternating binaries.
usage: ab.py ROUNDS NAME=BINDIR [NAME=BINDIR ...]  (BINDIR holds kvnode, kvctl, kvbench)"""
import json, os, socket, subprocess, sys, tempfile, time, signal

def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks: s.close()
    return ports

SHAPES = [("put_1_1", "put", 1, 1, 5000, []),
          ("put_64_8", "put", 64, 8, 60000, []),
          ("put_256_16", "put", 256, 16, 80000, []),
          ("get_64_8", "get", 64, 8, 60000, ["--key-space", "10000"]),
          ("stale_64_8", "get", 64, 8, 60000, ["--key-space", "10000", "--stale"])]

def run_side(bindir, work):
    p = free_ports(6)
    cluster = ",".join(f"{i}=127.0.0.1:{p[3+i-1]}" for i in (1, 2, 3))
    eps = ",".join(f"127.0.0.1:{p[i]}" for i in range(3))
    procs = []
    for i in (1, 2, 3):
        log = open(os.path.join(work, f"node{i}.log"), "w")
        procs.append(subprocess.Popen([f"{bindir}/kvnode", "--id", str(i), "--data-dir", os.path.join(work, f"n{i}"),
                                       "--client-addr", f"127.0.0.1:{p[i-1]}", "--raft-addr", f"127.0.0.1:{p[3+i-1]}",
                                       "--cluster", cluster], stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        deadline = time.time() + 20
        while subprocess.run([f"{bindir}/kvctl", "--endpoints", eps, "--timeout", "1000", "health"],
                             capture_output=True).returncode != 0:
            if time.time() > deadline: raise SystemExit("no healthy cluster")
            time.sleep(0.1)
        out = {}
        for name, mode, c, n, total, extra in SHAPES:
            cmd = [f"{bindir}/kvbench", "--endpoints", eps, "--clients", str(c), "--conns", str(n), "--total", str(total),
                   "--key-size", "8", "--val-size", "256"] + extra + [mode, "--json"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            out[name] = json.loads(r.stdout.strip().splitlines()[-1])
        return out
    finally:
        for pr in procs: pr.send_signal(signal.SIGTERM)
        for pr in procs:
            try: pr.wait(10)
            except subprocess.TimeoutExpired: os.killpg(pr.pid, signal.SIGKILL); pr.wait()

def main():
    rounds = int(sys.argv[1])
    sides = [a.split("=", 1) for a in sys.argv[2:]]
    results = {n: [] for n, _ in sides}
    for r in range(rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for name, bindir in order:
            with tempfile.TemporaryDirectory(prefix="ab-") as work:
                load = os.getloadavg()[0]
                res = run_side(bindir, work)
                results[name].append(res)
                print(f"round {r+1} {name} (load {load:.1f}): " + ", ".join(
                    f"{k} {v['rps']:.0f}/s p50 {v['latency_ms']['p50']:.2f} p99 {v['latency_ms']['p99']:.2f} err {v['errors']}"
                    for k, v in res.items()), flush=True)
    json.dump(results, open(os.environ.get("AB_OUT", "ab-results.json"), "w"))
    print("\nmean over rounds:")
    for name, _ in sides:
        row = []
        for s in [x[0] for x in SHAPES]:
            mean = lambda f: sum(f(x[s]) for x in results[name]) / len(results[name])
            row.append(f"{s} {mean(lambda v: v['rps']):.0f}/s p50 {mean(lambda v: v['latency_ms']['p50']):.2f}"
                       f" p99 {mean(lambda v: v['latency_ms']['p99']):.2f}")
        print(name + ": " + "; ".join(row))

main()
