// The divergent suffix meets a snapshot, driven step by step: a leader L (with up to
// f-1 companions) is cut off with every client pinned to it, its clock (and theirs) so
// slow that check-quorum does not depose it soon, so it keeps appending entries of its
// term that never commit; the majority elects L2, the clients move to it, and the moment
// L2 has applied an index S that lies inside the minority's suffix (a conflicting entry
// there) and far enough past the divergence that compaction drops the divergence point,
// L2 takes a snapshot. Once it is compacted the partition heals: the minority can only
// be repaired by that snapshot, whose last entry its log holds with another term. A
// follower that keeps its suffix there (and commits it up to S) applies entries no one
// else applied.
//
// Told in about half of the seeds where it can work (at least three nodes, no
// membership changes, isolate_leader, a compaction window of at most 40 entries, and
// either no check-quorum or clock drift among the faults), from a stream of its own.
#include <kj/debug.h>

#include "sim/world_impl.h"

namespace kvr::sim {

namespace {
constexpr double kSuffixShare = 0.5;
constexpr uint32_t kSuffixMaxTries = 8;
constexpr uint32_t kSuffixMaxKeep = 40;
constexpr Index kSuffixMargin = 12;  // entries past the compaction window the suffix needs
constexpr double kSlowClock = 50.0;
}  // namespace

bool World::suffixEnabled() {
  bool drawn = suffixRng_.chance(kSuffixShare);
  return drawn && sc_.nodes >= 3 && sc_.faults.has(Fault::IsolateLeader) && !sc_.membership() &&
         sc_.compactionKeepEntries <= kSuffixMaxKeep &&
         (!sc_.checkQuorum || sc_.faults.has(Fault::ClockDrift));
}

void World::scheduleSuffix(uint64_t delay) {
  retryStory(suffix_.tries, kSuffixMaxTries, suffixRng_, delay, &World::startSuffix);
}

bool World::startSuffix() {
  NodeId l = storyLeader();
  if (l == kNoNode) return false;
  uint32_t tries = suffix_.tries;
  suffix_ = Suffix{};
  suffix_.tries = tries;
  suffix_.phase = Suffix::Grow;
  suffix_.leader = l;
  suffix_.term = node(l).replica->raft().term();
  suffix_.base = node(l).replica->raft().commitIndex();
  suffix_.side.push_back(l);
  uint32_t companions = static_cast<uint32_t>(suffixRng_.below((sc_.nodes - 1) / 2));
  while (suffix_.side.size() < companions + 1) {
    NodeId c = static_cast<NodeId>(suffixRng_.between(1, sc_.nodes));
    if (std::find(suffix_.side.begin(), suffix_.side.end(), c) == suffix_.side.end()) {
      suffix_.side.push_back(c);
    }
  }
  count(Fault::IsolateLeader);
  onlyGroup(suffix_.side);
  if (sc_.checkQuorum) {
    // A starved VM: its check-quorum (and its companions' election timers) fire late.
    for (NodeId id : suffix_.side) node(id).drift = kSlowClock;
    count(Fault::ClockDrift);
  }
  pinnedTarget_ = l;
  for (auto& c : clients_) c.target = l;
  uint64_t budget = 20'000 * kMs;
  suffix_.phaseUntil = q_.now() + budget;
  nemesisUntil_ = calmUntil_ = q_.now() + 2 * budget;
  trace(kj::str("suffix story: leader n", l, " cut off with ", companions,
                " others, clients pinned to it")
            .cStr());
  return true;
}

void World::endSuffix(const char* how) {
  trace(kj::str("suffix story: ", how).cStr());
  suffix_.phase = Suffix::Off;
  pinnedTarget_ = kNoNode;
  unblockAll();
  ++partitionGen_;
  nemesisUntil_ = calmUntil_ = q_.now();
  for (NodeId id : suffix_.side) {
    if (node(id).drift == kSlowClock) node(id).drift = 1.0;
  }
  scheduleSuffix(suffixRng_.between(500 * kMs, 5000 * kMs));
}

void World::suffixStep() {
  if (!chaos_) {
    suffix_.phase = Suffix::Off;  // healAll took over
    pinnedTarget_ = kNoNode;
    return;
  }
  if (q_.now() > suffix_.phaseUntil) {
    endSuffix("timed out");
    return;
  }
  // The minority node with the longest log.
  const Raft* x = nullptr;
  for (NodeId id : suffix_.side) {
    const Node& n = node(id);
    if (n.up && (x == nullptr || n.replica->raft().lastIndex() > x->lastIndex())) {
      x = &n.replica->raft();
    }
  }
  if (x == nullptr) {
    endSuffix("the minority went down");
    return;
  }
  const Index keep = sc_.compactionKeepEntries;
  switch (suffix_.phase) {
    case Suffix::Off: return;
    case Suffix::Grow: {
      NodeId l2 = newLeaderAbove(suffix_.term, kNoNode);
      if (l2 == kNoNode) return;
      // Long enough past what the majority applied that it can snapshot inside it.
      Index from = std::max(suffix_.base, node(l2).replica->kv().appliedIndex());
      if (x->lastIndex() < from + keep + kSuffixMargin) {
        const Node& ln = node(suffix_.leader);
        bool leads = ln.up && ln.replica->raft().role() == Role::Leader &&
                     ln.replica->raft().term() == suffix_.term;
        if (!leads) endSuffix("the cut-off leader stopped appending");
        return;
      }
      suffix_.newLeader = l2;
      pinnedTarget_ = l2;
      for (auto& c : clients_) c.target = l2;
      suffix_.phase = Suffix::Catch;
      trace(kj::str("suffix story: minority log to ", x->lastIndex(), ", clients to n", l2)
                .cStr());
      return;
    }
    case Suffix::Catch: {
      const Node& nl = node(suffix_.newLeader);
      if (!nl.up || nl.replica->raft().role() != Role::Leader) {
        endSuffix("the new leader went away");
        return;
      }
      const Raft& r2 = nl.replica->raft();
      Index s = nl.replica->kv().appliedIndex();
      if (s > x->lastIndex()) {
        endSuffix("the majority went past the suffix");
        return;
      }
      // The divergence: the first index past the old commit where the logs differ.
      Index d = 0;
      for (Index i = suffix_.base + 1; i <= s; ++i) {
        auto t2 = r2.termAt(i);
        if (!t2) return;  // compacted already: wait for the next apply
        if (x->termAt(i) != t2) {
          d = i;
          break;
        }
      }
      if (d == 0 || s < d + keep || x->termAt(s) == r2.termAt(s)) return;
      nl.replica->requestSnapshot();
      suffix_.target = s;
      suffix_.phase = Suffix::Compact;
      trace(kj::str("suffix story: n", suffix_.newLeader, " snapshots at ", s,
                    ", the suffix diverges at ", d)
                .cStr());
      return;
    }
    case Suffix::Compact: {
      const Node& nl = node(suffix_.newLeader);
      if (!nl.up) {
        endSuffix("the new leader went down");
        return;
      }
      if (nl.replica->raft().snapshotIndex() < suffix_.target) return;
      endSuffix("healed after the snapshot");
      return;
    }
  }
}

}  // namespace kvr::sim
