#!/usr/bin/env python3
"""The kvsim timeline page (--timeline FILE.html): its data matches the run, and with
--browser it renders in headless Chromium.

usage: timeline_page.py KVSIM [--browser] [--seed N]

Without --browser: runs one seed with --timeline and --history and checks the page's
embedded data against the run: one lane per node and client, every node's spans cover
the run without gaps or overlaps, every history operation is on the page, nothing is
fetched from anywhere, and the run's trace hash is the same with and without the page.
With --browser: opens the page in headless Chromium (Debian's `chromium`, installed by
./dev test), counts the lanes the script drew in the DOM, and takes a screenshot that
must be a real picture (dimensions and size of the PNG)."""
import json, os, re, shutil, struct, subprocess, sys, tempfile


def fail(msg):
    print(f'timeline_page: FAIL: {msg}')
    sys.exit(1)


def page_data(html):
    m = re.search(r'const D = (\{.*?\});\nconst LANE', html, re.S)
    if not m:
        fail('no data object in the page')
    return json.loads(m.group(1))


def run(kvsim, seed, out):
    page, hist = os.path.join(out, 'run.html'), os.path.join(out, 'run.jsonl')
    r = subprocess.run([kvsim, '--seed', str(seed), '--timeline', page, '--history', hist],
                       capture_output=True, text=True, timeout=300)
    plain = subprocess.run([kvsim, '--seed', str(seed)], capture_output=True, text=True,
                           timeout=300)
    h1 = re.search(r'trace_hash=(\w+)', r.stdout + r.stderr)
    h2 = re.search(r'trace_hash=(\w+)', plain.stdout + plain.stderr)
    if not h1 or not h2 or h1.group(1) != h2.group(1):
        fail(f'the page changed the run: {h1 and h1.group(1)} vs {h2 and h2.group(1)}')
    return page, hist, r.returncode


def check_data(page, hist, failed):
    html = open(page, encoding='utf-8').read()
    for pattern in (r'\bsrc\s*=', r'href\s*=\s*"(?!#)', r'@import', r'url\(', r'fetch\(',
                    r'XMLHttpRequest'):
        if re.search(pattern, html):
            fail(f'the page would fetch something: {pattern}')
    d = page_data(html)
    m = re.search(r'nodes=(\d+)', d['title'])
    spares = re.search(r'spares=(\d+)', d['title'])  # membership: a lane per spare too
    lanes = int(m.group(1)) + (int(spares.group(1)) if spares else 0) if m else -1
    if lanes != d['nodes']:
        fail(f"title {d['title']!r} does not match nodes={d['nodes']}")
    ops = [json.loads(line) for line in open(hist) if line.strip()]
    if len(ops) != len(d['ops']):
        fail(f"{len(d['ops'])} operations on the page, {len(ops)} in the history")
    for i, (op, row) in enumerate(zip(ops, d['ops'])):
        if op['client'] != row[0] or op['invoke_ns'] != row[1] or op['key'] != row[5]:
            fail(f'operation #{i} differs: {op} vs {row}')
    clients = max(op['client'] for op in ops)
    if d['clients'] != clients:
        fail(f"{d['clients']} client lanes for {clients} clients")
    for n in range(1, d['nodes'] + 1):
        spans = sorted((s for s in d['spans'] if s[0] == n), key=lambda s: s[1])
        if not spans or spans[0][1] != 0 or spans[-1][2] != d['end']:
            fail(f'node {n}: spans do not cover 0..{d["end"]}')
        for a, b in zip(spans, spans[1:]):
            if a[2] != b[1]:
                fail(f'node {n}: gap or overlap between {a} and {b}')
        if not any(s[3] in ('follower', 'leader') for s in spans):
            fail(f'node {n}: never up')
    if failed != (d['violation'] is not None):
        fail(f"exit status says failed={failed}, page says violation={d['violation']}")
    return d


def png_size(path):
    with open(path, 'rb') as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b'\x89PNG\r\n\x1a\n':
        fail('the screenshot is not a PNG')
    return struct.unpack('>II', head[16:24])


def check_browser(page, d, out):
    browser = shutil.which('chromium') or shutil.which('chromium-browser')
    if not browser:
        fail('no chromium on PATH (./dev test installs Debian\'s chromium package)')
    base = [browser, '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
            '--no-first-run', f'--user-data-dir={os.path.join(out, "profile")}']
    url = 'file://' + os.path.abspath(page)
    dom = subprocess.run(base + ['--dump-dom', url], capture_output=True, text=True,
                         timeout=120).stdout
    lanes = re.findall(r'<g class="lane" data-lane="(\w+)"', dom)
    want = 2 + d['nodes'] + d['clients']
    if len(lanes) != want:
        fail(f'{len(lanes)} lanes drawn in the DOM, expected {want}')
    if d['violation'] and 'id="violation"' not in dom:
        fail('the violation is not marked')
    shot = os.path.join(out, 'shot.png')
    subprocess.run(base + [f'--screenshot={shot}', '--window-size=1280,800', url],
                   capture_output=True, timeout=120)
    if not os.path.exists(shot):
        fail('no screenshot')
    w, h = png_size(shot)
    size = os.path.getsize(shot)
    # A blank page compresses to a few KB; drawn lanes do not.
    if (w, h) != (1280, 800) or size < 20_000:
        fail(f'screenshot {w}x{h}, {size} bytes: nothing drawn?')
    print(f'browser: {len(lanes)} lanes in the DOM, screenshot {w}x{h} {size} bytes')


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        sys.exit(2)
    kvsim, browser = args[0], '--browser' in args
    seed = int(args[args.index('--seed') + 1]) if '--seed' in args else 3
    out = tempfile.mkdtemp(prefix='kvr-timeline-')
    try:
        page, hist, rc = run(kvsim, seed, out)
        d = check_data(page, hist, rc != 0)
        print(f"page: {d['nodes']} nodes, {d['clients']} clients, {len(d['spans'])} spans, "
              f"{len(d['cuts'])} cuts, {len(d['marks'])} fault marks, {len(d['ops'])} ops")
        if browser:
            check_browser(page, d, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print('timeline_page: ok')


main()
