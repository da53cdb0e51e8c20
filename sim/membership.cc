// The membership nemesis: during the chaos, every ~memberEveryNs the current leader is
// asked for one membership change (add a spare node as a learner, promote a learner,
// remove a member, the leader itself included), now and then for a change it must
// refuse (and then nothing may change). Spare slots join as empty nodes and catch up
// from the log or a snapshot; a removed node keeps running for a while (it must not
// disturb anyone) and is then destroyed for good; ids are never reused.
//
// And the checker that knows configurations: every index a leader commits must be
// durable on a majority of the voters of the leader's configuration.
#include <memory>
#include <optional>

#include <kj/debug.h>

#include "core/membership.h"
#include "sim/world_impl.h"

namespace kvr::sim {

namespace {

constexpr double kMemberStoryShare = 0.5;
constexpr uint32_t kMemberStoryMaxTries = 200;

ConfChange addChange(NodeId id) {
  return ConfChange{ConfChangeType::AddLearner, id, kj::str("sim:n", id, ":raft").cStr(),
                    kj::str("sim:n", id, ":client").cStr()};
}

}  // namespace

void World::scheduleMembership() {
  uint64_t delay = memberRng_.below(2 * sc_.memberEveryNs) + 1;
  q_.after(delay, [this]() {
    if (!chaos_ || stop_) return;
    membershipStep();
    scheduleMembership();
  });
}

bool World::isVoterNow(NodeId id) const {
  NodeId leader = currentLeader();
  if (leader == kNoNode) return true;
  return isVoterIn(nodes_[leader - 1].replica->raft().conf(), id);
}

// One of the membership stories, when the configuration has its shape (and its draw
// comes up): true if one started.
bool World::startMembershipStory(NodeId lid, const ConfState& conf) {
  if (conf.voters.size() == 4 && !conf.learners.empty() && memberRng_.chance(0.8) &&
      startConfRace(lid, conf)) {
    return true;
  }
  if ((conf.voters.size() == 2 || conf.voters.size() == 3) && !conf.learners.empty() &&
      sc_.faults.has(Fault::Crash) && memberRng_.chance(0.7) && startStaleVoter(lid, conf)) {
    return true;
  }
  if (!sc_.preVote && conf.voters.size() >= 3 && cutoff_.runs < 2 &&
      memberStoryRng_.chance(0.5) && startCutoffRemoval(lid, conf)) {
    return true;
  }
  if (conf.voters.size() >= 3 && !conf.learners.empty() && memberRng_.chance(0.25) &&
      startChangePile(lid, conf)) {
    return true;
  }
  if (conf.voters.size() == 1 && !conf.learners.empty() && sc_.faults.has(Fault::Crash) &&
      memberRng_.chance(0.5)) {
    startLoneVoterStory(lid);
    return true;
  }
  return false;
}

void World::membershipStep() {
  NodeId lid = currentLeader();
  if (lid == kNoNode) return;
  Replica& leader = *node(lid).replica;
  const ConfState conf = leader.raft().conf();
  if (race_.phase != 0 || stale_.phase != 0 || cutoff_.phase != 0 ||
      q_.now() < memberStory_.holdMembership) {
    return;
  }
  if (memberRng_.chance(0.15)) {
    tryBadChange(leader, conf);
    return;
  }
  if (startMembershipStory(lid, conf)) return;
  std::vector<NodeId> spares, learners, removable;
  uint32_t corruptVoters = 0;
  for (NodeId v : conf.voters) corruptVoters += node(v).corruptible ? 1 : 0;
  for (auto& n : nodes_) {
    if (n.id > sc_.nodes && !n.removed && !isMemberOf(conf, n.id)) spares.push_back(n.id);
    if (isLearnerIn(conf, n.id)) {
      learners.push_back(n.id);
      removable.push_back(n.id);
    }
    if (isVoterIn(conf, n.id) && conf.voters.size() >= 2) {
      // Bit flips stay within a minority of the voters after the change too.
      size_t voters = conf.voters.size() - 1;
      uint32_t corrupt = corruptVoters - (n.corruptible ? 1 : 0);
      if (corrupt <= (voters - 1) / 2) removable.push_back(n.id);
    }
  }
  ConfChange cc;
  uint64_t pick = memberRng_.below(100);
  // Lean towards four voters and a learner, the shape the change race needs.
  if (conf.voters.size() == 4 && conf.learners.empty()) pick = 0;
  if (conf.voters.size() < 4 && !learners.empty() && pick < 40) pick = 40;
  if (!spares.empty() && (pick < 40 || (learners.empty() && removable.empty()))) {
    cc = addChange(spares[memberRng_.below(spares.size())]);
  } else if (!learners.empty() && (pick < 75 || removable.empty())) {
    cc = ConfChange{ConfChangeType::Promote,
                    learners[memberRng_.below(learners.size())],
                    {},
                    {}};
  } else if (!removable.empty()) {
    NodeId victim = removable[memberRng_.below(removable.size())];
    bool leaderRemovable = std::find(removable.begin(), removable.end(), lid) !=
                           removable.end();
    if (leaderRemovable && memberRng_.chance(0.3)) victim = lid;
    cc = ConfChange{ConfChangeType::Remove, victim, {}, {}};
  } else {
    return;
  }
  if (cc.type == ConfChangeType::Remove && cc.id == lid) {
    lastTransferNs_ = q_.now();  // the leader hands over once this commits
  }
  auto answered = std::make_shared<bool>(false);
  const Index before = leader.raft().lastIndex();
  leader.proposeConfChange(cc, [this, lid, cc, answered](ConfChangeReply r) {
    *answered = true;
    trace(kj::str("n", lid, " membership ", confChangeTypeName(cc.type), " n", cc.id, ": ",
                  statusName(r.status),
                  r.status == Status::Invalid || r.error != ConfChangeError::None
                      ? kj::str(" (", confChangeErrorText(r.error), ")")
                      : kj::str(""),
                  " at ", r.index)
              .cStr());
    if (r.status == Status::Ok && cc.type == ConfChangeType::Remove) {
      node(cc.id).removed = true;
      // It keeps running for a while, not knowing perhaps that it is out; then it goes.
      q_.after(memberRng_.between(100 * kMs, 3000 * kMs),
               [this, id = cc.id]() { retireNode(id); });
    }
  });
  if (*answered) return;  // refused at once: nothing changed
  ++result_.memberChanges;
  // Now and then a snapshot at once, the change in the log but not yet applied: it must
  // record the configuration as of its own index (checkSnapshotConf). Drawn from the
  // stories' stream, so the nemesis's own draws stay what they were.
  if (memberStoryRng_.chance(0.25)) leader.requestSnapshot();
  KJ_ASSERT(leader.raft().lastIndex() == before + 1);
  if (cc.type == ConfChangeType::AddLearner) joinNode(cc.id, leader.raft().conf());
}

// Four voters A (the leader), B, C, D and a caught-up learner L. A promotes L while cut
// off with it: C1 = {A,B,C,D,L} holds only on A's side. B, C, D elect a new leader, say B,
// and at that very moment D is cut off too and B proposes removing A: C2 = {B,C,D},
// whose majority B and C can commit. Safe only because B may not propose C2 before an
// entry of its term commits, which takes D as well (3 of A,B,C,D); D then holds a newer
// term than A and refuses it. Without that rule A wins D's and L's votes under C1 while
// B and C commit under C2: two leaders commit different entries at one index.
bool World::startConfRace(NodeId lid, const ConfState& conf) {
  Replica& leader = *node(lid).replica;
  NodeId learner = conf.learners[memberRng_.below(conf.learners.size())];
  if (!node(learner).up) return false;
  splitSides({lid, learner});
  // The answer may come long after this returns: it owns what it writes to.
  auto answered = std::make_shared<bool>(false);
  leader.proposeConfChange(ConfChange{ConfChangeType::Promote, learner, {}, {}},
                           [answered](ConfChangeReply) { *answered = true; });
  if (*answered) {
    unblockAll();
    return false;
  }
  ++result_.memberChanges;
  trace(kj::str("membership race: n", lid, " promotes n", learner, " cut off with it").cStr());
  race_ = ConfRace{1, lid, learner, leader.raft().term(), q_.now() + 5000 * kMs, partitionGen_};
  return true;
}

// One voter and a learner: the voter wins every election alone, with no vote request
// to wait for its vote to be durable. It crashes now, and for a few seconds each flush
// that writes a new vote of its is slow and usually cut by a crash: a voter that led
// before its vote was durable would have sent Appends at a term it then wins again
// with other entries (regression seeds single-voter-*).
void World::startLoneVoterStory(NodeId voter) {
  Node& n = node(voter);
  uint64_t span = memberRng_.between(2000 * kMs, 4000 * kMs);
  n.fragileVotesUntil = q_.now() + span;
  trace(kj::str("membership story: lone voter n", voter,
                " crashes; its vote flushes are "
                "fragile for ",
                span / kMs, " ms")
            .cStr());
  count(Fault::Crash);
  crashNode(n, "lone voter story");
  restartAfter(voter, memberRng_.between(1 * kMs, 50 * kMs));
}

// The leader, cut off with a learner, promotes it and removes voters on the other side
// until it and the learner are a majority of what is left: one change at a time, each
// after the one before commits, can never get there (the promotion needs a voter of the
// other side). A leader that took the changes while the first was uncommitted would
// commit with the learner while the other side, under the old configuration, elects a
// leader of its own.
bool World::startChangePile(NodeId lid, const ConfState& conf) {
  Replica& leader = *node(lid).replica;
  NodeId learner = conf.learners[memberRng_.below(conf.learners.size())];
  if (!node(learner).up) return false;
  std::vector<NodeId> others;
  for (NodeId v : conf.voters) {
    if (v != lid) others.push_back(v);
  }
  std::vector<ConfChange> pile{ConfChange{ConfChangeType::Promote, learner, {}, {}}};
  while (others.size() > 1) {
    size_t k = memberRng_.below(others.size());
    pile.push_back(ConfChange{ConfChangeType::Remove, others[k], {}, {}});
    others.erase(others.begin() + static_cast<ptrdiff_t>(k));
  }
  splitSides({lid, learner});
  size_t accepted = 0;
  ConfChangeError refusal = ConfChangeError::None;
  for (const ConfChange& cc : pile) {
    auto got = std::make_shared<std::optional<ConfChangeReply>>();
    leader.proposeConfChange(cc, [got](ConfChangeReply r) { *got = r; });
    if (*got) {
      refusal = (*got)->error;  // refused at once: InProgress after the first
      break;
    }
    ++accepted;
    ++result_.memberChanges;
  }
  trace(kj::str("membership pile: n", lid, " cut off with learner n", learner, " proposes ",
                pile.size(), " changes: ", accepted, " accepted",
                refusal == ConfChangeError::None
                    ? kj::str("")
                    : kj::str(", then refused: ", confChangeErrorText(refusal)))
            .cStr());
  if (accepted == 0) {
    unblockAll();
    return false;
  }
  return true;
}

void World::splitSides(const std::vector<NodeId>& side) {
  uint64_t gen = ++partitionGen_;
  std::vector<bool> in(slots() + 1, false);
  for (NodeId id : side) in[id] = true;
  for (uint32_t a = 1; a <= slots(); ++a)
    for (uint32_t b = 1; b <= slots(); ++b) blocked_[a][b] = in[a] != in[b];
  healPartitionAfter(memberRng_.between(2000 * kMs, 6000 * kMs), gen);
}

void World::confRaceStep() {
  if (!chaos_ || q_.now() > race_.until) {
    race_.phase = 0;
    return;
  }
  NodeId lid = currentLeader();
  if (lid == kNoNode || lid == race_.oldLeader || lid == race_.learner) return;
  Replica& leader = *node(lid).replica;
  if (leader.raft().term() <= race_.term) return;
  race_.phase = 0;
  // Cut one of the others off, to the old leader's side.
  std::vector<NodeId> others;
  for (NodeId v : leader.raft().conf().voters) {
    if (v != lid && v != race_.oldLeader) others.push_back(v);
  }
  if (others.size() != 2) return;
  NodeId cut = others[memberRng_.below(2)];
  splitSides({race_.oldLeader, race_.learner, cut});
  auto got = std::make_shared<std::optional<ConfChangeReply>>();
  leader.proposeConfChange(ConfChange{ConfChangeType::Remove, race_.oldLeader, {}, {}},
                           [got](ConfChangeReply r) { *got = r; });
  trace(kj::str("membership race: new leader n", lid, " removes n", race_.oldLeader, ", n", cut,
                " cut off: ", *got ? confChangeErrorText((*got)->error) : "accepted")
            .cStr());
  if (!*got) ++result_.memberChanges;
}

void World::tryBadChange(Replica& leader, const ConfState& conf) {
  // Each must be refused at once and change nothing.
  std::vector<std::pair<ConfChange, ConfChangeError>> bad;
  NodeId member = conf.voters[memberRng_.below(conf.voters.size())];
  bad.push_back({addChange(member), ConfChangeError::IdExists});
  bad.push_back(
      {ConfChange{ConfChangeType::Promote, member, {}, {}}, ConfChangeError::NotLearner});
  bad.push_back({ConfChange{ConfChangeType::Remove, 0, {}, {}}, ConfChangeError::InvalidId});
  if (conf.voters.size() == 1) {
    bad.push_back({ConfChange{ConfChangeType::Remove, conf.voters[0], {}, {}},
                   ConfChangeError::LastVoter});
  }
  for (auto& n : nodes_) {
    if (isMemberOf(conf, n.id)) continue;
    bad.push_back(
        {ConfChange{ConfChangeType::Promote, n.id, {}, {}}, ConfChangeError::UnknownNode});
    bad.push_back(
        {ConfChange{ConfChangeType::Remove, n.id, {}, {}}, ConfChangeError::UnknownNode});
    if (!conf.addrs.empty() && conf.voters.size() + conf.learners.size() < limits::kMaxNodes) {
      ConfChange clash = addChange(n.id);
      clash.raftAddr = conf.addrs[0].raftAddr;
      bad.push_back({clash, ConfChangeError::AddressInUse});
    }
    break;
  }
  auto [cc, want] = bad[memberRng_.below(bad.size())];
  const Index before = leader.raft().lastIndex();
  auto answer = std::make_shared<std::optional<ConfChangeReply>>();
  leader.proposeConfChange(cc, [answer](ConfChangeReply r) { *answer = r; });
  bool answered = answer->has_value();
  ConfChangeReply got = answered ? **answer : ConfChangeReply{};
  bool early = got.error == ConfChangeError::NotReady ||
               got.error == ConfChangeError::InProgress ||
               got.error == ConfChangeError::TransferInProgress;
  if (!answered || got.status == Status::Ok || (got.error != want && !early) ||
      leader.raft().lastIndex() != before || !(leader.raft().conf() == conf)) {
    fail("membership",
         kj::str("a bad change (", confChangeTypeName(cc.type), " n", cc.id,
                 ") was not refused with \"", confChangeErrorText(want), "\" but answered ",
                 answered ? statusName(got.status) : "nothing", " \"",
                 confChangeErrorText(got.error), "\"")
             .cStr());
    return;
  }
  trace(kj::str("bad membership change ", confChangeTypeName(cc.type), " n", cc.id,
                " refused: ", confChangeErrorText(got.error))
            .cStr());
}

void World::joinNode(NodeId id, const ConfState& conf) {
  Node& n = node(id);
  if (n.joined) return;  // already running (its earlier add was cut from the log)
  n.joined = true;
  n.dead = false;
  n.bootConf = conf;
  trace(kj::str("n", id, " joins as ", describeConf(conf).c_str()).cStr());
  startNode(n);
}

void World::retireNode(NodeId id) {
  Node& n = node(id);
  if (n.dead) return;
  NodeId lid = currentLeader();
  if (lid == kNoNode) {
    q_.after(500 * kMs, [this, id]() { retireNode(id); });  // ask the next leader
    return;
  }
  if (isMemberOf(node(lid).replica->raft().conf(), id)) {
    // Added again between its removal's commit and our hearing of it (seed 1364 with
    // --membership on: destroying it then left a two-voter cluster one voter short).
    n.removed = false;
    return;
  }
  crashNode(n, "removed from the cluster");
  n.dead = true;
}

void World::checkCommitQuorum(Node& ln) {
  const Raft& r = ln.replica->raft();
  Index c = r.commitIndex();
  if (ln.quorumTerm != r.term()) {
    ln.quorumTerm = r.term();
    ln.quorumCheckedTo = c;  // inherited: checked by the leader that committed it
    return;
  }
  if (c <= ln.quorumCheckedTo) return;
  ln.quorumCheckedTo = c;
  std::optional<Term> t = r.termAt(c);
  if (!t) return;
  const ConfState& conf = r.conf();
  size_t holding = 0;
  for (NodeId v : conf.voters) {
    const NodeStore& store = *node(v).store;
    if (store.corrupted()) {
      ++holding;  // its disk may have lost it to an injected fault: give it the benefit
      continue;
    }
    const RecoveredState& d = store.durableState();
    if (d.snapshot.meta.index >= c) {
      ++holding;
    } else if (!d.entries.empty() && d.entries.front().index <= c &&
               d.entries.back().index >= c &&
               d.entries[c - d.entries.front().index].term == *t) {
      ++holding;
    }
  }
  if (holding < conf.voters.size() / 2 + 1) {
    fail("commit_quorum",
         kj::str("n", ln.id, " committed index ", c, " (term ", *t, ") held durably by only ",
                 holding, " of the voters ", describeConf(conf).c_str())
             .cStr());
  }
}

}  // namespace kvr::sim

