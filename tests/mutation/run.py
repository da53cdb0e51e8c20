#!/usr/bin/env python3
"""Mutation score of the simulator: plants one bug at a time in a copy of the tree,
rebuilds kvsim there and counts the seeds whose run reports a violation. A mutant is
caught when at least --min-hits seeds catch it; one the swarm never catches is a gap in
the nemesis or the checkers.

usage: python3 tests/mutation/run.py [--seeds 1..300] [--only NAME,...] [--list]
           [--timeout SEC] [--min-hits 3] [--jobs N] [--markdown FILE] [--require-all]
           [--shrink-check [--max-schedule 50]]
       ./dev mutants [the same arguments]

Not part of ./dev test: each mutant is a rebuild and a few hundred seeds. The working
tree is copied as it is (uncommitted changes included; build*/, .git and data/ left
out), built once unmutated, and the unmutated kvsim runs the seeds first: a seed that
fails without any mutation does not count for a mutant. Exit status 0 unless the
script itself fails (a measurement, not a test); --require-all exits 1 when a mutant
is not caught."""
import argparse, collections, os, re, shlex, shutil, signal, subprocess, sys, tempfile, time

Mutation = collections.namedtuple('Mutation', 'name file bug old new')


def M(name, file, bug, old, new):
    return Mutation(name, file, bug, old, new)


def replacements(m):
    """(old, new) pairs: one, or several for a mutant that removes two rules together
    (old and new then being tuples of the same length)."""
    if isinstance(m.old, tuple):
        assert isinstance(m.new, tuple) and len(m.old) == len(m.new), m.name
        return list(zip(m.old, m.new))
    return [(m.old, m.new)]


