// Checks made from outside the nodes on every event and every message: the persistence
// rule, one vote per term, availability, and the checker's per-event pass.
#include "sim/world_impl.h"

#include <kj/debug.h>

#include "core/membership.h"

namespace kvr::sim {

void World::checkPersistenceRule(NodeId from, const Message& m) {
  // Checked where the message leaves, against what the node's disk holds right now: a
  // message that claims durable state may leave only once that state is durable.
  const RecoveredState& d = node(from).store->durableState();
  if ((m.type == MsgType::VoteResp || m.type == MsgType::PreVoteResp) && !m.reject &&
      node(from).replica && node(from).replica->raft().recovering()) {
    fail("recovering_vote", kj::str("n", from, " granted a ", msgTypeName(m.type), " in term ",
                                    m.term, " to n", m.to, " while recovering")
                                .cStr());
    return;
  }
  const char* broken = nullptr;
  kj::String detail = kj::str("");
  switch (m.type) {
    case MsgType::Vote:
    case MsgType::VoteResp:
    case MsgType::HeartbeatResp:
    case MsgType::AppendResp:
    case MsgType::SnapshotResp:
      if (d.hardState.term < m.term) broken = "its term is not durable";
      break;
    default: return;
  }
  NodeId votedFor = m.type == MsgType::Vote       ? from
                    : m.type == MsgType::VoteResp ? m.to
                                                  : kNoNode;
  if (!broken && votedFor != kNoNode && !m.reject && d.hardState.term == m.term &&
      d.hardState.vote != votedFor) {
    broken = "its vote is not durable";
  }
  // An acknowledgement of an older term may leave after the node moved on and a new
  // leader cut the acknowledged entries: the claim was true (and durable) in its term.
  if (!broken && m.type == MsgType::AppendResp && !m.reject && d.hardState.term == m.term) {
    Index durableLast = d.entries.empty() ? d.snapshot.meta.index : d.entries.back().index;
    if (m.index > durableLast) {
      broken = "the entries it acknowledges are not durable";
      detail = kj::str(" (durable: snapshot ", d.snapshot.meta.index, ", log to ", durableLast,
                       ", term ", d.hardState.term, ")");
    }
  }
  if (!broken && m.type == MsgType::VoteResp && !m.reject) {
    // §5.2: at most one vote per term, across restarts too (a granted vote is durable).
    auto [it, fresh] = votes_.emplace(std::make_pair(from, m.term), m.to);
    if (!fresh && it->second != m.to) {
      fail("double_vote", kj::str("n", from, " voted for n", it->second, " and for n", m.to,
                                  " in term ", m.term)
                              .cStr());
      return;
    }
  }
  if (broken) {
    fail("persistence", kj::str("n", from, " sent ", msgTypeName(m.type), " t", m.term, " i",
                                m.index, " to n", m.to, " but ", broken, detail)
                            .cStr());
  }
}

void World::checkReadServer(NodeId server, Index committedAtArrival, History::OpId op) {
  // Stronger than the linearizability checker, which needs a conflicting write on the
  // same key to notice: any entry committed before the read arrived must be applied.
  // (A leader's read index is its commit index after it committed an entry of its own
  // term, above every entry committed before; a follower waits for that index.)
  const Raft& r = node(server).replica->raft();
  Index applied = node(server).replica->kv().appliedIndex();
  if (applied >= committedAtArrival) return;
  fail("stale_read",
       kj::str("n", server, " (", roleName(r.role()), ", term ", r.term(), ") answered #", op,
               " ", describeOperation(history_.op(op)).c_str(), " at applied index ", applied,
               ", but index ", committedAtArrival, " was committed before the read arrived")
           .cStr());
}

void World::checkSnapshotConf(NodeId id, const SnapshotMeta& meta) {
  // A snapshot (taken here or received) records the configuration in force at its index:
  // that of the newest committed Config entry at or below it (every one of those was
  // applied somewhere before any snapshot covered it), else the initial voters.
  ConfState want;
  auto it = committedConfs_.upper_bound(meta.index);
  if (it != committedConfs_.begin()) {
    want = std::prev(it)->second;
  } else {
    for (uint32_t v = 1; v <= sc_.nodes; ++v) want.voters.push_back(v);
  }
  if (meta.conf == want) return;
  // A node that joined knows nothing before its own addition: below the first Config
  // entry its log holds, its configuration is the one it booted with (which has it).
  const ConfState& boot = node(id).bootConf;
  if (!boot.voters.empty() && meta.conf == boot) return;
  fail("snapshot_conf", kj::str("n", id, " stores a snapshot at ", meta.index, " with ",
                                describeConf(meta.conf).c_str(),
                                "; in force there: ", describeConf(want).c_str())
                            .cStr());
}

void World::observeRoles() {
  for (auto& n : nodes_) {
    Role role = n.up ? n.replica->raft().role() : Role::Follower;
    Term term = n.up ? n.replica->raft().term() : 0;
    Role was = prevRole_[n.id];
    Term wasTerm = prevTerm_[n.id];
    prevRole_[n.id] = role;
    prevTerm_[n.id] = term;
    if (!n.up || stop_) continue;
    if (role == Role::Leader && (was != Role::Leader || wasTerm != term) &&
        (n.durableHardState.term != term || n.durableHardState.vote != n.id)) {
      // Every vote it counted was durable before it was sent, its own included: else a
      // crash could take the vote back and it could vote again in that term.
      fail("vote_durability",
           kj::str("n", n.id, " leads term ", term, " while its storage holds term ",
                   n.durableHardState.term, ", vote ", n.durableHardState.vote)
               .cStr());
      return;
    }
    // Elections only where pre-vote and check-quorum should prevent them (availability).
    if (!sc_.preVote || !sc_.checkQuorum) continue;
    // A node that is not a voter (a learner, or removed without knowing it yet) may
    // campaign in vain (members drop its requests unless its log is as long as theirs:
    // then it may be a voter in a configuration they lack), disturbing no one.
    if (sc_.membership() && !isVoterNow(n.id)) continue;
    if (role == Role::Candidate && (was != Role::Candidate || wasTerm != term)) {
      checkDisruption(n.id, term, false);
    } else if (was == Role::Leader && role != Role::Leader && term == wasTerm) {
      checkDisruption(n.id, term + 1, true);
    }
    if (role == Role::Leader && (was != Role::Leader || wasTerm != term)) {
      leaderSince_[n.id] = q_.now();
    }
  }
}

bool World::quietSince(NodeId id, uint64_t since) const {
  const Node& n = nodes_[id - 1];
  return n.up && n.drift == 1.0 && nodeTrouble_[id] < since && n.pausedUntil <= q_.now();
}

void World::checkDisruption(NodeId who, Term newTerm, bool stepDown) {
  const char* what = stepDown ? "stepped down" : "started an election";
  // The window in which a fault can still explain an election: two of the longest
  // election timeouts (a slow clock stretches one to 3 x electionTicks ticks), plus
  // the longest late message.
  uint64_t window = disruptionWindow();
  if (q_.now() < window) return;
  uint64_t since = q_.now() - window;
  if (lastTransferNs_ >= since) return;
  NodeId leader = kNoNode;
  for (auto& n : nodes_) {
    if (n.up && n.replica->raft().role() == Role::Leader &&
        n.replica->raft().term() + 1 == newTerm) {
      leader = n.id;
    }
  }
  if (stepDown) leader = who;
  if (leader == kNoNode || !quietSince(leader, since)) return;
  if (leaderSince_[leader] >= since) return;
  // Counted in the leader's configuration: only its voters make a quorum.
  const ConfState& conf = node(leader).replica->raft().conf();
  uint32_t healthy = isVoterIn(conf, leader) ? 1 : 0;
  for (auto& f : nodes_) {
    if (f.id == leader || !isVoterIn(conf, f.id) || !quietSince(f.id, since)) continue;
    if (blocked_[leader][f.id] || blocked_[f.id][leader]) continue;
    if (linkTrouble_[leader][f.id] >= since || linkTrouble_[f.id][leader] >= since) continue;
    ++healthy;
  }
  if (healthy < conf.voters.size() / 2 + 1) return;
  fail("availability",
       kj::str("n", who, " ", what, " (term ", newTerm, ") while leader n", leader,
               " had a quorum that no fault touched for ", window / kMs, " ms")
           .cStr());
}

void World::markOnTimeline(Fault f) {
  switch (f) {
    case Fault::Drop:
    case Fault::Delay:
    case Fault::Reorder:
    case Fault::Duplicate:
    case Fault::SlowFsync:
    case Fault::ClientLoss:
    case Fault::Replay: return;  // per message or write: thousands a run, noise on a page
    default: timeline_->mark(q_.now(), faultName(f));
  }
}

void World::observeTimeline() {
  std::vector<NodeLook> looks(nodes_.size());
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    NodeLook& l = looks[i];
    l.state = n.dead ? NodeLook::Dead : NodeLook::Down;
    l.driftPermille = static_cast<uint32_t>(n.drift * 1000 + 0.5);
    if (!n.up) continue;
    const Raft& r = n.replica->raft();
    static constexpr NodeLook::State kByRole[] = {NodeLook::Follower, NodeLook::PreCandidate,
                                                  NodeLook::Candidate, NodeLook::Leader};
    l.state = kByRole[static_cast<size_t>(r.role())];
    l.term = r.term();
    l.paused = n.pausedUntil > q_.now();
  }
  timeline_->observe(q_.now(), looks, blocked_);
}

