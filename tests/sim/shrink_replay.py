#!/usr/bin/env python3
"""kvsim --shrink (scenario, then schedule) and --replay FILE.

usage: shrink_replay.py KVSIM

A failure that depends on exactly two fault events (--test-fail-after-faults 3,7: the
run fails once events 3 and 7 were both injected) must shrink to a replay file keeping
just those two events and no operation; replaying it twice fails the same way with the
same trace hash; without the hook it passes (and says it did not reproduce); a file of
another format version, or with an index beyond its count, is refused with exit 2."""
import os, re, subprocess, sys, tempfile


def fail(msg):
    print(f'shrink_replay: FAIL: {msg}')
    sys.exit(1)


def run(args, timeout=600):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    kvsim = sys.argv[1]
    hook = ['--test-fail-after-faults', '3,7']
    with tempfile.TemporaryDirectory(prefix='kvr-shrink-') as d:
        replay = os.path.join(d, 'run.replay')
        rc, out = run([kvsim, '--seed', '3', '--shrink', '--replay-out', replay] + hook)
        if rc != 1:
            fail(f'the injected failure did not fail the run (exit {rc}):\n{out}')
        m = re.search(r'schedule shrunk in (\d+) runs: fault events (\d+) -> (\d+), '
                      r'operations (\d+) -> (\d+)', out)
        if not m:
            fail(f'no schedule shrink line:\n{out}')
        print(m.group(0))
        text = open(replay).read()
        faults = re.search(r'^faults (\d+)(.*)$', text, re.M)
        ops = re.search(r'^ops (\d+)(.*)$', text, re.M)
        if not faults or faults.group(2).split() != ['3', '7']:
            fail(f'the replay file should keep fault events 3 and 7 only:\n{text}')
        if not ops or ops.group(2).split():
            fail(f'the replay file should keep no operation:\n{text}')
        hashes = set()
        for _ in range(2):
            rc, out = run([kvsim, '--replay', replay] + hook)
            h = re.search(r'trace=(\w+)', out)
            if rc != 1 or 'VIOLATION injected' not in out or not h:
                fail(f'the replay did not reproduce the failure (exit {rc}):\n{out}')
            hashes.add(h.group(1))
        if len(hashes) != 1:
            fail(f'two replays of one file differ: {hashes}')
        page = os.path.join(d, 'run.html')
        rc, out = run([kvsim, '--replay', replay, '--timeline', page] + hook)
        if rc != 1 or '"property":"injected"' not in open(page).read():
            fail('--replay --timeline did not draw the violation')
        rc, out = run([kvsim, '--replay', replay])
        if rc != 0 or 'did not reproduce injected' not in out:
            fail(f'without the hook the replay should pass and say so (exit {rc}):\n{out}')
        for bad, why in ((text.replace('kvsim-replay 1', 'kvsim-replay 0'),
                          'replay format 0 is not the one this kvsim reads'),
                         (re.sub(r'^faults (\d+) .*$', r'faults \1 999999', text, flags=re.M),
                          'is not an index below'),
                         (text.replace('seed 3\n', ''), "no 'seed' line")):
            with open(replay, 'w') as f:
                f.write(bad)
            rc, out = run([kvsim, '--replay', replay])
            if rc != 2 or why not in out:
                fail(f'a bad replay file should be refused with "{why}" (exit {rc}):\n{out}')
    print('shrink_replay: ok')


main()
