#!/usr/bin/env python3
"""The same seed must give the same trace, byte for byte; different seeds differ.
usage: determinism.py KVSIM SEED..."""
import hashlib, os, subprocess, sys, tempfile

kvsim, seeds = sys.argv[1], sys.argv[2:]
failed = 0
digests = {}
with tempfile.TemporaryDirectory() as tmp:
    for seed in seeds:
        runs = []
        for attempt in (1, 2):
            trace = os.path.join(tmp, f'{seed}.{attempt}.trace')
            history = os.path.join(tmp, f'{seed}.{attempt}.history')
            out = subprocess.run([kvsim, '--seed', seed, '--trace', trace, '--history', history],
                                 capture_output=True, text=True)
            with open(trace, 'rb') as f:
                t = f.read()
            with open(history, 'rb') as f:
                h = f.read()
            summary = [l for l in out.stdout.splitlines() if 'trace=' in l]
            runs.append((t, h, summary))
        same = runs[0] == runs[1]
        digest = hashlib.sha256(runs[0][0]).hexdigest()[:16]
        print(f'seed {seed}: trace {len(runs[0][0])} bytes sha256 {digest} '
              f'{"identical" if same else "DIFFERS"} across two runs')
        if not same or not runs[0][0]:
            failed += 1
        digests[seed] = digest
if len(set(digests.values())) != len(digests):
    print('different seeds produced the same trace')
    failed += 1
print(f'{len(seeds) - failed if failed <= len(seeds) else 0} passed, {failed} failed')
sys.exit(1 if failed else 0)
