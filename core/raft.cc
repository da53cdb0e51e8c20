#include "core/raft.h"

#include <algorithm>

#include <kj/debug.h>

#include "core/probe.h"

namespace kvr {

const char* roleName(Role r) {
  switch (r) {
    case Role::Follower: return "follower";
    case Role::PreCandidate: return "pre-candidate";
    case Role::Candidate: return "candidate";
    case Role::Leader: return "leader";
  }
  return "?";
}

namespace {

// Bytes counted per entry beyond its payload (index, term, type, framing) when the leader
// bounds its uncommitted log; a rough figure, it only has to keep empty entries from
// counting as free.
constexpr size_t kEntryOverheadBytes = 24;
// A follower in snapshot state that acknowledged nothing for this many heartbeats lost a
// chunk or its ack: resend from its last acknowledged offset.
constexpr uint32_t kSnapshotResendHeartbeats = 3;
// Committed entries handed out per Ready: one apply batch stays bounded after a long
// catch-up; the rest come with the next Ready.
constexpr size_t kMaxCommittedPerReady = 4096;

// Messages that claim something about local durable state (a vote, a log match, a
// term) may leave only after everything handed to storage so far is durable.
bool needsPersistence(MsgType t) {
  switch (t) {
    case MsgType::Vote:  // carries our own vote for ourselves
    case MsgType::VoteResp:
    case MsgType::AppendResp:
    case MsgType::SnapshotResp:
    case MsgType::HeartbeatResp:  // acknowledges a term
      return true;
    default: return false;
  }
}

size_t entryBytes(const Entry& e) { return e.data.size() + kEntryOverheadBytes; }

}  // namespace

Raft::Raft(const RaftConfig& config, const Rng& rng, const ConfState& bootstrapConf,
           RecoveredState recovered)
    : config_(config), rng_(rng) {
  KJ_REQUIRE(config_.id != kNoNode, "node id must be non-zero");
  KJ_REQUIRE(config_.electionTicks >= 2 && config_.heartbeatTicks >= 1 &&
             config_.heartbeatTicks < config_.electionTicks);
  KJ_REQUIRE(config_.maxInflight >= 1 && config_.maxInflight <= limits::kMaxInflightAppends);
  KJ_REQUIRE(config_.snapshotChunkBytes >= 1 &&
             config_.snapshotChunkBytes <= limits::kMaxSnapshotChunkBytes);
  KJ_REQUIRE(config_.maxAppendBytes >= 1 && config_.maxAppendBytes <= limits::kMaxAppendBytes);

  snapshot_ = std::move(recovered.snapshot);
  snapshotBytes_ = snapshot_.data ? snapshot_.data->size() : 0;
  bootstrapConf_ = bootstrapConf;
  conf_ = snapshot_.meta.index > 0 ? snapshot_.meta.conf : bootstrapConf;
  KJ_REQUIRE(!conf_.voters.empty() && conf_.voters.size() <= limits::kMaxNodes,
             "cluster must have 1..7 voters", conf_.voters.size());
  KJ_REQUIRE(validConf(conf_), "voters and learners must be sorted, unique and disjoint",
             describeConf(conf_));

  logOffset_ = snapshot_.meta.index;
  logOffsetTerm_ = snapshot_.meta.term;
  Index expect = logOffset_ + 1;
  for (auto& e : recovered.entries) {
    KJ_REQUIRE(e.index == expect, "recovered log is not contiguous", e.index, expect);
    KJ_REQUIRE(e.term >= (log_.empty() ? logOffsetTerm_ : log_.back().term),
               "recovered log terms go backwards", e.index);
    ++expect;
    if (e.kind == EntryKind::Config) {
      ConfState c;
      KJ_REQUIRE(decodeConf(e.data, &c), "recovered configuration entry does not decode",
                 e.index);
      confEntries_.push_back(e.index);
    }
    log_.push_back(std::move(e));
  }
  refreshConf(false);
  term_ = recovered.hardState.term;
  vote_ = recovered.hardState.vote;
  KJ_REQUIRE(lastTerm() <= term_, "log holds a term beyond the persisted term");
  setCommit(std::min(std::max(recovered.hardState.commit, snapshot_.meta.index), lastIndex()));
  applied_ = snapshot_.meta.index;
  handedCommitted_ = snapshot_.meta.index;
  stable_ = lastIndex();
  unstableFrom_ = lastIndex() + 1;
  lastHardState_ = HardState{term_, vote_, recovered.hardState.commit};
  recovering_ = recovered.recovering;
  recoverUntil_ = recovered.recoverUntil;
  // The recovered term and vote may come from the recovery mark, not the WAL: write
  // them to the WAL at once.
  if (recovering_) lastHardState_.term = term_ + 1;
  maybeFinishRecovery();  // nothing beyond the committed prefix was lost
  role_ = Role::Follower;
  resetElectionTimer();
  if (recovering_) {
    termPollNonce_ = rng_.next() | 1;  // never 0: an unset context cannot answer it
    sendTermPoll();
  }
}

// ---------------------------------------------------------------- log helpers

Term Raft::lastTerm() const { return log_.empty() ? logOffsetTerm_ : log_.back().term; }

std::optional<Term> Raft::termAt(Index index) const {
  if (index == logOffset_) return logOffsetTerm_;
  if (index < logOffset_ || index > lastIndex()) return std::nullopt;
  return log_[index - logOffset_ - 1].term;
}

const Entry* Raft::entryAt(Index index) const {
  if (index <= logOffset_ || index > lastIndex()) return nullptr;
  return &log_[index - logOffset_ - 1];
}

bool Raft::matchTerm(Index index, Term term) const {
  auto t = termAt(index);
  return t && *t == term;
}

bool Raft::isUpToDate(Index lastIdx, Term lastTrm) const {
  return lastTrm > lastTerm() || (lastTrm == lastTerm() && lastIdx >= lastIndex());
}

Index Raft::findConflictByTerm(Index index, Term term) const {
  index = std::min(index, lastIndex());
  while (index > logOffset_) {
    auto t = termAt(index);
    if (!t || *t <= term) break;
    --index;
  }
  return index;
}

void Raft::truncateFrom(Index index) {
  KJ_ASSERT(index > commit_, "truncating committed entries", index, commit_);
  KJ_ASSERT(index > logOffset_);
  if (lastIndex() >= index) hitProbe(Probe::SuffixTruncated);
  while (lastIndex() >= index) log_.pop_back();
  stable_ = std::min(stable_, index - 1);
  unstableFrom_ = std::min(unstableFrom_, index);
  if (!confEntries_.empty() && confEntries_.back() >= index) {
    // A configuration is used from the moment it is in the log, so one that is cut
    // from the log reverts to the one before it.
    hitProbe(Probe::ConfReverted);
    while (!confEntries_.empty() && confEntries_.back() >= index) confEntries_.pop_back();
    refreshConf(false);
  }
}

void Raft::appendLocal(std::vector<Entry>&& entries) {
  if (entries.empty()) return;
  Index first = entries.front().index;
  KJ_ASSERT(first > logOffset_ && first <= lastIndex() + 1, first, lastIndex());
  if (first <= lastIndex()) truncateFrom(first);
  bool newConf = false;
  for (auto& e : entries) {
    KJ_ASSERT(e.index == lastIndex() + 1 && e.term >= lastTerm());
    if (e.kind == EntryKind::Config) {
      confEntries_.push_back(e.index);
      newConf = true;
    }
    log_.push_back(std::move(e));
  }
  unstableFrom_ = std::min(unstableFrom_, first);
  if (newConf) refreshConf(false);
}

// ---------------------------------------------------------------- membership

ConfState Raft::confAt(Index index) const {
  KJ_REQUIRE(index >= snapshot_.meta.index && index <= lastIndex(), index);
  auto it = std::upper_bound(confEntries_.begin(), confEntries_.end(), index);
  if (it != confEntries_.begin() && *(it - 1) > snapshot_.meta.index) {
    ConfState c;
    KJ_ASSERT(decodeConf(entryAt(*(it - 1))->data, &c));
    return c;
  }
  return snapshot_.meta.index > 0 ? snapshot_.meta.conf : bootstrapConf_;
}

// Up to which index Config entries are in force: all of the log (thesis §4.1).
Index Raft::confBound() const { return lastIndex(); }

void Raft::refreshConf(bool force) {
  Index bound = confBound();
  auto it = std::upper_bound(confEntries_.begin(), confEntries_.end(), bound);
  Index at = it == confEntries_.begin() ? 0 : *(it - 1);
  if (at == confIndex_ && !force && at != 0) return;
  ConfState next;
  if (at != 0) {
    KJ_ASSERT(decodeConf(entryAt(at)->data, &next), "configuration entry does not decode", at);
  } else {
    next = snapshot_.meta.index > 0 ? snapshot_.meta.conf : bootstrapConf_;
  }
  if (next == conf_ && at == confIndex_) return;
  conf_ = std::move(next);
  confIndex_ = at;
  if (role_ == Role::Leader) syncProgress(true);
}

void Raft::syncProgress(bool probeNew) {
  KJ_ASSERT(role_ == Role::Leader);
  std::vector<NodeId> fresh;
  for (auto it = progress_.begin(); it != progress_.end();) {
    if (it->first != config_.id && !isMemberOf(conf_, it->first)) {
      it = progress_.erase(it);
    } else {
      ++it;
    }
  }
  auto add = [&](NodeId id) {
    if (progress_.count(id) != 0) return;
    Progress pr;
    pr.next = lastIndex() + 1;
    pr.recentActive = true;
    if (id == config_.id) pr.match = stable_;
    progress_[id] = pr;
    if (id != config_.id) fresh.push_back(id);
  };
  for (NodeId v : conf_.voters) add(v);
  for (NodeId l : conf_.learners) add(l);
  // Probe a member added by a change at once: its log is likely empty, and waiting for
  // a heartbeat would cost a round.
  if (probeNew) {
    for (NodeId id : fresh) sendAppend(id, true);
  }
  if (transferTarget_ != kNoNode && !isVoter(transferTarget_)) transferTarget_ = kNoNode;
}

void Raft::setCommit(Index index) {
  KJ_ASSERT(index >= commit_ || commit_ == 0, index, commit_);
  commit_ = index;
  if (!confEntries_.empty() && confEntries_.back() > confIndex_) refreshConf(false);
}

bool Raft::hasQuorum(const std::set<NodeId>& ids) const {
  size_t n = 0;
  for (NodeId id : ids) {
    if (isVoter(id)) ++n;
  }
  return n >= quorum();
}

Index Raft::matchOf(NodeId id) const {
  if (role_ != Role::Leader) return 0;
  auto it = progress_.find(id);
  return it == progress_.end() ? 0 : it->second.match;
}

// A leader that removed itself leads until the change commits (it does not count itself
// meanwhile), then hands over to the most caught-up voter and steps down.
void Raft::maybeStepDownRemoved() {
  if (role_ != Role::Leader || isVoter(config_.id) || commit_ < confIndex_) return;
  hitProbe(Probe::LeaderRemovedStepDown);
  NodeId best = kNoNode;
  Index bestMatch = 0;
  for (NodeId v : conf_.voters) {
    Index m = progress_[v].match;
    if (best == kNoNode || m > bestMatch) {
      best = v;
      bestMatch = m;
    }
  }
  if (best != kNoNode) {
    Message t = outgoing(MsgType::TimeoutNow, best);
    send(std::move(t));
  }
  becomeFollower(term_, kNoNode);
}

// ---------------------------------------------------------------- roles

bool Raft::isVoter(NodeId id) const {
  return std::binary_search(conf_.voters.begin(), conf_.voters.end(), id);
}

void Raft::resetElectionTimer() {
  electionElapsed_ = 0;
  randomizedElectionTicks_ = config_.electionTicks +
                             static_cast<uint32_t>(rng_.below(config_.electionTicks));
}

void Raft::becomeFollower(Term term, NodeId leader) {
  KJ_ASSERT(term >= term_);
  if (role_ == Role::Leader) failReads();
  if (term > term_) {
    term_ = term;
    vote_ = kNoNode;
  }
  role_ = Role::Follower;
  leader_ = leader;
  progress_.clear();
  transferTarget_ = kNoNode;
  votesGranted_.clear();
  votesRejected_.clear();
  broadcastPending_ = false;
  commitNoticeDue_ = false;
  resetElectionTimer();
}

void Raft::becomePreCandidate() {
  KJ_ASSERT(role_ != Role::Leader);
  role_ = Role::PreCandidate;
  leader_ = kNoNode;
  votesGranted_ = {config_.id};
  votesRejected_.clear();
  resetElectionTimer();
}

void Raft::becomeCandidate() {
  KJ_ASSERT(role_ != Role::Leader);
  ++term_;
  vote_ = config_.id;
  role_ = Role::Candidate;
  leader_ = kNoNode;
  votesGranted_ = {config_.id};
  votesRejected_.clear();
  resetElectionTimer();
}

void Raft::becomeLeader() {
  KJ_ASSERT(role_ == Role::Candidate);
  role_ = Role::Leader;
  leader_ = config_.id;
  transferTarget_ = kNoNode;
  heartbeatElapsed_ = 0;
  electionElapsed_ = 0;
  uncommittedBytes_ = 0;
  progress_.clear();
  syncProgress(false);  // voters and learners
  termFirstIndex_ = lastIndex() + 1;
  // A no-op of the new term lets the leader commit (Raft §5.4.2) and serve reads.
  appendAndBroadcast(Entry{term_, termFirstIndex_, EntryKind::Noop, {}});
}

// A node campaigns while it is a voter in its newest configuration, or in the one before
// while the newest is not committed: the removal may still need it to commit (thesis
// §4.1). Its own vote then counts only if it is a voter in the newest.
bool Raft::mayCampaign() const {
  return isVoter(config_.id) ||
         (confIndex_ > commit_ && isVoterIn(confAt(confIndex_ - 1), config_.id));
}

void Raft::campaign(bool preVote, bool transfer) {
  if (!mayCampaign()) return;
  KJ_ASSERT(!recovering_, "a recovering node campaigns");
  if (preVote) {
    becomePreCandidate();
  } else {
    becomeCandidate();
  }
  if (hasQuorum(votesGranted_)) {
    // Single-voter cluster: nobody to ask.
    if (preVote) {
      campaign(false, transfer);
    } else {
      // Our own vote counts once it is durable, like anyone's: a leader whose term and
      // vote a crash can take back may find itself voting again in that term, for another
      // node, which then leads it too (regression seeds single-voter-term-not-durable,
      // single-voter-vote-not-durable). persistedHardState() completes the election.
      electedAloneTerm_ = term_;
    }
    return;
  }
  // A Vote also goes to the learners: one our log has not seen promoted may be a voter
  // that must learn our term, or its own requests meet our self-vote in every term
  // (seed 131204: a stale voter that could never win kept refusing the promoted node).
  // Their answers never count.
  std::vector<NodeId> to = conf_.voters;
  if (!preVote) to.insert(to.end(), conf_.learners.begin(), conf_.learners.end());
  for (NodeId v : to) {
    if (v == config_.id) continue;
    Message m = outgoing(preVote ? MsgType::PreVote : MsgType::Vote, v);
    m.term = preVote ? term_ + 1 : term_;
    m.index = lastIndex();
    m.logTerm = lastTerm();
    m.context = transfer ? kCampaignTransfer : 0;
    send(std::move(m));
  }
}

// ---------------------------------------------------------------- inputs

void Raft::tick() {
  if (electionElapsed_ < UINT32_MAX) ++electionElapsed_;
  if (role_ != Role::Leader) {
    // A node that may not campaign (a learner) lets its timer run on: it must not stay
    // in the lease of a leader it no longer hears (regression seed learner-lease).
    if (electionElapsed_ >= randomizedElectionTicks_ && mayCampaign()) {
      electionElapsed_ = 0;
      if (!recovering_) campaign(config_.preVote, false);
    }
    if (recovering_ && !termPollSatisfied() && ++termPollElapsed_ >= config_.electionTicks) {
      sendTermPoll();  // a poll or its answers were lost
    }
    return;
  }
  if (transferTarget_ != kNoNode && ++transferElapsed_ >= config_.electionTicks) {
    transferTarget_ = kNoNode;  // the target did not take over in time: abort
  }
  for (auto& [id, pr] : progress_) {
    if (id != config_.id && pr.state == ProgressState::Snapshot &&
        ++pr.snapIdleTicks >= kSnapshotResendHeartbeats * config_.heartbeatTicks) {
      sendSnapshotChunk(id, pr);  // a chunk or its ack was lost: resend from the ack
    }
  }
  if (++heartbeatElapsed_ >= config_.heartbeatTicks) {
    heartbeatElapsed_ = 0;
    // Carry the newest pending read round: if that round's own heartbeats or acks were
    // lost, these acks confirm it (and every earlier round) instead of the reads hanging.
    broadcastHeartbeat(readRounds_.empty() ? 0 : readRounds_.back().id);
  }
  if (commitNoticeDue_) notifyCommit();
  if (electionElapsed_ >= config_.electionTicks) {
    electionElapsed_ = 0;
    std::set<NodeId> active;
    for (auto& [id, pr] : progress_) {
      if (id == config_.id || pr.recentActive) {
        active.insert(id);
      } else if (pr.silentRounds < UINT32_MAX) {
        ++pr.silentRounds;
      }
      if (id != config_.id) pr.recentActive = false;
    }
    countHeldByAll();  // a member silent for a whole round may no longer count
    if (config_.checkQuorum && !hasQuorum(active)) {
      // Cut off from a majority: stop leading (and serving reads) before a new
      // leader can be elected elsewhere.
      hitProbe(Probe::StepDownCheckQuorum);
      becomeFollower(term_, kNoNode);
    }
  }
}

bool Raft::wellFormed(const Message& m) const {
  if (static_cast<uint8_t>(m.type) >= kMsgTypeCount) return false;
  if (m.to != config_.id || m.from == m.to || m.from == kNoNode) return false;
  if (m.from > limits::kMaxNodes) return false;  // no configuration can hold it
  // From a non-member only what a leader or a candidate sends: our log may not yet hold
  // the Config entry that added it (or made it a voter), or it is a leader that removed
  // itself handing over. Answers from non-members are dropped; step() drops a vote
  // request from a non-voter whose log is behind ours, so a removed node cannot inflate
  // terms.
  bool fromLeader = m.type == MsgType::Append || m.type == MsgType::Heartbeat ||
                    m.type == MsgType::Snapshot || m.type == MsgType::TimeoutNow;
  bool fromCandidate = m.type == MsgType::PreVote || m.type == MsgType::Vote;
  if (!isMemberOf(conf_, m.from) && !fromLeader && !fromCandidate) return false;
  if (m.entries.size() > limits::kMaxEntriesPerAppend) return false;
  if (m.heldByAll > m.commit) return false;
  Term prevTerm = m.logTerm;
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const Entry& e = m.entries[i];
    if (e.index != m.index + 1 + i || e.term < prevTerm || e.term > m.term) return false;
    if (e.kind != EntryKind::Noop && e.kind != EntryKind::Command &&
        e.kind != EntryKind::Config)
      return false;
    if (e.kind == EntryKind::Config) {
      ConfState c;
      if (!decodeConf(e.data, &c)) return false;
    }
    prevTerm = e.term;
  }
  if (m.type == MsgType::Snapshot) {
    if (m.snapSize > limits::kMaxSnapshotBytes) return false;
    if (m.snapChunk.size() > limits::kMaxSnapshotChunkBytes) return false;
    if (m.snapOffset > m.snapSize || m.snapChunk.size() > m.snapSize - m.snapOffset)
      return false;
    if (m.snap.index == 0 || m.snap.term == 0 || m.snap.term > m.term) return false;
    if (!validConf(m.snap.conf)) return false;
  }
  return true;
}