void World::checkRecoveryEnd(Node& n) {
  // A node that leaves its recovering state votes again: it must hold again every
  // committed entry its disk held before the damage.
  const Raft& r = n.replica->raft();
  if (n.recovering && !r.recovering()) {
    const Index floor = n.durableCommittedFloor;
    if (r.lastIndex() < floor || r.stableIndex() < floor ||
        (floor > r.snapshotIndex() && !checker_.isCommitted(r, floor))) {
      const Entry* e = r.lastIndex() >= floor ? r.entryAt(floor) : nullptr;
      fail("durability",
           kj::str("n", n.id, " (term ", r.term(), ") left its recovering state without ",
                   "committed entry ", floor, " (term ", checker_.committedTerm(floor),
                   ") it held before the damage (log to ", r.lastIndex(), ", durable to ",
                   r.stableIndex(), "; its entry there: term ", e ? e->term : 0, ")")
               .cStr());
    }
  }
  n.recovering = r.recovering();
}

void World::afterEvent() {
  if (timeline_) observeTimeline();
  if (stop_) return;
  // First: it may crash a node, and the checks below must see the world after that.
  if (chaos_ && q_.now() < flakyUntil_) watchLeaders();
  if (race_.phase != 0) confRaceStep();
  if (stale_.phase != 0) staleVoterStep();      // may crash a node too
  if (cutoff_.phase != 0) cutoffRemovalStep();  // and so may this
  // Refilled in place: this runs after every event.
  std::vector<const Replica*>& reps = replicaView_;
  reps.clear();
  for (auto& n : nodes_) {
    reps.push_back(n.up ? n.replica.get() : nullptr);
    if (!n.up) continue;
    highestCommit_ = std::max(highestCommit_, n.replica->raft().commitIndex());
  }
  checker_.afterEvent(reps);
  observeRoles();
  if (sc_.membership()) {
    for (auto& n : nodes_) {
      if (n.up && n.replica->raft().role() == Role::Leader) checkCommitQuorum(n);
    }
  }
  for (auto& n : nodes_) {
    // An applied index that moved without an apply: a snapshot was installed. Its
    // state must be what the replicas that applied up to there had.
    if (!n.up) continue;
    checkRecoveryEnd(n);
    Index applied = n.replica->kv().appliedIndex();
    if (applied != n.appliedSeen) {
      n.appliedSeen = applied;
      checker_.onState(n.id, applied, n.replica->kv().digest(), "installing a snapshot");
    }
  }
  if (q_.executed() % kFullCheckEvery == 0) checker_.fullCheck(reps);
  if (checker_.failed()) {
    fail(checker_.violation()->property, checker_.violation()->detail);
    return;
  }
  // Last: it may crash a node, and the checks above must see what it did as leader.
  if (fig8_.phase != Fig8::Off) figure8Step();
  if (suffix_.phase != Suffix::Off) suffixStep();
}

}  // namespace kvr::sim
