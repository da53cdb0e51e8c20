#!/usr/bin/env python3
"""Replays every named regression seed in regressions.txt; each must pass.
usage: run_regressions.py KVSIM regressions.txt"""
import shlex, subprocess, sys

kvsim, listing = sys.argv[1], sys.argv[2]
passed = failed = 0
with open(listing) as f:
    for line in f:
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        name, args, why = [p.strip() for p in line.split('|', 2)]
        r = subprocess.run([kvsim] + shlex.split(args) + ['--quiet'], capture_output=True, text=True)
        ok = r.returncode == 0
        print(f'{"ok  " if ok else "FAIL"} {name}: kvsim {args}  ({why})')
        if not ok:
            print(r.stdout + r.stderr)
            failed += 1
        else:
            passed += 1
print(f'{passed} passed, {failed} failed')
sys.exit(1 if failed else 0)