void Raft::step(Message m) {
  if (!wellFormed(m)) {
    ++dropped_;
    return;
  }
  // Term polls bypass the term rules below: answering one changes nothing here.
  if (m.type == MsgType::TermPoll) {
    answerTermPoll(m);
    return;
  }
  if (m.type == MsgType::TermPollResp) {
    handleTermPollResp(m);
    return;
  }
  if ((m.type == MsgType::PreVote || m.type == MsgType::Vote) && !isVoter(m.from) &&
      !isUpToDate(m.index, m.logTerm)) {
    // Not a voter in our configuration and behind us: a removed node (or one we cannot
    // elect anyway). Dropped before its term can depose anyone. One whose log is at
    // least ours may be a voter in a configuration we have not seen yet (thesis §4.1:
    // votes are answered without consulting the configuration).
    hitProbe(Probe::VoteIgnoredNonVoter);
    return;
  }
  if (m.term > term_) {
    if (m.type == MsgType::PreVote || m.type == MsgType::Vote) {
      // Leader lease (check-quorum): while we hear from a leader, a disruptive
      // candidate cannot depose it, unless the leader itself asked for the transfer.
      bool inLease = config_.checkQuorum && leader_ != kNoNode &&
                     electionElapsed_ < config_.electionTicks;
      if (inLease && m.context != kCampaignTransfer) {
        hitProbe(Probe::VoteRefusedByLease);
        return;
      }
    }
    if (m.type == MsgType::PreVote || (m.type == MsgType::PreVoteResp && !m.reject)) {
      // A pre-vote never changes terms.
    } else if (m.type == MsgType::Append || m.type == MsgType::Heartbeat ||
               m.type == MsgType::Snapshot) {
      becomeFollower(m.term, m.from);
    } else {
      becomeFollower(m.term, kNoNode);
    }
  } else if (m.term < term_) {
    if ((config_.checkQuorum || config_.preVote) &&
        (m.type == MsgType::Append || m.type == MsgType::Heartbeat)) {
      // A stale leader (e.g. healed from a partition) learns our term and steps down.
      Message r = outgoing(MsgType::AppendResp, m.from);
      r.reject = true;
      r.index = m.index;
      send(std::move(r));
    } else if (m.type == MsgType::PreVote || m.type == MsgType::Vote) {
      // Tell a candidate below our term what it must exceed. For a Vote this matters
      // when our configuration is older than the candidate's: we never send it anything
      // else (it is not a voter of ours), and without pre-vote our term may have run far
      // ahead while we were cut off (stale voter story, seed 959 --membership on).
      Message r = outgoing(m.type == MsgType::PreVote ? MsgType::PreVoteResp
                                                      : MsgType::VoteResp,
                           m.from);
      r.reject = true;
      send(std::move(r));
    } else if (m.type == MsgType::ReadIndexResp && m.reject) {
      // Our read was refused by a leader that has since been superseded: fail it now
      // rather than leave it to time out.
      hitProbe(Probe::ReadIndexRejected);
      outReads_.push_back(ReadState{m.context, 0, true});
    }
    return;
  }

  switch (m.type) {
    case MsgType::PreVote:
    case MsgType::Vote: handleVoteRequest(m); return;
    case MsgType::TimeoutNow:
      if (role_ != Role::Leader && !recovering_) campaign(false, true);
      return;
    case MsgType::ReadIndex: handleReadIndexRequest(m.from, m.context); return;
    default: break;
  }
  switch (role_) {
    case Role::Leader: stepLeader(m); break;
    case Role::Follower: stepFollower(m); break;
    case Role::PreCandidate:
    case Role::Candidate: stepCandidate(m); break;
  }
}

