#!/usr/bin/env python3
"""kvsim --jobs and --merge must not change what a seed range reports.

usage: jobs.py KVSIM [A..B [KVSIM-FLAG...]]

The flags after the range go to every kvsim run but --merge (./dev test passes --ops 100:
what is compared is the plumbing, not the seeds' coverage, so short seeds do).

- the range run with --jobs 1, 2 and 3 prints the same stdout and stderr lines and the
  same --json object, except for wall-clock figures; with failures injected on some
  seeds (--test-fail-seeds) so that violation lines, failure counts and first_failure
  are compared too;
- a worker that dies (--test-crash-seed) fails only its seed, with property "crash",
  and every other seed still runs;
- shards of the range, run separately and merged with --merge (in any order), give the
  one-run summary;
- --merge refuses overlapping ranges, a gap, a file that is not a summary and shards
  run with different flags."""
import json, os, re, subprocess, sys, tempfile

kvsim = sys.argv[1]
first, last = (int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else '1..20').split('..'))
extra = sys.argv[3:]
span = last - first + 1
# Failures injected on a few seeds spread over the range, the last one included.
fail_seeds = sorted({first + span // 8, first + span // 2, first + span // 2 + 1, last})
inject = ['--test-fail-seeds', ','.join(map(str, fail_seeds))]
WALL = ('wall_seconds', 'events_per_second', 'seeds_per_minute', 'acceleration')
failed = 0


def check(ok, what):
    global failed
    print(f'{"ok  " if ok else "FAIL"} {what}', flush=True)
    if not ok:
        failed += 1
    return ok


def run(*args, expect=None):
    if args[0] != '--merge':
        args = (*args, *extra)
    r = subprocess.run([kvsim, *args], capture_output=True, text=True, timeout=600)
    if expect is not None and r.returncode != expect:
        print(f'kvsim {" ".join(args)}: exit {r.returncode}, expected {expect}\n{r.stderr[-2000:]}')
    return r


def summary(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def without_wall(s):
    return {k: v for k, v in s.items() if k not in WALL}


def stable_lines(text):
    """Lines with the wall-clock figures masked: the totals line and progress lines."""
    text = text.replace('\r', '\n').replace('VIOLATION', '\nVIOLATION')
    text = re.sub(r'(events_per_s|seeds_per_min|accel)=[0-9.]+', r'\1=*', text)
    text = re.sub(r'(runs, \d+ failed), [0-9.]+s', r'\1, *s', text)
    text = re.sub(r'"(%s)":[0-9.]+' % '|'.join(WALL), r'"\1":*', text)
    return [l for l in text.split('\n') if l]


seeds = f'{first}..{last}'
runs = {}
for jobs in (1, 2, 3):
    r = run('--seeds', seeds, '--json', '--jobs', str(jobs), *inject, expect=1)
    runs[jobs] = (r, summary(r.stdout))
one, one_json = runs[1]
check(one_json['runs'] == span and one_json['failures'] == len(fail_seeds)
      and one_json['first_failure'] == f'injected seed {fail_seeds[0]}'
      and one_json['seeds_from'] == first and one_json['seeds_to'] == last,
      f'--jobs 1: {span} runs, {len(fail_seeds)} injected failures, first_failure, seed range')
check(len(re.findall('VIOLATION', one.stderr)) == len(fail_seeds),
      '--jobs 1: one VIOLATION line per injected failure')
for jobs in (2, 3):
    r, s = runs[jobs]
    check(without_wall(s) == without_wall(one_json),
          f'--jobs {jobs}: same JSON as --jobs 1 (trace_hash {s["trace_hash"]}, '
          f'events {s["events"]}) apart from {", ".join(WALL)}')
    check(stable_lines(r.stdout) == stable_lines(one.stdout), f'--jobs {jobs}: same stdout lines')
    check(stable_lines(r.stderr) == stable_lines(one.stderr),
          f'--jobs {jobs}: same stderr lines (violations and progress, in seed order)')
q = run('--seeds', seeds, '--json', '--quiet', '--jobs', '2', *inject, expect=1)
check(without_wall(summary(q.stdout)) == without_wall(one_json)
      and stable_lines(q.stderr) == [l for l in stable_lines(one.stderr) if 'runs, ' not in l],
      '--jobs 2 --quiet: same summary, violations only')

# A worker that dies fails its seed and nothing else.
crash_seed = first + span // 4
r = run('--seeds', seeds, '--json', '--jobs', '2', '--test-crash-seed', str(crash_seed), *inject,
        expect=1)
s = summary(r.stdout)
violations = re.findall(r'VIOLATION (\S+) at event \d+ \(seed (\d+)', r.stderr)
expected = sorted([('injected', str(x)) for x in fail_seeds] + [('crash', str(crash_seed))],
                  key=lambda v: int(v[1]))
check(s['runs'] == span and s['failures'] == len(fail_seeds) + 1 and violations == expected,
      f'a worker killed on seed {crash_seed}: that seed fails as "crash", the others all run')

# Shards merged equal the one run, whatever order the files come in.
with tempfile.TemporaryDirectory() as tmp:
    cuts = [first, first + span // 3, first + 2 * span // 3, last + 1]
    files = []
    for k in range(3):
        path = os.path.join(tmp, f'shard-{k}.json')
        r = run('--seeds', f'{cuts[k]}..{cuts[k + 1] - 1}', '--json', '--quiet',
                '--jobs', str(1 + k % 2), *inject)
        with open(path, 'w') as f:
            # shard 0: the whole output; the others: only the summary object
            f.write(r.stdout if k == 0 else r.stdout.strip().splitlines()[-1] + '\n')
        files.append(path)
    m = run('--merge', files[2], files[0], files[1], expect=1)
    merged = summary(m.stdout)
    check(without_wall(merged) == without_wall(one_json),
          f'--merge of 3 shards (given out of order) = the one-run summary')
    check(stable_lines(m.stdout)[:-1] == stable_lines(one.stdout)[:-1],
          '--merge prints the same totals and faults lines')
    again = os.path.join(tmp, 'merged.txt')
    with open(again, 'w') as f:
        f.write(m.stdout)
    pretty = os.path.join(tmp, 'pretty.json')
    with open(pretty, 'w') as f:
        json.dump(merged, f, indent=2)
    check(without_wall(summary(run('--merge', pretty, expect=1).stdout)) == without_wall(one_json),
          '--merge reads a pretty-printed summary')

    def refused(args, needle, what):
        r = run('--merge', *args)
        check(r.returncode == 2 and needle in r.stderr, f'--merge refuses {what}: {r.stderr.strip()}')

    refused([files[0], files[1], again], 'overlap', 'overlapping seed ranges')
    refused([files[0], files[2]], 'missing', 'a gap between shards')
    notjson = os.path.join(tmp, 'not.json')
    with open(notjson, 'w') as f:
        f.write('{"runs": 3, "failures": 0}\n')
    refused([notjson], 'not a kvsim summary', 'a JSON object that is not a summary')
    refused([os.path.join(os.path.dirname(os.path.abspath(__file__)), 'regressions.txt')],
            'not a kvsim summary', 'a file that is not JSON')
    pinned = os.path.join(tmp, 'pinned.json')
    with open(pinned, 'w') as f:
        f.write(run('--seeds', f'{last + 1}..{last + 2}', '--json', '--quiet', '--nodes', '3').stdout)
    refused([again, pinned], 'flags', 'shards run with different flags')

print(f'{(1 if not failed else 0)} passed, {1 if failed else 0} failed ({failed} checks failed)')
sys.exit(1 if failed else 0)
