#!/usr/bin/env python3
"""Mutation check of the simulator: removes one Raft rule at a time from a copy of the
tree, builds kvsim there and counts the seeds that catch it. A rule the swarm never
catches is a gap in the nemesis (the targeted gtests in tests/raft catch them all).

usage: python3 tests/mutation/run.py [--seeds 1..300] [--only NAME,...]
Not part of ./dev test: each mutation is a rebuild and a few hundred seeds."""
import argparse, os, shutil, subprocess, sys, tempfile

# name -> (text in core/raft.cc, replacement)
MUTATIONS = {
    'up_to_date_check': ("  if (canVote && isUpToDate(m.index, m.logTerm)) {", "  if (canVote) {"),
    'figure8_commit_rule': ("  if (q <= commit_ || termAt(q) != term_) return;", "  if (q <= commit_) return;"),
    'vote_before_persist': ("    case MsgType::VoteResp:\n", ""),
    'ack_before_persist': ("    case MsgType::AppendResp:\n", ""),
    'leader_counts_unsynced_self': ("  progress_[config_.id].match = stable_;",
                                    "  progress_[config_.id].match = lastIndex();"),
    'read_without_quorum': ("    if (readRounds_[i].acks.size() >= quorum()) confirmed = i + 1;",
                            "    confirmed = i + 1;"),
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seeds', default='1..300')
    p.add_argument('--only', default='')
    args = p.parse_args()
    top = subprocess.run(['git', 'rev-parse', '--show-toplevel'], capture_output=True,
                         text=True, check=True).stdout.strip()
    names = [n for n in MUTATIONS if not args.only or n in args.only.split(',')]
    with tempfile.TemporaryDirectory(prefix='kvmut-') as tmp:
        src = os.path.join(tmp, 'src')
        shutil.copytree(top, src, ignore=shutil.ignore_patterns('build*', '.git', 'data'))
        build = os.path.join(tmp, 'b')
        subprocess.run(['meson', 'setup', build, src, '--buildtype=debugoptimized'],
                       check=True, capture_output=True)
        raft = os.path.join(src, 'core', 'raft.cc')
        original = open(raft).read()
        caught = 0
        for name in names:
            old, new = MUTATIONS[name]
            if old not in original:
                print(f'{name}: the code it mutates is gone; update this script')
                return 2
            open(raft, 'w').write(original.replace(old, new, 1))
            subprocess.run(['ninja', '-C', build, 'bin/kvsim'], check=True, capture_output=True)
            r = subprocess.run([os.path.join(build, 'bin', 'kvsim'), '--seeds', args.seeds, '--quiet'],
                               capture_output=True, text=True)
            hits = [l for l in r.stderr.splitlines() if l.startswith('VIOLATION')]
            caught += bool(hits)
            first = hits[0][:110] if hits else ''
            print(f'{name:30} {len(hits):4} violating seeds  {first}', flush=True)
        open(raft, 'w').write(original)
        print(f'{caught} of {len(names)} mutations caught by seeds {args.seeds}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