void Raft::handleVoteRequest(const Message& m) {
  bool preVote = m.type == MsgType::PreVote;
  bool canVote = vote_ == m.from || (vote_ == kNoNode && leader_ == kNoNode) ||
                 (preVote && m.term > term_);
  if (recovering_ && canVote) {
    // Its log no longer shows what it acknowledged: no vote until it caught up.
    hitProbe(Probe::VoteRefusedRecovering);
    canVote = false;
  }
  Message r = outgoing(preVote ? MsgType::PreVoteResp : MsgType::VoteResp, m.from);
  bool upToDate = isUpToDate(m.index, m.logTerm);
  if (canVote && !upToDate) hitProbe(Probe::VoteRefusedStaleLog);
  if (canVote && upToDate) {
    r.term = m.term;
    if (!preVote) {
      electionElapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    r.term = term_;
    r.reject = true;
  }
  send(std::move(r));
}

void Raft::stepCandidate(Message& m) {
  switch (m.type) {
    case MsgType::Append:
    case MsgType::Heartbeat:
    case MsgType::Snapshot:
      becomeFollower(term_, m.from);
      stepFollower(m);
      return;
    case MsgType::PreVoteResp:
    case MsgType::VoteResp: {
      bool mine = role_ == Role::PreCandidate
                      ? m.type == MsgType::PreVoteResp && m.term == term_ + 1
                      : m.type == MsgType::VoteResp && m.term == term_;
      if (!mine && !m.reject) return;
      if (m.reject) {
        votesRejected_.insert(m.from);
      } else {
        votesGranted_.insert(m.from);
      }
      if (hasQuorum(votesGranted_)) {
        if (role_ == Role::PreCandidate) {
          campaign(false, false);
        } else {
          becomeLeader();
        }
      } else if (hasQuorum(votesRejected_)) {
        becomeFollower(term_, kNoNode);
      }
      return;
    }
    case MsgType::ReadIndexResp: outReads_.push_back(ReadState{m.context, 0, true}); return;
    default: return;
  }
}

void Raft::stepFollower(Message& m) {
  switch (m.type) {
    case MsgType::Append:
      electionElapsed_ = 0;
      leader_ = m.from;
      handleAppend(m);
      return;
    case MsgType::Heartbeat:
      electionElapsed_ = 0;
      leader_ = m.from;
      handleHeartbeat(m);
      return;
    case MsgType::Snapshot:
      electionElapsed_ = 0;
      leader_ = m.from;
      handleSnapshotChunk(m);
      return;
    case MsgType::ReadIndexResp:
      hitProbe(m.reject ? Probe::ReadIndexRejected : Probe::FollowerRead);
      outReads_.push_back(ReadState{m.context, m.index, m.reject});
      return;
    default: return;
  }
}

void Raft::handleAppend(Message& m) {
  Message r = outgoing(MsgType::AppendResp, m.from);
  markRecoveringResponse(r);
  if (m.index < commit_) {
    r.index = commit_;
    send(std::move(r));
    return;
  }
  if (!matchTerm(m.index, m.logTerm)) {
    // Fast back-up: point the leader at the last index whose term is <= the leader's
    // previous-entry term, so each round trip skips a whole term.
    Index hint = findConflictByTerm(std::min(m.index, lastIndex()), m.logTerm);
    r.reject = true;
    r.index = m.index;
    r.rejectHint = hint;
    r.logTerm = termAt(hint).value_or(0);
    send(std::move(r));
    return;
  }
  Index lastNew = m.index + m.entries.size();
  size_t firstNew = m.entries.size();
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const Entry& e = m.entries[i];
    if (e.index > lastIndex() || !matchTerm(e.index, e.term)) {
      firstNew = i;
      break;
    }
  }
  if (firstNew < m.entries.size()) {
    std::vector<Entry> fresh(std::make_move_iterator(m.entries.begin() + firstNew),
                             std::make_move_iterator(m.entries.end()));
    appendLocal(std::move(fresh));
  }
  Index newCommit = std::min(m.commit, lastNew);
  if (newCommit > commit_) setCommit(newCommit);
  if (!recovering_) noteHeldByAll(m.heldByAll);
  r.index = lastNew;
  send(std::move(r));
  noteLeaderMatch(lastNew);
}