# One mutant each: name and file, the class of bug it plants (one line), the exact text
# to replace (it must occur exactly once in the file), and its replacement.
MUTATIONS = [
    M('up_to_date_check', 'core/raft.cc',
      'vote granted without the up-to-date log check (election restriction, §5.4.1)',
      '  if (canVote && upToDate) {',
      '  if (canVote) {'),
    M('figure8_commit_rule', 'core/raft.cc',
      'leader commits an older-term entry by counting replicas (Figure 8, §5.4.2)',
      '  if (q <= commit_ || termAt(q) != term_) return;',
      '  if (q <= commit_) return;'),
    M('figure8_any_term', 'core/raft.cc',
      'leader commits any entry of its term or earlier by counting (Figure 8 variant)',
      '  if (q <= commit_ || termAt(q) != term_) return;',
      '  if (q <= commit_ || termAt(q) > term_) return;'),
    M('vote_before_persist', 'core/raft.cc',
      'vote sent before the vote is durable (persistence rule)',
      '    case MsgType::VoteResp:\n    case MsgType::AppendResp:',
      '    case MsgType::AppendResp:'),
    M('ack_before_persist', 'core/raft.cc',
      'append acknowledged before the entries are durable (persistence rule)',
      '    case MsgType::AppendResp:\n    case MsgType::SnapshotResp:',
      '    case MsgType::SnapshotResp:'),
    M('leader_counts_unsynced_self', 'core/raft.cc',
      'leader counts its own unsynced log toward the quorum (thesis §10.2.1)',
      '  progress_[config_.id].match = stable_;',
      '  progress_[config_.id].match = lastIndex();'),
    M('read_without_quorum', 'core/raft.cc',
      'ReadIndex read served without a heartbeat quorum (stale read from a deposed leader)',
      '    if (hasQuorum(readRounds_[i].acks)) confirmed = i + 1;',
      '    confirmed = i + 1;'),
    M('vote_reset_same_term', 'core/raft.cc',
      'vote forgotten on a same-term step-down (two votes in one term)',
      '  if (term > term_) {\n    term_ = term;\n    vote_ = kNoNode;\n  }\n  role_ = Role::Follower;',
      '  if (term > term_) term_ = term;\n  vote_ = kNoNode;\n  role_ = Role::Follower;'),
    M('vote_twice_without_leader', 'core/raft.cc',
      'a second vote in the same term while no leader is known',
      '(vote_ == kNoNode && leader_ == kNoNode)',
      '(leader_ == kNoNode)'),
    M('lease_ignored', 'core/raft.cc',
      'pre-votes and votes granted while a live leader is known (check-quorum lease)',
      '        hitProbe(Probe::VoteRefusedByLease);\n        return;',
      '        hitProbe(Probe::VoteRefusedByLease);'),
    M('append_no_prev_match', 'core/raft.cc',
      'Append accepted without matching the previous entry (only its index)',
      '  if (!matchTerm(m.index, m.logTerm)) {',
      '  if (m.index > lastIndex()) {'),
    M('append_truncates_matching', 'core/raft.cc',
      'a stale or duplicate Append truncates a matching suffix',
      '    if (e.index > lastIndex() || !matchTerm(e.index, e.term)) {',
      '    if (e.index > 0) {'),
    # The follower commit bound. min(leaderCommit, lastIndex) on an Append
    # (instead of the index of its last new entry) cannot be told apart here: this
    # core's back-up lands every first accepted Append of a term at the point where the
    # logs diverge, so no conflicting entry ever follows the last new one (docs/TESTING.md).
    M('follower_commit_unbounded', 'core/raft.cc',
      'follower takes the leader\'s commit index as it is, past its last new entry',
      '  Index newCommit = std::min(m.commit, lastNew);',
      '  Index newCommit = m.commit;'),
    M('heartbeat_commit_past_match', 'core/raft.cc',
      'heartbeat carries the leader\'s commit, not what the follower is known to match',
      '    m.commit = std::min(pr.match, commit_);',
      '    m.commit = commit_;'),
    M('fixed_election_timeout', 'core/raft.cc',
      'election timeout not randomized',
      '  randomizedElectionTicks_ = config_.electionTicks +\n'
      '                             static_cast<uint32_t>(rng_.below(config_.electionTicks));',
      '  randomizedElectionTicks_ = config_.electionTicks;'),
    M('apply_beyond_commit', 'core/raft.cc',
      'entries handed out for apply beyond the commit index',
      '  Index upTo = stableCommitted();',
      '  Index upTo = stable_;'),
    M('read_no_current_term_commit', 'core/raft.cc',
      'new leader serves reads before committing an entry of its term',
      '  if (termAt(commit_) != term_) {\n    // Until',
      '  if (false) {\n    // Until'),
    M('snapshot_keeps_conflicting_suffix', 'core/raft.cc',
      'InstallSnapshot keeps a log suffix that conflicts with the snapshot',
      '  if (matchTerm(meta.index, meta.term)) {\n    // Raft Figure 13',
      '  if (meta.index <= lastIndex()) {\n    // Raft Figure 13'),
    M('read_before_applied', 'core/replica.cc',
      'read served before applied >= read index',
      '    if (it->second.ready && it->second.readIndex <= kv_.appliedIndex()) {',
      '    if (it->second.ready) {'),
    M('read_context_reused', 'core/replica.cc',
      'read ids restart at 1 after a restart (an old answer serves a new read)',
      '      readContextBase_(rng.next()),',
      '      readContextBase_(1),'),
    # Issue 10. No safety property depends on it (a shed request is a definite "not
    # applied"): caught by tests/raft/replica_test_overload.cc, not by the swarm.
    M('no_shedding_by_queue_age', 'core/replica.cc',
      'requests are queued however long the oldest pending one has waited (no shedding by '
      'queue age: an overloaded node times requests out instead of answering busy)',
      '  if (now_ - submitted <= shedAfterTicks_) return false;',
      '  if (true) return false;'),
    M('dedup_only_ok', 'core/kv.cc',
      'dedup record not updated for non-ok replies (a retried cas mismatch runs twice)',
      '  session.lastRequestId = cmd.requestId;\n  session.lastReply = reply;',
      '  if (reply.status == Status::Ok) session.lastRequestId = cmd.requestId;\n  session.lastReply = reply;'),
    # Issue 10. Changes which session goes, not exactly-once: caught by tests/kv
    # (SessionsThatNeverRanACommandAreEvictedFirst, UnusedSessionsNeverCostAUsedOne).
    M('orphan_sessions_evict_used', 'core/kv.cc',
      'eviction by activity alone: sessions never used (retried OpenSessions) push out '
      'sessions clients use',
      '    if (orphan != unused_.end() && *orphan != index) {',
      '    if (false) {'),
    # Issue 10. A performance rule (how often the store is rewritten), not a safety one:
    # the simulator's stores are small, so the swarm never reaches it; caught by
    # tests/raft/replica_test_snapshot.cc (LargeStoreWaitsForItsShareOfLogBytes).
    M('snapshot_ignores_log_share', 'core/replica.cc',
      'a snapshot every snapshotEveryEntries entries whatever the store size (the whole '
      'store rewritten per few KB logged)',
      '    if (config_.snapshotLogShare != 0 &&',
      '    if (false &&'),
    # Issue 10, also a performance rule: without the stretch every member starts its
    # snapshot at the same index. Caught by tests/raft/replica_test_snapshot.cc
    # (SpreadStretchesEachIntervalByADrawnShare), not by the swarm.
    # Issue 10: the in-memory log releases the payloads of entries every member holds and
    # this node applied. Released too early, a committed entry goes out for apply without
    # its payload, or an Append carries one (both assertions, and the swarm, catch it);
    # released while a member lags, that member needs a snapshot where the log would do, a
    # performance rule (tests/raft/raft_test_release.cc NothingALaggingMemberLacksIsReleased),
    # as are the two about members behind the log (AMemberBehindTheCompactedLog...,
    # ANewLeaderCountsMembersItHasNotHeardFromYet).
    M('payload_released_before_apply', 'core/raft.cc',
      'payloads released up to the commit index, not only what this node applied',
      'std::min({heldByAll_, applied_, commit_, lastIndex()})',
      'std::min({heldByAll_, commit_, lastIndex()})'),
    M('released_entries_sent', 'core/raft.cc',
      'a member that lost entries whose payloads were released is sent the log, not a snapshot',
      '    if (!prevTerm || pr.next <= payloadFloor_) {',
      '    if (!prevTerm) {'),
    M('payload_release_ignores_members', 'core/raft.cc',
      'the leader releases payloads its followers may not hold yet (only its own log counted)',
      '    held = std::min(held, match);\n',
      ''),
    M('payloads_held_for_members_behind_the_log', 'core/raft.cc',
      'a member behind the compacted log (it needs a snapshot anyway) holds every payload back',
      '    if (needsFrom <= logOffset_ && pr.silentRounds > 0) continue;',
      '    if (needsFrom == 0) continue;'),
    M('live_member_behind_the_log_ignored', 'core/raft.cc',
      'a member behind the compacted log no longer counts even while it answers (entries it '
      'is about to need lose their payloads)',
      '    if (needsFrom <= logOffset_ && pr.silentRounds > 0) continue;',
      '    if (needsFrom <= logOffset_) continue;'),
    M('snapshot_in_flight_ignored', 'core/raft.cc',
      'a member being sent a snapshot counts as behind the log (the entries after the '
      'snapshot lose their payloads before it is installed)',
      'pr.state == ProgressState::Snapshot ? std::max(pr.match, pr.snapIndex)\n'
      '                                                            : pr.match;',
      'pr.match;'),
    M('unknown_match_counts_as_behind', 'core/raft.cc',
      'a new leader takes the members it has not heard from (match 0) as behind the log',
      '    const Index needsFrom = match > 0 ? match + 1 : termFirstIndex_;',
      '    const Index needsFrom = match + 1;'),
    M('snapshot_spread_ignored', 'core/replica.cc',
      'every member snapshots at the same index (the drawn stretch is ignored)',
      '    const Wide stretch = 100 + snapshotStretchPercent_;',
      '    const Wide stretch = 100;'),
    # Issue 10: commit-only Appends wait for the tick. Neither rule guards safety (a
    # heartbeat carries the commit index too); caught by tests/raft/raft_test_replication.cc
    # (IdleFollowersLearnTheCommitAtTheNextTickOnce), not by the swarm.
    M('commit_notice_repeated', 'core/raft.cc',
      'an empty Append tells a follower the commit index an Append already carried',
      '    if (pr.commitSent < commit_ && pr.next > lastIndex() &&',
      '    if (pr.next > lastIndex() &&'),
    M('commit_notice_never', 'core/raft.cc',
      'idle followers learn a new commit index only from the next heartbeat',
      '  if (commitNoticeDue_) notifyCommit();',
      '  if (false) notifyCommit();'),
    M('restore_drops_sessions', 'core/kv.cc',
      'the session table is lost when a snapshot is restored',
      '  sessions_ = std::move(sessions);\n  byActivity_ = std::move(byActivity);',
      '  sessions_.clear();\n  byActivity_.clear();'),
    M('wal_checksum_ignored', 'disk/wal_record.cc',
      'WAL recovery accepts a record whose checksum fails',
      '  if (hash64(payload) == h->payloadChecksum) {',
      '  if (hash64(payload) == h->payloadChecksum || h->length < (1u << 30)) {'),
    M('wal_corruption_cut_as_torn', 'disk/wal.cc',
      'a damaged, completely written newest record cut as if it were a torn tail (issue 14)',
      '    if (newest && (!stop || stop->status == RecordStatus::Torn) &&',
      '    if (newest &&'),
    M('wal_drops_uncovered_segments', 'disk/wal.cc',
      'WAL segments dropped (and later removed) before a durable snapshot covers their entries',
      '         segments_[0].maxEntryIndex <= marker_->meta.index) {',
      '         segments_[0].maxEntryIndex <= marker_->meta.index + 64) {'),
    # Issue 10. Only a node's background snapshot job can leave a newer file beside the
    # write's cleanup; the simulator cleans up inside the write, so the swarm cannot reach
    # it. Caught by tests/disk/recovery_test.cc (DeferredCleanupRemovesOnlyWhatTheWrite-
    # Replaced).
    M('snapshot_cleanup_removes_newer', 'disk/snapshot_store.cc',
      'the cleanup after a snapshot marker removes a newer snapshot file being prepared',
      '    return index && *index <= keep.index && name != keepName;',
      '    return index && name != keepName;'),
    M('recovery_target_ignores_hwm', 'disk/wal.cc',
      'recovery target from the damaged records only, not the high-water mark of the records after them',
      '    d.wroteUpTo = std::max(d.wroteUpTo, h->hwm);',
      '    (void)0;'),
    M('recovering_node_votes', 'core/raft.cc',
      'a recovering node (storage damage) grants votes and pre-votes',
      '  if (recovering_ && canVote) {',
      '  if (false && canVote) {'),
    M('recovery_ends_at_once', 'core/raft_recovery.cc',
      'a recovering node rejoins (votes again) before its log matches a leader up to what it held',
      '  if (std::min(verified, stable_) < recoverUntil_) return;',
      '  if (stable_ < commit_) return;'),
    # Seed 175838 (1 in 100,000 seeds before the fix; 0 of 15,000 seeds with this mutant
    # on the fixed tree): caught by tests/raft/raft_test_recovery.cc, rarely by the swarm.
    M('recovery_skips_term_poll', 'core/raft_recovery.cc',
      "a recovering node takes an Append of its recovered (possibly stale) term as verification without polling the others' terms",
      '  if (!isVoter(config_.id)) return true;  // a non-voter\'s acks committed nothing',
      '  return true;'),
    M('recovering_heartbeat_commit', 'core/raft.cc',
      "a recovering node takes a heartbeat's commit over its stale log (the leader's match is stale)",
      '  Index newCommit = std::min(m.commit, recovering_ ? recoveryVerified() : lastIndex());',
      '  Index newCommit = std::min(m.commit, lastIndex());'),
    M('leader_keeps_lost_match', 'core/raft.cc',
      "leader keeps its match for a follower that lost acknowledged entries",
      '    if (m.context == kRecoveringResponse) forgetLostMatch(pr, m);',
      '    (void)kRecoveringResponse;'),
    M('follower_read_own_commit', 'core/raft.cc',
      'follower answers a linearizable read at its own commit index',
      '    if (from == config_.id && leader_ != kNoNode && role_ == Role::Follower) {\n      Message m =',
      '    if (from == config_.id && leader_ != kNoNode && role_ == Role::Follower) {\n      outReads_.push_back(ReadState{context, commit_, false});\n      return;\n      Message m ='),
    M('retry_reexecutes', 'core/kv.cc',
      'a retried write executes again instead of returning the saved reply',
      '  if (cmd.requestId == session.lastRequestId) {',
      '  if (cmd.requestId == session.lastRequestId && cmd.op == OpType::Get) {'),
    M('wal_skips_fsync', 'disk/wal.cc',
      'WAL batches written without fsync',
      '  file_->append(buffer);\n  file_->datasync();',
      '  file_->append(buffer);'),
    M('rejected_votes_counted', 'core/raft.cc',
      'rejected votes counted as granted',
      '        votesRejected_.insert(m.from);',
      '        votesGranted_.insert(m.from);'),
    M('cas_ignores_expected', 'core/kv.cc',
      'compare-and-swap ignores the expected value',
      '      const bool matches = cmd.expectAbsent ? !present : present && it->value() == cmd.expected;',
      '      const bool matches = cmd.expectAbsent ? !present : present;'),
    # Membership (core/membership.*, the membership nemesis in sim/membership.cc).
    M('conf_change_before_own_term_commit', 'core/raft.cc',
      'a new leader proposes a membership change before committing an entry of its term '
      '(the single-server-change bug, thesis §4.1 erratum)',
      '  if (termAt(commit_) != term_) {\n    hitProbe(Probe::ConfChangeNotReady);',
      '  if (false) {\n    hitProbe(Probe::ConfChangeNotReady);'),
    M('single_voter_leads_before_vote_durable', 'core/raft.cc',
      'a single voter leads at once, before its term and self-vote are durable (a crash '
      'takes them back; it may then vote for another node in that term, which leads too)',
      '      electedAloneTerm_ = term_;',
      '      becomeLeader();'),
    M('votes_only_from_voters', 'core/raft.cc',
      'vote requests from nodes that are not voters in our (maybe older) configuration '
      'dropped, even when their log is up to date (a promoted learner cannot be elected)',
      '  if ((m.type == MsgType::PreVote || m.type == MsgType::Vote) && !isVoter(m.from) &&\n'
      '      !isUpToDate(m.index, m.logTerm)) {',
      '  if ((m.type == MsgType::PreVote || m.type == MsgType::Vote) && !isVoter(m.from)) {'),
    M('removed_node_votes_heard', 'core/raft.cc',
      'vote requests from non-voters whose log is behind ours heard (a removed node '
      'inflates terms and deposes leaders)',
      '  if ((m.type == MsgType::PreVote || m.type == MsgType::Vote) && !isVoter(m.from) &&\n'
      '      !isUpToDate(m.index, m.logTerm)) {',
      '  if (false) {'),
    M('stale_vote_unanswered', 'core/raft.cc',
      'a Vote below our term ignored instead of answered with our term (a candidate whose '
      'configuration is newer than ours never learns the term it must exceed)',
      '    } else if (m.type == MsgType::PreVote || m.type == MsgType::Vote) {',
      '    } else if (m.type == MsgType::PreVote) {'),
    M('votes_skip_learners', 'core/raft.cc',
      'a Vote sent to voters only, not to learners (one our log has not seen promoted never '
      'learns our term, and its requests meet our self-vote in every term)',
      '  if (!preVote) to.insert(to.end(), conf_.learners.begin(), conf_.learners.end());',
      '  if (false) to.insert(to.end(), conf_.learners.begin(), conf_.learners.end());'),
    # The two rules above back each other up: a candidate below the stale voter's term
    # learns it from the answer to its Vote, or from the Vote the stale voter sends it as
    # a learner, so neither alone is caught. Without both, it never learns it.
    M('stale_candidate_never_learns_term', 'core/raft.cc',
      'a Vote below our term ignored and no Vote sent to learners (a promoted node that '
      'a stale voter does not know as a voter never learns the term it must exceed)',
      ('    } else if (m.type == MsgType::PreVote || m.type == MsgType::Vote) {',
       '  if (!preVote) to.insert(to.end(), conf_.learners.begin(), conf_.learners.end());'),
      ('    } else if (m.type == MsgType::PreVote) {',
       '  if (false) to.insert(to.end(), conf_.learners.begin(), conf_.learners.end());')),
    M('learner_counted_for_commit', 'core/raft.cc',
      'a learner\'s log counted toward the commit quorum',
      '  for (NodeId v : conf_.voters) matches.push_back(progress_[v].match);',
      '  for (auto& [v, pr] : progress_) matches.push_back(pr.match);'),
    M('learner_counted_in_quorum', 'core/raft.cc',
      'learners (and non-members) counted in vote, check-quorum and read-index quorums',
      '    if (isVoter(id)) ++n;',
      '    if (isVoter(id) || id != kNoNode) ++n;'),
    M('conf_applied_at_commit', 'core/raft.cc',
      'a configuration takes effect only once committed, not when appended',
      'Index Raft::confBound() const { return lastIndex(); }',
      'Index Raft::confBound() const { return commit_; }'),
    M('two_changes_in_flight', 'core/raft.cc',
      'a second membership change proposed while one is uncommitted',
      '  if (!confEntries_.empty() && confEntries_.back() > commit_)\n'
      '    return ConfChangeError::InProgress;',
      '  if (false)\n    return ConfChangeError::InProgress;'),
    M('snapshot_latest_conf', 'core/replica.cc',
      'a local snapshot records the newest (maybe uncommitted) configuration, not the one at its index',
      '  const SnapshotMeta meta{applied, *term, raft_.confAt(applied)};',
      '  const SnapshotMeta meta{applied, *term, raft_.conf()};'),
    M('snapshot_size_stale', 'core/raft.cc',
      "a local snapshot replaces the one in memory but Raft keeps the old one's size (the chunks it sends from disk say the wrong size)",
      '  snapshotBytes_ = bytes;\n  snapshot_ = std::move(snap);\n  Index keepFrom',
      '  (void)bytes;\n  snapshot_ = std::move(snap);\n  Index keepFrom'),
    M('snapshot_chunk_wrong_offset', 'core/raft.cc',
      'a snapshot chunk read back from disk at the wrong offset (always the first chunk)',
      '    if (!reader_->readSnapshot(snapshot_.meta, snapshotBytes_, pr.snapOffset, want,',
      '    if (!reader_->readSnapshot(snapshot_.meta, snapshotBytes_, 0, want,'),
]

