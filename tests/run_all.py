#!/usr/bin/env python3
"""Runs every test of a build directory through `meson test` and prints one
closing line 'N passed, N failed' counting individual test cases (gtest cases
from the JUnit log; other tests count once each)."""
import subprocess, sys, os
import xml.etree.ElementTree as ET

builddir = sys.argv[1] if len(sys.argv) > 1 else 'build-asan'
extra = sys.argv[2:]
env = dict(os.environ)
# quarantine_size_mb=64 (ASan's default is 256): a freed block stays poisoned until 64 MB
# more has been freed, so a use after free is still caught unless it comes that much
# later. Every short process (kvctl, regression seeds, each swarm worker) faults in and,
# at exit, leak-scans a full quarantine: 64 MB cut the regression seeds' CPU by a quarter
# (docs/TESTING.md, "Build time").
env.setdefault('ASAN_OPTIONS', 'detect_leaks=1:abort_on_error=1:quarantine_size_mb=64')
env.setdefault('UBSAN_OPTIONS', 'print_stacktrace=1:halt_on_error=1')
rc = subprocess.call(['meson', 'test', '-C', builddir, '--print-errorlogs',
                      '--num-processes', str(os.cpu_count() or 2)] + extra, env=env)

passed = failed = skipped = 0
# With --wrapper W (e.g. a CPU-time logger), meson names its logs testlog-W.junit.xml.
logs = os.path.join(builddir, 'meson-logs')
junit = os.path.join(logs, 'testlog.junit.xml')
for i, a in enumerate(extra):
    w = a.split('=', 1)[1] if a.startswith('--wrapper=') else (
        extra[i + 1] if a == '--wrapper' and i + 1 < len(extra) else None)
    if w:
        junit = os.path.join(logs, f'testlog-{os.path.basename(w.split()[0])}.junit.xml')
try:
    root = ET.parse(junit).getroot()
    for suite in root.iter('testsuite'):
        for case in suite.iter('testcase'):
            if case.find('failure') is not None or case.find('error') is not None:
                failed += 1
            elif case.find('skipped') is not None:
                skipped += 1
            else:
                passed += 1
except (OSError, ET.ParseError) as e:
    print(f'run_all: cannot read {junit}: {e}', file=sys.stderr)
    failed += 1
if rc != 0 and failed == 0:
    failed = 1  # a harness-level failure must never read as green
line = f'{passed} passed, {failed} failed'
if skipped:
    line += f', {skipped} skipped'
print(line)
sys.exit(0 if failed == 0 and rc == 0 else 1)