void Raft::handleHeartbeat(const Message& m) {
  // The leader's view of our log (m.commit <= what we acknowledged) is stale while we
  // recover: our log may be an older version of itself. Only what an Append verified.
  Index newCommit = std::min(m.commit, recovering_ ? recoveryVerified() : lastIndex());
  if (newCommit > commit_) setCommit(newCommit);
  if (!recovering_) noteHeldByAll(m.heldByAll);
  maybeFinishRecovery();
  if (recovering_ && m.commit > recoveryVerified()) askLeaderToVerify(m.from);
  Message r = outgoing(MsgType::HeartbeatResp, m.from);
  r.context = m.context;
  send(std::move(r));
}

void Raft::handleSnapshotChunk(Message& m) {
  if (m.snap.index <= commit_) {
    // Already have everything it covers: tell the leader where we are.
    incoming_.reset();
    Message r = outgoing(MsgType::AppendResp, m.from);
    r.index = commit_;
    send(std::move(r));
    return;
  }
  bool continues = incoming_ && incoming_->from == m.from && incoming_->term == m.term &&
                   incoming_->meta == m.snap && incoming_->size == m.snapSize &&
                   incoming_->data.size() == m.snapOffset;
  if (m.snapOffset == 0 && !continues) {
    incoming_ = IncomingSnapshot{m.from, m.term, m.snap, m.snapSize, {}};
    // One buffer of the announced size (at most kMaxSnapshotBytes, checked with the
    // message): a string grown chunk by chunk holds two copies each time it doubles.
    incoming_->data.reserve(m.snapSize);
    continues = true;
  }
  if (!continues) {
    // Out of order (a lost or duplicated chunk): ask for the offset we need.
    Message r = outgoing(MsgType::SnapshotResp, m.from);
    r.index = m.snap.index;
    r.snapOffset = incoming_ && incoming_->meta == m.snap ? incoming_->data.size() : 0;
    send(std::move(r));
    return;
  }
  incoming_->data.append(m.snapChunk);
  if (incoming_->data.size() < incoming_->size) {
    Message r = outgoing(MsgType::SnapshotResp, m.from);
    r.index = m.snap.index;
    r.snapOffset = incoming_->data.size();
    send(std::move(r));
    return;
  }
  Snapshot snap;
  snap.meta = incoming_->meta;
  snap.data = std::make_shared<const std::string>(std::move(incoming_->data));
  incoming_.reset();
  installSnapshot(std::move(snap));
  noteLeaderMatch(commit_);
  Message r = outgoing(MsgType::AppendResp, m.from);
  r.index = m.snap.index;
  send(std::move(r));
}