VIOLATION = re.compile(r'VIOLATION (\S+) at event (\d+) \(seed (\d+)')


def fail(message):
    print(f'mutation: {message}', file=sys.stderr)
    sys.exit(2)


def check_mutations(tree, mutations):
    """Every mutant's text must occur exactly once in its file."""
    problems = []
    names = [m.name for m in MUTATIONS]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f'{dup}: the name is used twice')
    for m in mutations:
        path = os.path.join(tree, m.file)
        if not os.path.isfile(path):
            problems.append(f'{m.name}: {m.file} does not exist')
            continue
        with open(path) as f:
            text = f.read()
        for old, _ in replacements(m):
            n = text.count(old)
            if n == 0:
                problems.append(f'{m.name}: the text to replace is not in {m.file} (the code it '
                                f'mutates changed: update tests/mutation/run.py): {old!r}')
            elif n > 1:
                problems.append(f'{m.name}: the text to replace occurs {n} times in {m.file}; '
                                f'make it unique (take in a neighbouring line): {old!r}')
    if problems:
        fail('bad mutations:\n  ' + '\n  '.join(problems))


def shrink_check(kvsim, violation, tmp, name, max_schedule):
    """kvsim --shrink on the violating seed, then --replay of the file it writes: the
    replay must fail with the same property, keeping at most max_schedule events."""
    seed, prop = violation[0], violation[1]
    replay = os.path.join(tmp, f'{name}.replay')
    r = subprocess.run([kvsim, '--seed', str(seed), '--shrink', '--replay-out', replay],
                       capture_output=True, text=True, timeout=1800)
    m = re.search(r'fault events (\d+) -> (\d+), operations (\d+) -> (\d+)', r.stderr)
    if not m or not os.path.exists(replay):
        return f'shrink of seed {seed} wrote no replay file'
    kept = int(m.group(2)) + int(m.group(4))
    rp = subprocess.run([kvsim, '--replay', replay], capture_output=True, text=True, timeout=600)
    if rp.returncode != 1 or f'VIOLATION {prop}' not in rp.stdout:
        return f'replay of seed {seed} did not reproduce {prop}'
    what = (f'seed {seed}: fault events {m.group(1)} -> {m.group(2)}, operations '
            f'{m.group(3)} -> {m.group(4)}; the replay fails with {prop}')
    if kept > max_schedule:
        return f'too long: {what} ({kept} events > {max_schedule})'
    return 'shrunk ' + what


