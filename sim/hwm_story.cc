// A lost write aimed where only the high-water mark tells what a node held: the newest
// Entries record of a follower's WAL, holding an entry already committed, lost whole (it
// lies within one sector) while a later record follows it. Recovery must take its target
// from that later record's hwm: the lost record's own headers are gone. The follower is
// restarted at once; if it left its recovering state before it held that committed
// entry again, its vote could elect a leader without it (checkRecoveryEnd reports it).
//
// The lost overwrite: the same kind of lost write, aimed at the newest truncation of a
// follower's WAL and the entries that replaced its suffix. Recovery reads the older
// suffix back (entries of an older term at indexes the leader saw it acknowledge anew);
// a heartbeat from that leader, whose match for it is still the old one, carries a
// commit index that covers them. Only what an Append verified may be committed while
// recovering, or the follower applies entries no one else applied. It restarts within
// 50 ms, before the leader can learn that it lost them.
//
// Each is polled every few milliseconds through a window of the chaos in about half of
// the seeds with lost writes and at least three nodes, from a stream of its own; at
// most kHwmMaxHits times a run, never while another targeted story plays.
#include <kj/debug.h>

#include "sim/world_impl.h"

namespace kvr::sim {

namespace {
constexpr double kHwmShare = 0.5;
constexpr uint32_t kHwmMaxHits = 2;
constexpr uint32_t kHwmMaxPolls = 4000;
}  // namespace

void World::scheduleLostWrite(LostWriteStory& story, uint64_t delay) {
  bool drawn = story.rng.chance(kHwmShare);
  if (!drawn || sc_.nodes < 3 || !sc_.faults.has(Fault::LostWrite)) return;
  q_.after(delay, [this, &story]() { lostWritePoll(story); });
}

void World::lostWritePoll(LostWriteStory& story) {
  if (!chaos_ || stop_ || story.hits >= kHwmMaxHits || ++story.polls > kHwmMaxPolls) return;
  uint64_t next = story.rng.between(1 * kMs, 5 * kMs);
  q_.after(next, [this, &story]() { lostWritePoll(story); });
  if (q_.now() < nemesisUntil_ || q_.now() < flakyUntil_) return;
  NodeId leader = currentLeader();
  if (leader == kNoNode) return;
  for (uint32_t id = 1; id <= (sc_.nodes - 1) / 2; ++id) {
    Node& n = node(id);
    if (id == leader || !n.corruptible || !n.up || n.dead || n.flushing || n.flushScheduled ||
        n.store->hasQueued() || n.replica->raft().recovering()) {
      continue;
    }
    if (!(n.store.get()->*story.lose)(highestCommit_)) continue;
    ++story.hits;
    count(Fault::LostWrite);
    trace(kj::str("n", id, " lost_write at rest: ", story.what).cStr());
    crashNode(n, "after lost write");
    restartAfter(id, story.rng.between(story.restartMinNs, story.restartMaxNs));
    return;
  }
}

}  // namespace kvr::sim