void Raft::installSnapshot(Snapshot snap) {
  const SnapshotMeta meta = snap.meta;
  KJ_ASSERT(meta.index > commit_);
  if (matchTerm(meta.index, meta.term)) {
    // Raft Figure 13, step 6: our log already holds the snapshot's last entry, so the
    // suffix after it stays (the next Append replaces any part of it that conflicts);
    // entries up to it are now committed.
    hitProbe(Probe::SnapshotKeptSuffix);
    setCommit(meta.index);
    return;
  }
  // Step 7: discard the whole log and reset the state machine from the snapshot.
  if (meta.index <= lastIndex()) hitProbe(Probe::SnapshotOverConflict);
  log_.clear();
  confEntries_.clear();
  logOffset_ = meta.index;
  logOffsetTerm_ = meta.term;
  commit_ = meta.index;
  applied_ = meta.index;
  handedCommitted_ = meta.index;
  stable_ = meta.index;
  unstableFrom_ = meta.index + 1;
  snapshotBytes_ = snap.data->size();
  snapshot_ = std::move(snap);
  snapshotPending_ = true;
  if (!isVoter(config_.id)) hitProbe(Probe::LearnerSnapshot);
  refreshConf(true);
}

// ---------------------------------------------------------------- leader

void Raft::stepLeader(Message& m) {
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  if (m.type == MsgType::AppendResp || m.type == MsgType::HeartbeatResp ||
      m.type == MsgType::SnapshotResp) {
    it->second.recentActive = true;
    it->second.silentRounds = 0;
  }
  switch (m.type) {
    case MsgType::AppendResp: handleAppendResp(m); return;
    case MsgType::HeartbeatResp: handleHeartbeatResp(m); return;
    case MsgType::SnapshotResp: handleSnapshotResp(m); return;
    default: return;
  }
}

void Raft::handleAppendResp(const Message& m) {
  Progress& pr = progress_[m.from];
  if (m.reject) {
    if (m.context == kRecoveringResponse) forgetLostMatch(pr, m);
    bool stale = pr.state == ProgressState::Replicate ? m.index <= pr.match
                                                      : m.index != pr.next - 1;
    if (stale || pr.state == ProgressState::Snapshot) return;
    Index probe = m.rejectHint;
    if (m.logTerm > 0) probe = findConflictByTerm(m.rejectHint, m.logTerm);
    if (probe < m.rejectHint) hitProbe(Probe::RejectBackupByTerm);
    pr.next = std::max(std::min(m.index, probe + 1), pr.match + 1);
    pr.state = ProgressState::Probe;
    pr.inflight.clear();
    pr.probeSent = false;
    sendAppend(m.from, true);
    return;
  }
  if (m.index > lastIndex()) return;  // cannot be: a follower acked more than we sent
  if (m.index > pr.match) {
    pr.match = m.index;
    pr.next = std::max(pr.next, pr.match + 1);
    while (!pr.inflight.empty() && pr.inflight.front() <= pr.match) pr.inflight.pop_front();
    if (pr.state != ProgressState::Replicate) {
      pr.state = ProgressState::Replicate;
      pr.next = pr.match + 1;
      pr.inflight.clear();
    }
    maybeCommit();
  } else if (pr.state == ProgressState::Probe) {
    pr.probeSent = false;
  }
  if (transferTarget_ == m.from && pr.match == lastIndex()) {
    hitProbe(Probe::TransferTimeoutNow);
    Message t = outgoing(MsgType::TimeoutNow, m.from);
    send(std::move(t));
  }
  sendAppend(m.from, false);
}

void Raft::handleHeartbeatResp(Message& m) {
  Progress& pr = progress_[m.from];
  pr.probeSent = false;
  if (pr.state == ProgressState::Replicate && pr.inflight.size() >= config_.maxInflight) {
    // An Append may have been lost: free one slot so the follower can tell us.
    pr.inflight.pop_front();
  }
  if (pr.match < lastIndex() && pr.state != ProgressState::Snapshot) sendAppend(m.from, true);
  if (m.context > 0) {
    for (auto& round : readRounds_) {
      if (round.id <= m.context) round.acks.insert(m.from);
    }
    releaseReadRounds();
  }
}

void Raft::handleSnapshotResp(const Message& m) {
  Progress& pr = progress_[m.from];
  if (pr.state != ProgressState::Snapshot || m.index != pr.snapIndex) return;
  pr.snapOffset = m.snapOffset;
  sendSnapshotChunk(m.from, pr);
}