def run_kvsim(kvsim, seeds, jobs, timeout):
    """Runs the seeds; returns (status, violations, seconds) with status 'ok', 'hung ...'
    or 'error: ...' and violations a list of (seed, property, excerpt) in seed order (for a
    hung run, those reported before it was stopped)."""
    cmd = [kvsim, '--seeds', seeds, '--quiet'] + (['--jobs', str(jobs)] if jobs else [])
    start = time.monotonic()
    # A session of its own, so that a hung run's workers go down with it.
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         errors='replace', start_new_session=True)
    status = 'ok'
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM first: kvsim then names the seeds it was running, and ends its workers.
        p.send_signal(signal.SIGTERM)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
        m = re.search(r'seeds running: ([0-9, ]*)', err)
        running = m.group(1).strip() if m else ''
        status = 'hung' + (f'; seeds running: {running}' if running else '')
    seconds = time.monotonic() - start
    violations = []
    lines = err.splitlines()
    for i, line in enumerate(lines):
        m = VIOLATION.search(line)
        if m:
            detail = lines[i + 1].strip() if i + 1 < len(lines) else ''
            excerpt = f'{m.group(1)} at event {m.group(2)} (seed {m.group(3)}): {detail}'
            violations.append((int(m.group(3)), m.group(1), excerpt))
    if status != 'ok':
        return status, violations, seconds
    if p.returncode not in (0, 1):
        why = f'signal {-p.returncode}' if p.returncode < 0 else f'exit {p.returncode}'
        tail = err.strip().splitlines()[-1:] or ['']
        return f'error: kvsim {why}: {tail[0][:100]}', violations, seconds
    return status, violations, seconds


