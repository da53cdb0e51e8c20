// The cut-off removal: a voter removed while it is cut off never learns that it is out.
// Without pre-vote its term runs ahead as it campaigns alone; once its links heal, its
// vote requests reach the members with that term and a log behind theirs. They must
// drop them (thesis §4.2.3), or it deposes the leader again and again until it is shut
// down (World::deliver judges every such request).
//
// Told only without pre-vote (with it, the removed node's term never runs ahead), at
// most twice a seed, with no other fault while it plays.
#include <memory>
#include <optional>

#include <kj/debug.h>

#include "core/membership.h"
#include "sim/world_impl.h"

namespace kvr::sim {

namespace {

// How long the removed node campaigns alone, and how long it then talks to the
// members before it is shut down, in election timeouts.
constexpr uint64_t kCutoffAloneTimeouts = 6;
constexpr uint64_t kCutoffHealedTimeouts = 8;

}  // namespace

bool World::startCutoffRemoval(NodeId lid, const ConfState& conf) {
  KJ_ASSERT(!sc_.preVote && conf.voters.size() >= 3);
  // A victim whose removal leaves the bit flips within a minority of the voters.
  uint32_t corrupt = 0;
  for (NodeId v : conf.voters) corrupt += node(v).corruptible ? 1 : 0;
  std::vector<NodeId> victims;
  for (NodeId v : conf.voters) {
    const Node& n = node(v);
    const uint32_t left = corrupt - (n.corruptible ? 1 : 0);
    if (v != lid && n.up && !n.dead && left <= (conf.voters.size() - 2) / 2) {
      victims.push_back(v);
    }
  }
  if (victims.empty()) return false;
  const NodeId victim = victims[memberStoryRng_.below(victims.size())];
  isolateFromAll(victim);
  auto removed = std::make_shared<bool>(false);
  auto answered = std::make_shared<bool>(false);
  node(lid).replica->proposeConfChange(ConfChange{ConfChangeType::Remove, victim, {}, {}},
                                       [this, victim, removed, answered](ConfChangeReply r) {
                                         *answered = true;
                                         if (r.status != Status::Ok) return;
                                         *removed = true;
                                         node(victim).removed = true;
                                       });
  if (*answered) {  // refused at once (a change in progress, not ready)
    unblockAll();
    return false;
  }
  ++result_.memberChanges;
  ++cutoff_.runs;
  cutoff_.phase = 1;
  cutoff_.victim = victim;
  cutoff_.removed = removed;
  cutoff_.until = q_.now() + 3000 * kMs;
  holdCalm(cutoff_.until);
  trace(
      kj::str("membership cut-off removal: n", lid, " removes n", victim, ", cut off").cStr());
  return true;
}

void World::cutoffRemovalStep() {
  CutoffRemoval& s = cutoff_;
  const uint64_t timeout = sc_.electionTicks * kTickNs;
  if (!chaos_) {
    s.phase = 0;
    return;
  }
  switch (s.phase) {
    case 1:  // the removal commits without the victim
      if (*s.removed) {
        s.phase = 2;
        s.until = q_.now() + kCutoffAloneTimeouts * timeout;
        holdCalm(s.until + kCutoffHealedTimeouts * timeout);
      } else if (q_.now() > s.until) {
        s.phase = 0;  // no removal (lost with its leader): the links heal, nothing else
        unblockAll();
      }
      return;
    case 2:  // it campaigns alone, its term rising
      if (q_.now() < s.until) return;
      ++partitionGen_;
      unblockAll();
      trace(kj::str("membership cut-off removal: n", s.victim, " (term ",
                    node(s.victim).up ? node(s.victim).replica->raft().term() : 0,
                    ") hears the members again")
                .cStr());
      s.phase = 3;
      s.until = q_.now() + kCutoffHealedTimeouts * timeout;
      return;
    case 3:  // it talks to the members; then it goes
      if (q_.now() < s.until) return;
      s.phase = 0;
      retireNode(s.victim);
      return;
    default: return;
  }
}

}  // namespace kvr::sim