ProposeError Raft::propose(SharedBytes data, Index* index) {
  if (role_ != Role::Leader) return ProposeError::NotLeader;
  if (transferTarget_ != kNoNode) return ProposeError::TransferInProgress;
  if (data.size() > limits::kMaxAppendBytes) return ProposeError::TooLarge;
  if (uncommittedBytes_ + data.size() > limits::kMaxUncommittedBytes) return ProposeError::Busy;
  Index at = lastIndex() + 1;
  appendAndBroadcast(Entry{term_, at, EntryKind::Command, std::move(data)});
  if (index != nullptr) *index = at;
  return ProposeError::None;
}

ConfChangeError Raft::proposeConfChange(const ConfChange& cc, Index* index) {
  if (role_ != Role::Leader) return ConfChangeError::NotLeader;
  if (transferTarget_ != kNoNode) return ConfChangeError::TransferInProgress;
  // Single-server changes are safe only once this leader committed an entry of its own
  // term: an older leader's uncommitted change it does not hold could otherwise form a
  // majority disjoint from this one's (Ongaro, raft-dev 2015; thesis §4.1 erratum).
  if (termAt(commit_) != term_) {
    hitProbe(Probe::ConfChangeNotReady);
    return ConfChangeError::NotReady;
  }
  if (!confEntries_.empty() && confEntries_.back() > commit_)
    return ConfChangeError::InProgress;
  ConfState next;
  ConfChangeError err = applyConfChange(conf_, cc, &next);
  if (err != ConfChangeError::None) return err;
  if (cc.type == ConfChangeType::Promote) {
    const Progress& pr = progress_[cc.id];
    if (pr.state != ProgressState::Replicate ||
        pr.match + limits::kMaxPromoteLagEntries < lastIndex()) {
      hitProbe(Probe::PromoteRefusedLag);
      return ConfChangeError::LearnerLags;
    }
  }
  Index at = lastIndex() + 1;
  appendAndBroadcast(Entry{term_, at, EntryKind::Config, encodeConf(next)});
  if (index != nullptr) *index = at;
  return ConfChangeError::None;
}

void Raft::appendAndBroadcast(Entry entry) {
  KJ_ASSERT(role_ == Role::Leader && entry.index == lastIndex() + 1 && entry.term == term_);
  uncommittedBytes_ += entryBytes(entry);
  bool config = entry.kind == EntryKind::Config;
  if (config) confEntries_.push_back(entry.index);
  log_.push_back(std::move(entry));
  unstableFrom_ = std::min(unstableFrom_, lastIndex());
  broadcastPending_ = true;
  if (config) refreshConf(false);
  if (conf_.voters.size() == 1) maybeCommit();
}

void Raft::sendAppend(NodeId to, bool allowEmpty) {
  Progress& pr = progress_[to];
  for (;;) {
    if (pr.state == ProgressState::Snapshot) return;
    if (pr.state == ProgressState::Probe && pr.probeSent) return;
    if (pr.state == ProgressState::Replicate && pr.inflight.size() >= config_.maxInflight)
      return;
    Index prev = pr.next - 1;
    auto prevTerm = termAt(prev);
    if (!prevTerm || pr.next <= payloadFloor_) {
      // What the follower needs was compacted away, or only the terms of it are left (it
      // lost entries it held): send the snapshot instead, once one covers every entry
      // without its payload.
      if (snapshot_.meta.index < payloadFloor_) {
        hitProbe(Probe::SnapshotForReleasedLog);
        snapshotWanted_ = true;
        pr.state = ProgressState::Probe;
        pr.inflight.clear();
        pr.probeSent = false;
        return;
      }
      KJ_ASSERT(snapshot_.data != nullptr || (reader_ != nullptr && snapshot_.meta.index > 0),
                "log compacted without a snapshot");
      pr.state = ProgressState::Snapshot;
      pr.snapIndex = snapshot_.meta.index;
      pr.snapOffset = 0;
      pr.inflight.clear();
      sendSnapshotChunk(to, pr);
      return;
    }
    Message m = outgoing(MsgType::Append, to);
    m.index = prev;
    m.logTerm = *prevTerm;
    size_t bytes = 0;
    KJ_ASSERT(pr.next > payloadFloor_, "sending entries without their payloads", pr.next);
    for (Index i = pr.next; i <= lastIndex(); ++i) {
      const Entry& e = *entryAt(i);
      if (!m.entries.empty() && (bytes + entryBytes(e) > config_.maxAppendBytes ||
                                 m.entries.size() >= limits::kMaxEntriesPerAppend)) {
        break;
      }
      bytes += entryBytes(e);
      m.entries.push_back(e);
    }
    if (m.entries.empty() && !allowEmpty) return;
    m.commit = commit_;
    m.heldByAll = std::min(heldByAll_, commit_);
    pr.commitSent = std::max(pr.commitSent, commit_);
    Index last = prev + m.entries.size();
    if (pr.state == ProgressState::Replicate) {
      if (!m.entries.empty()) {
        pr.next = last + 1;
        pr.inflight.push_back(last);
      }
    } else {
      pr.probeSent = true;
    }
    bool more = pr.state == ProgressState::Replicate && !m.entries.empty() &&
                pr.next <= lastIndex();
    send(std::move(m));
    if (!more) return;
    allowEmpty = false;
  }
}

void Raft::sendSnapshotChunk(NodeId to, Progress& pr) {
  KJ_ASSERT(snapshot_.data != nullptr || reader_ != nullptr);
  KJ_ASSERT(snapshot_.data == nullptr || snapshot_.data->size() == snapshotBytes_);
  if (pr.snapIndex != snapshot_.meta.index) {
    // A newer local snapshot replaced the one being sent: start over with it.
    pr.snapIndex = snapshot_.meta.index;
    pr.snapOffset = 0;
  }
  if (pr.snapOffset > snapshotBytes_) pr.snapOffset = 0;
  pr.snapIdleTicks = 0;
  Message m;
  if (snapshot_.data != nullptr) {
    m.snapChunk = snapshot_.data->substr(pr.snapOffset, config_.snapshotChunkBytes);
  } else if (pr.snapOffset < snapshotBytes_) {
    // The bytes are only on disk: read this chunk back. If the storage no longer holds
    // them (a newer snapshot is becoming durable), send nothing: the idle ticks resend.
    const size_t want = std::min<uint64_t>(config_.snapshotChunkBytes,
                                           snapshotBytes_ - pr.snapOffset);
    if (!reader_->readSnapshot(snapshot_.meta, snapshotBytes_, pr.snapOffset, want,
                               &m.snapChunk)) {
      return;
    }
    hitProbe(Probe::SnapshotChunkFromStorage);
    KJ_ASSERT(m.snapChunk.size() == want, "snapshot reader returned a short chunk",
              m.snapChunk.size(), want);
  }
  m.type = MsgType::Snapshot;
  m.to = to;
  m.term = term_;
  m.snap = snapshot_.meta;
  m.snapOffset = pr.snapOffset;
  m.snapSize = snapshotBytes_;
  m.snapDone = pr.snapOffset + m.snapChunk.size() == snapshotBytes_;
  send(std::move(m));
}