namespace kvr::sim {

// Two stories about learners, told in about half of the membership seeds from a stream
// of their own, while the membership nemesis holds off:
//
// - the learner companion: the leader is cut off with f-1 voters and one learner (a
//   minority of the voters, a majority if the learner counted). Clients on both sides:
//   the old leader must not keep its lease or answer reads on the learner's acks while
//   the majority elects and commits.
// - two promotions: the leader, cut off the same way with two learners, promotes one and
//   at once asks to promote the other. It must refuse the second while the first is
//   uncommitted: with both in its log its side (f voters and two learners) would be a
//   majority of the new voters and commit, while the old majority elects and commits too.
//
// Both need an odd number of voters (an even one leaves neither side a majority); the
// story adds the learners it needs from the spare slots first.
void World::scheduleMemberStory(uint64_t delay) {
  if (memberStory_.tries >= kMemberStoryMaxTries) return;
  ++memberStory_.tries;
  q_.after(delay, [this]() {
    if (!chaos_ || stop_) return;
    memberStoryStep();
  });
}

bool World::memberStoryEnabled() {
  bool drawn = memberStoryRng_.chance(kMemberStoryShare);
  return drawn && sc_.membership() && sc_.nodes >= 3;
}

void World::memberStoryStep() {
  uint64_t retry = memberStoryRng_.between(100 * kMs, 600 * kMs);
  NodeId lid = currentLeader();
  bool busy = fig8_.phase != Fig8::Off || suffix_.phase != Suffix::Off || race_.phase != 0 ||
              q_.now() < nemesisUntil_ || q_.now() < flakyUntil_;
  if (busy || lid == kNoNode) {
    scheduleMemberStory(retry);
    return;
  }
  if (memberStory_.wanted == 0) {
    memberStory_.wanted = memberStoryRng_.chance(0.5) && sc_.spares >= 2 ? 2 : 1;
  }
  memberStory_.holdMembership = q_.now() + 5000 * kMs;  // the nemesis waits for the shape
  Replica& leader = *node(lid).replica;
  const Raft& r = leader.raft();
  const ConfState conf = r.conf();
  if (conf.voters.size() < 3 || conf.voters.size() % 2 == 0 || !isVoterIn(conf, lid)) {
    // The nemesis will change it; look again later.
    memberStory_.holdMembership = 0;
    scheduleMemberStory(memberStoryRng_.between(500 * kMs, 2000 * kMs));
    return;
  }
  std::vector<NodeId> ready;
  for (NodeId id : conf.learners) {
    const Node& n = node(id);
    if (n.up && !n.dead && n.replica->raft().lastIndex() >= r.commitIndex()) {
      ready.push_back(id);
    }
  }
  if (ready.size() < memberStory_.wanted) {
    if (conf.learners.size() < memberStory_.wanted) {
      // Add a spare as a learner (it joins empty and catches up).
      for (auto& n : nodes_) {
        if (n.id <= sc_.nodes || n.removed || isMemberOf(conf, n.id)) continue;
        if (conf.voters.size() + conf.learners.size() >= limits::kMaxNodes) break;
        auto answered = std::make_shared<bool>(false);
        leader.proposeConfChange(addChange(n.id),
                                 [answered](ConfChangeReply) { *answered = true; });
        if (!*answered) {
          ++result_.memberChanges;
          trace(kj::str("member story: n", lid, " adds learner n", n.id).cStr());
          joinNode(n.id, leader.raft().conf());
        }
        break;
      }
    }
    scheduleMemberStory(retry);
    return;
  }
  memberStory_.holdMembership = 0;
  // The cut: the leader, f-1 other voters, and the learners.
  const size_t f = (conf.voters.size() - 1) / 2;
  std::vector<NodeId> side{lid}, others;
  for (NodeId v : conf.voters) {
    if (v != lid) others.push_back(v);
  }
  while (side.size() < f) {
    size_t k = memberStoryRng_.below(others.size());
    side.push_back(others[k]);
    others.erase(others.begin() + static_cast<std::ptrdiff_t>(k));
  }
  std::vector<NodeId> learners;
  while (learners.size() < memberStory_.wanted) {
    size_t k = memberStoryRng_.below(ready.size());
    learners.push_back(ready[k]);
    ready.erase(ready.begin() + static_cast<std::ptrdiff_t>(k));
  }
  side.insert(side.end(), learners.begin(), learners.end());
  onlyGroup(side);
  count(Fault::Partition);
  for (auto& c : clients_) {
    c.target = memberStoryRng_.chance(0.5) ? lid : others[memberStoryRng_.below(others.size())];
  }
  uint64_t hold = memberStoryRng_.between(3, 12) * sc_.electionTicks * kTickNs;
  nemesisUntil_ = calmUntil_ = q_.now() + hold;
  memberStory_.holdMembership = q_.now() + hold;
  trace(kj::str("member story: leader n", lid, " cut off with ", side.size() - 1,
                " others, learners ", learners.size())
            .cStr());
  if (learners.size() == 2) {
    for (NodeId id : learners) {
      auto got = std::make_shared<std::optional<ConfChangeReply>>();
      leader.proposeConfChange(ConfChange{ConfChangeType::Promote, id, {}, {}},
                               [got](ConfChangeReply rep) { *got = rep; });
      trace(kj::str("member story: n", lid, " promotes n", id, ": ",
                    *got ? confChangeErrorText((*got)->error) : "accepted")
                .cStr());
      if (!*got) ++result_.memberChanges;
    }
  }
  uint64_t gen = partitionGen_;
  q_.after(hold, [this, gen]() {
    if (!chaos_ || gen != partitionGen_) return;
    unblockAll();
    ++partitionGen_;
    trace("member story: healed");
  });
  memberStory_.wanted = 0;
  scheduleMemberStory(hold + memberStoryRng_.between(1000 * kMs, 5000 * kMs));
}

}  // namespace kvr::sim