def cell(text, limit=None):
    text = ' '.join(str(text).split())
    if limit and len(text) > limit:
        text = text[:limit - 1] + '…'
    return text.replace('|', '\\|')


def seed_list(seeds, shown=6):
    s = ', '.join(str(x) for x in seeds[:shown])
    return s + (', …' if len(seeds) > shown else '')


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seeds', default='1..300', help='seed range A..B (default 1..300)')
    p.add_argument('--only', default='', help='comma-separated mutant names')
    p.add_argument('--list', action='store_true', help='list the mutants and exit')
    p.add_argument('--check', action='store_true',
                   help='check that every mutant\'s text occurs exactly once in the tree, and exit')
    p.add_argument('--timeout', type=float, default=300,
                   help='seconds a mutant\'s kvsim run may take; longer counts as hung (default 300)')
    p.add_argument('--min-hits', type=int, default=3,
                   help='violating seeds needed to count a mutant as caught (default 3)')
    p.add_argument('--jobs', type=int, default=0,
                   help='kvsim --jobs (default: kvsim\'s own, one worker per core)')
    p.add_argument('--markdown', metavar='FILE', help='also write the table to FILE')
    p.add_argument('--require-all', action='store_true', help='exit 1 if a mutant is not caught')
    p.add_argument('--shrink-check', action='store_true',
                   help='shrink each caught mutant\'s first violating seed (kvsim --shrink), '
                        'replay the file, and report the schedule left (fault events + ops)')
    p.add_argument('--max-schedule', type=int, default=50,
                   help='with --shrink-check: most schedule events a shrunk failure may keep '
                        '(default 50)')
    p.add_argument('--no-baseline', action='store_true',
                   help='skip the unmutated run (its failing seeds then count for the mutants)')
    args = p.parse_args()

    here = os.path.dirname(os.path.abspath(__file__))
    top = subprocess.run(['git', 'rev-parse', '--show-toplevel'], capture_output=True, text=True,
                         cwd=here, check=True).stdout.strip()
    if args.list:
        for m in MUTATIONS:
            print(f'{m.name:32} {m.file:18} {m.bug}')
        return 0
    if args.check:
        check_mutations(os.path.dirname(os.path.dirname(here)), MUTATIONS)  # exits 1 if bad
        print(f'{len(MUTATIONS)} mutants, each text found once')
        return 0
    if not re.fullmatch(r'\d+\.\.\d+', args.seeds):
        fail(f'--seeds wants A..B, got {args.seeds!r}')
    wanted = [n for n in args.only.split(',') if n]
    unknown = [n for n in wanted if n not in {m.name for m in MUTATIONS}]
    if unknown:
        fail(f'no mutant named {", ".join(unknown)} (see --list)')
    mutations = [m for m in MUTATIONS if not wanted or m.name in wanted]
    check_mutations(top, mutations)
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                            cwd=top).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                           capture_output=True, text=True, cwd=top).stdout.strip()

    rows = []
    shrink_failures = []
    with tempfile.TemporaryDirectory(prefix='kvmut-') as tmp:
        src = os.path.join(tmp, 'src')
        shutil.copytree(top, src, ignore=shutil.ignore_patterns('build*', '.git', 'data', '__pycache__'))
        build = os.path.join(tmp, 'b')
        kvsim = os.path.join(build, 'bin', 'kvsim')

        def ninja():
            return subprocess.run(['ninja', '-C', build, 'bin/kvsim'], capture_output=True, text=True)

        print(f'mutation: building kvsim in {build}', file=sys.stderr, flush=True)
        r = subprocess.run(['meson', 'setup', build, src, '--buildtype=debugoptimized'],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail('meson setup failed:\n' + r.stdout[-3000:] + r.stderr[-3000:])
        r = ninja()
        if r.returncode != 0:
            fail('the unmutated tree does not build:\n' + r.stdout[-3000:])

        baseline = set()
        if not args.no_baseline:
            status, violations, seconds = run_kvsim(kvsim, args.seeds, args.jobs, args.timeout)
            baseline = {v[0] for v in violations}
            print(f'{"(unmutated)":32} {len(baseline):4} violating seeds  {status}  {seconds:.0f}s'
                  + (f'  {violations[0][2][:90]}' if violations else ''), flush=True)
            if status != 'ok':
                fail(f'the unmutated kvsim run did not finish cleanly: {status}')

        for m in mutations:
            path = os.path.join(src, m.file)
            with open(path) as f:
                original = f.read()
            try:
                mutated = original
                for old, new in replacements(m):
                    mutated = mutated.replace(old, new, 1)
                with open(path, 'w') as f:
                    f.write(mutated)
                built = ninja()
                if built.returncode != 0:
                    errors = [l for l in built.stdout.splitlines() if 'error' in l]
                    status, violations, seconds = 'does not build', [], 0.0
                    excerpt = errors[0] if errors else built.stdout.strip()[-200:]
                else:
                    status, violations, seconds = run_kvsim(kvsim, args.seeds, args.jobs, args.timeout)
                    excerpt = ''
            finally:
                with open(path, 'w') as f:
                    f.write(original)
            counted = [v for v in violations if v[0] not in baseline]
            hits = sorted({v[0] for v in counted})
            if status == 'ok':
                verdict = 'caught' if len(hits) >= args.min_hits else 'NOT caught'
                excerpt = counted[0][2] if counted else ''
            elif status.startswith('hung'):
                verdict = f'hung (> {args.timeout:g} s{status[4:]})'
                excerpt = counted[0][2] if counted else ''
            elif status == 'does not build':
                verdict = 'does not build'
            else:
                verdict = status
                excerpt = counted[0][2] if counted else ''
            shrunk = ''
            if args.shrink_check and verdict == 'caught':
                # The binary is still the mutant's: the source was restored, not rebuilt.
                shrunk = shrink_check(kvsim, counted[0], tmp, m.name, args.max_schedule)
                if not shrunk.startswith('shrunk'):
                    shrink_failures.append(m.name)
            rows.append((m, hits, excerpt, verdict, seconds))
            print(f'{m.name:32} {len(hits):4} violating seeds  {verdict}  {seconds:.0f}s'
                  + (f'  {excerpt[:90]}' if excerpt else ''), flush=True)
            if shrunk:
                print(f'{"":32} {shrunk}', flush=True)

    caught = sum(1 for r in rows if r[3] == 'caught')
    out = [
        f'Mutants in seeds {args.seeds} (kvsim at {commit}{" with uncommitted changes" if dirty else ""}; '
        f'caught = at least {args.min_hits} violating seeds'
        + (f', not counting the {len(baseline)} seeds that fail unmutated' if baseline else '') + ')',
        '',
        '| mutation | file | bug class | violating seeds | first violation | verdict |',
        '|---|---|---|---|---|---|',
    ]
    for m, hits, excerpt, verdict, _ in rows:
        seeds = f'{len(hits)}' + (f' ({seed_list(hits)})' if hits else '')
        out.append(f'| `{m.name}` | `{m.file}` | {cell(m.bug)} | {seeds} | {cell(excerpt, 140)} | {verdict} |')
    out.append('')
    out.append(f'score: {caught} of {len(rows)} mutations caught (>= {args.min_hits} seeds each) '
               f'in seeds {args.seeds}')
    text = '\n'.join(out)
    print()
    print(text)
    if args.markdown:
        with open(args.markdown, 'w') as f:
            f.write(text + '\n\nCommand: `' + ' '.join(['python3', 'tests/mutation/run.py'] +
                                                        [shlex.quote(a) for a in sys.argv[1:]]) + '`\n')
    if args.shrink_check:
        print(f'shrink check: {len(shrink_failures)} of {caught} caught mutants did not shrink '
              f'to a replayable schedule of at most {args.max_schedule} events'
              + (f': {", ".join(shrink_failures)}' if shrink_failures else ''))
    if args.require_all and (caught < len(rows) or shrink_failures):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