void Raft::snapshotDurable(const SnapshotMeta& meta) {
  if (reader_ == nullptr || snapshot_.data == nullptr || !(snapshot_.meta == meta)) return;
  KJ_ASSERT(snapshot_.data->size() == snapshotBytes_);
  snapshot_.data.reset();
}

void Raft::broadcastHeartbeat(uint64_t readRound) {
  for (auto& [id, pr] : progress_) {
    if (id == config_.id) continue;
    Message m = outgoing(MsgType::Heartbeat, id);
    m.commit = std::min(pr.match, commit_);
    m.heldByAll = std::min(heldByAll_, m.commit);
    pr.commitSent = std::max(pr.commitSent, m.commit);
    m.context = readRound;
    send(std::move(m));
  }
}

// Followers learn a new commit index from the next Append or heartbeat; this tells the
// ones that got neither since it advanced, at most a tick late. Under load the next
// Append carries it anyway: sent at once (as before), a commit-only Append and its
// answer were half of all peer messages at 64 clients (issue 10). Only follower reads
// and follower apply wait for it, and a follower's read round is confirmed by
// heartbeats that carry the commit index themselves.
void Raft::notifyCommit() {
  commitNoticeDue_ = false;
  for (auto& [id, pr] : progress_) {
    if (id == config_.id || pr.state != ProgressState::Replicate) continue;
    if (pr.commitSent < commit_ && pr.next > lastIndex() &&
        pr.inflight.size() < config_.maxInflight) {
      sendAppend(id, true);
    }
  }
}

void Raft::maybeCommit() {
  KJ_ASSERT(role_ == Role::Leader);
  progress_[config_.id].match = stable_;
  countHeldByAll();
  std::vector<Index> matches;
  matches.reserve(conf_.voters.size());
  for (NodeId v : conf_.voters) matches.push_back(progress_[v].match);
  std::sort(matches.begin(), matches.end(), std::greater<Index>());
  Index q = matches[quorum() - 1];  // the highest index a majority of the voters hold
  // Only an entry of the current term commits by counting replicas (Figure 8).
  if (q <= commit_ || termAt(q) != term_) return;
  if (termAt(commit_ + 1) != term_) hitProbe(Probe::CommitOldTermViaNewer);
  for (Index i = commit_ + 1; i <= q; ++i) {
    size_t b = entryBytes(*entryAt(i));
    uncommittedBytes_ = uncommittedBytes_ > b ? uncommittedBytes_ - b : 0;
  }
  setCommit(q);
  commitNoticeDue_ = true;
  if (!deferredReads_.empty()) {
    auto reads = std::move(deferredReads_);
    deferredReads_.clear();
    for (auto& [from, ctx] : reads) handleReadIndexRequest(from, ctx);
  }
  maybeStepDownRemoved();
}

// ---------------------------------------------------------------- reads

void Raft::readIndex(uint64_t context) { handleReadIndexRequest(config_.id, context); }

void Raft::handleReadIndexRequest(NodeId from, uint64_t context) {
  auto fail = [&]() { answerRead(from, context, 0, true); };
  if (role_ != Role::Leader) {
    if (from == config_.id && leader_ != kNoNode && role_ == Role::Follower) {
      Message m = outgoing(MsgType::ReadIndex, leader_);
      m.context = context;
      send(std::move(m));
    } else {
      fail();
    }
    return;
  }
  size_t pending = unsentReads_.size() + deferredReads_.size();
  for (auto& r : readRounds_) pending += r.reads.size();
  if (pending >= limits::kMaxPendingReads) {
    fail();
    return;
  }
  if (termAt(commit_) != term_) {
    // Until an entry of this term commits, the leader's commit index may be behind.
    hitProbe(Probe::ReadDeferredToTermCommit);
    deferredReads_.emplace_back(from, context);
    return;
  }
  if (conf_.voters.size() == 1 && conf_.voters[0] == config_.id) {
    if (from == config_.id) outReads_.push_back(ReadState{context, commit_, false});
    return;
  }
  unsentReads_.emplace_back(from, context);
}

void Raft::releaseReadRounds() {
  // Rounds are confirmed in order: a quorum acking round r also confirms every
  // earlier round, because each ack was sent after that round began.
  size_t confirmed = 0;
  for (size_t i = 0; i < readRounds_.size(); ++i) {
    if (hasQuorum(readRounds_[i].acks)) confirmed = i + 1;
  }
  for (size_t i = 0; i < confirmed; ++i) {
    ReadRound round = std::move(readRounds_.front());
    readRounds_.pop_front();
    for (auto& [from, ctx] : round.reads) answerRead(from, ctx, round.index, false);
  }
}

void Raft::failReads() {
  std::vector<std::pair<NodeId, uint64_t>> all;
  for (auto& r : readRounds_) all.insert(all.end(), r.reads.begin(), r.reads.end());
  all.insert(all.end(), unsentReads_.begin(), unsentReads_.end());
  all.insert(all.end(), deferredReads_.begin(), deferredReads_.end());
  readRounds_.clear();
  unsentReads_.clear();
  deferredReads_.clear();
  for (auto& [from, ctx] : all) answerRead(from, ctx, 0, true);
}

void Raft::answerRead(NodeId requester, uint64_t context, Index index, bool failed) {
  if (requester == config_.id) {
    outReads_.push_back(ReadState{context, index, failed});
    return;
  }
  Message r = outgoing(MsgType::ReadIndexResp, requester);
  r.context = context;
  r.index = index;
  r.reject = failed;
  send(std::move(r));
}

// ---------------------------------------------------------------- transfer, storage

bool Raft::transferLeadership(NodeId target) {
  if (role_ != Role::Leader || target == config_.id || !isVoter(target)) return false;
  transferTarget_ = target;
  transferElapsed_ = 0;
  const Progress& pr = progress_[target];
  if (pr.match == lastIndex()) {
    Message t = outgoing(MsgType::TimeoutNow, target);
    send(std::move(t));
  } else {
    sendAppend(target, true);
  }
  return true;
}

void Raft::persisted(Index index, Term term) {
  if (index <= stable_ || !matchTerm(index, term)) return;  // overwritten since
  KJ_ASSERT(index < unstableFrom_, "storage reported entries it was never given");
  stable_ = index;
  if (role_ == Role::Leader) maybeCommit();
  maybeFinishRecovery();
}

void Raft::persistedHardState(const HardState& hs) {
  if (role_ != Role::Candidate || electedAloneTerm_ != term_) return;
  if (hs.term != term_ || hs.vote != config_.id) return;
  electedAloneTerm_ = 0;
  if (hasQuorum(votesGranted_)) becomeLeader();
}

void Raft::compacted(Snapshot snap) {
  KJ_REQUIRE(snap.data != nullptr);
  const uint64_t bytes = snap.data->size();
  compactTo(std::move(snap), bytes);
}

void Raft::compactedOnDisk(const SnapshotMeta& meta, uint64_t bytes) {
  KJ_REQUIRE(reader_ != nullptr && bytes > 0, "a snapshot only on disk needs a reader",
             meta.index, bytes);
  compactTo(Snapshot{meta, nullptr}, bytes);
}

void Raft::compactTo(Snapshot snap, uint64_t bytes) {
  const Index idx = snap.meta.index;
  if (idx <= snapshot_.meta.index) return;
  KJ_REQUIRE(idx <= applied_ && idx <= commit_, "snapshot beyond the applied state", idx,
             applied_);
  KJ_REQUIRE(matchTerm(idx, snap.meta.term) || idx <= logOffset_);
  snapshotBytes_ = bytes;
  snapshot_ = std::move(snap);
  Index keepFrom = idx > config_.compactionKeepEntries ? idx - config_.compactionKeepEntries
                                                       : 0;
  while (!log_.empty() && log_.front().index <= keepFrom) {
    if (!confEntries_.empty() && confEntries_.front() == log_.front().index)
      confEntries_.erase(confEntries_.begin());
    logOffset_ = log_.front().index;
    logOffsetTerm_ = log_.front().term;
    log_.pop_front();
  }
  if (role_ != Role::Leader) return;
  countHeldByAll();  // a member the compaction left behind no longer counts
  if (idx < payloadFloor_) return;
  // Members that waited for a snapshot covering the released payloads need not wait for
  // the next heartbeat's answer.
  for (auto& [id, pr] : progress_) {
    if (id != config_.id && pr.state == ProgressState::Probe && pr.next <= payloadFloor_)
      sendAppend(id, true);
  }
}

void Raft::applied(Index index) {
  KJ_REQUIRE(index <= handedCommitted_, index, handedCommitted_);
  applied_ = std::max(applied_, index);
  releasePayloads();
}

// The lowest match of the members that can still catch up from the log. A member that
// went silent for a whole election timeout and needs an entry the log compacted gets a
// snapshot whatever the log holds when it is back: counting it would keep every payload
// since for as long as it is down (at a million keys, 420-450 MB a node instead of 350
// with one member stopped). A member needs entries from its match + 1 (one being sent a
// snapshot: from the snapshot's index + 1); one not heard from in this term (match 0:
// unknown, not behind) at the latest from this term's first entry, since what it holds
// beyond our log as it was then is of older terms. One that answers again counts again.
void Raft::countHeldByAll() {
  KJ_ASSERT(role_ == Role::Leader);
  Index held = stable_;
  for (const auto& [id, pr] : progress_) {
    const Index match = pr.state == ProgressState::Snapshot ? std::max(pr.match, pr.snapIndex)
                                                            : pr.match;
    const Index needsFrom = match > 0 ? match + 1 : termFirstIndex_;
    if (needsFrom <= logOffset_ && pr.silentRounds > 0) continue;
    held = std::min(held, match);
  }
  noteHeldByAll(held);
}

void Raft::noteHeldByAll(Index index) {
  if (index <= heldByAll_) return;
  heldByAll_ = index;
  releasePayloads();
}

// The log between two snapshots held every payload until the next snapshot compacted it:
// at a million keys that was over 200,000 entries, a third of a node's memory (issue 10).
// An entry every member holds and we applied is needed again only for its term (log
// matching, elections); its payload would be needed only to bring back a member that
// lost its log, and a snapshot does that (sendAppend). Config entries keep their bytes:
// confAt() decodes them.
void Raft::releasePayloads() {
  const Index upTo = std::min({heldByAll_, applied_, commit_, lastIndex()});
  if (upTo <= payloadFloor_) return;
  for (Index i = std::max(payloadFloor_, logOffset_) + 1; i <= upTo; ++i) {
    Entry& e = log_[i - logOffset_ - 1];
    if (e.kind == EntryKind::Command) e.data = SharedBytes();
  }
  payloadFloor_ = upTo;
}

// ---------------------------------------------------------------- output

Message Raft::outgoing(MsgType type, NodeId to) const {
  Message m;
  m.type = type;
  m.to = to;
  m.term = term_;
  return m;
}

void Raft::send(Message m) {
  m.from = config_.id;
  if (needsPersistence(m.type)) {
    outAfterPersist_.push_back(std::move(m));
  } else {
    outNow_.push_back(std::move(m));
  }
}

Index Raft::stableCommitted() const { return std::min(commit_, stable_); }

void Raft::flushLeaderOutput() {
  if (role_ != Role::Leader) return;
  if (broadcastPending_) {
    broadcastPending_ = false;
    for (auto& [id, pr] : progress_) {
      if (id != config_.id) sendAppend(id, false);
    }
  }
  if (!unsentReads_.empty()) {
    ReadRound round{nextReadRound_++, commit_, {config_.id}, std::move(unsentReads_)};
    unsentReads_.clear();
    readRounds_.push_back(std::move(round));
    broadcastHeartbeat(readRounds_.back().id);
  }
}

bool Raft::hasReady() const {
  return !outNow_.empty() || !outAfterPersist_.empty() || !outReads_.empty() ||
         unstableFrom_ <= lastIndex() || snapshotPending_ || endRecoveryPending_ ||
         term_ != lastHardState_.term || vote_ != lastHardState_.vote ||
         handedCommitted_ < stableCommitted() ||
         (role_ == Role::Leader && (broadcastPending_ || !unsentReads_.empty()));
}

Ready Raft::takeReady() {
  flushLeaderOutput();
  Ready rd;
  if (snapshotPending_) {
    rd.snapshot = snapshot_;
    snapshotPending_ = false;
  }
  for (Index i = unstableFrom_; i <= lastIndex(); ++i) rd.entries.push_back(*entryAt(i));
  unstableFrom_ = lastIndex() + 1;
  HardState hs{term_, vote_, commit_};
  if (hs.term != lastHardState_.term || hs.vote != lastHardState_.vote || endRecoveryPending_ ||
      (hs.commit != lastHardState_.commit && (rd.snapshot || !rd.entries.empty()))) {
    rd.hardState = hs;
    lastHardState_ = hs;
  }
  rd.endRecovery = endRecoveryPending_;
  endRecoveryPending_ = false;
  rd.messages = std::move(outNow_);
  outNow_.clear();
  rd.afterPersist = std::move(outAfterPersist_);
  outAfterPersist_.clear();
  Index upTo = stableCommitted();
  for (Index i = handedCommitted_ + 1; i <= upTo && rd.committed.size() < kMaxCommittedPerReady;
       ++i) {
    const Entry* e = entryAt(i);
    KJ_ASSERT(e != nullptr, "committed entry missing from the log", i);
    KJ_ASSERT(i > payloadFloor_, "an entry without its payload handed out for apply", i);
    rd.committed.push_back(*e);
    handedCommitted_ = i;
  }
  rd.readStates = std::move(outReads_);
  outReads_.clear();
  return rd;
}

}  // namespace kvr
