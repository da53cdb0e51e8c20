// The stale voter: a voter that missed a learner's promotion must still answer the
// promoted node's vote requests (thesis §4.1: votes are answered without consulting the
// configuration), or no one can lead.
//
// Three voters A (the leader), B, C and a learner L. C is cut off; A promotes L, which
// commits with A, B and L. B is cut off too, and A goes on replicating to L alone, so
// L's log is now ahead of B's. A crashes and stays down; B, C and L are connected again.
// L is the only node that can win (B and C are behind it), and it needs C's vote: C's
// configuration is still {A, B, C}. With the rule, a leader follows within a few
// election timeouts; without it, none does until A is back. With two voters A and C
// there is no B: the promotion commits with A and L, and L needs C's vote.
// (With more voters, the others could elect one of themselves without L.)
#include <kj/debug.h>

#include "core/membership.h"
#include "sim/world_impl.h"

namespace kvr::sim {

namespace {

// How long B, C and L get to elect a leader with A down, in election timeouts.
constexpr uint64_t kStaleVoterElectionTimeouts = 30;
// With two voters and no pre-vote: how far C's term runs ahead of A's before A goes down.
constexpr Term kStaleVoterTermLead = 10;

}  // namespace

bool World::startStaleVoter(NodeId lid, const ConfState& conf) {
  KJ_ASSERT((conf.voters.size() == 2 || conf.voters.size() == 3) && !conf.learners.empty());
  NodeId learner = conf.learners[memberRng_.below(conf.learners.size())];
  std::vector<NodeId> others;
  for (NodeId v : conf.voters) {
    if (v != lid) others.push_back(v);
  }
  for (NodeId id : others) {
    if (!node(id).up) return false;
  }
  if (!node(learner).up) return false;
  size_t k = memberRng_.below(others.size());
  NodeId other = others.size() == 2 ? others[1 - k] : kNoNode;
  StaleVoter story{1, lid, others[k], other, learner, 0, 0, 0, 0};
  isolateFromAll(story.stale);
  Replica& leader = *node(lid).replica;
  auto got = std::make_shared<std::optional<ConfChangeReply>>();
  leader.proposeConfChange(ConfChange{ConfChangeType::Promote, learner, {}, {}},
                           [got](ConfChangeReply r) { *got = r; });
  if (*got) {  // refused at once (not ready, a change in progress)
    unblockAll();
    return false;
  }
  ++result_.memberChanges;
  story.promoteIndex = leader.raft().lastIndex();
  story.until = q_.now() + 3000 * kMs;
  holdCalm(story.until + 2000 * kMs);
  stale_ = story;
  trace(kj::str("membership stale voter: n", lid, " promotes n", learner, " with n",
                stale_.stale, " cut off")
            .cStr());
  return true;
}

void World::holdCalm(uint64_t until) {
  nemesisUntil_ = std::max(nemesisUntil_, until);
  calmUntil_ = std::max(calmUntil_, until);
}

void World::isolateFromAll(NodeId id) {
  ++partitionGen_;  // earlier heals are not for this partition
  for (uint32_t a = 1; a <= slots(); ++a) {
    blocked_[a][id] = a != id;
    blocked_[id][a] = a != id;
  }
}

void World::staleVoterStep() {
  StaleVoter& s = stale_;
  if (!chaos_) {
    s.phase = 0;
    return;
  }
  Node& a = node(s.leader);
  Node& l = node(s.promoted);
  switch (s.phase) {
    case 1: {  // the promotion commits with A, B and L
      if (q_.now() > s.until || !a.up || a.replica->raft().role() != Role::Leader) {
        s.phase = 0;
        return;
      }
      if (a.replica->raft().commitIndex() < s.promoteIndex) return;
      if (s.other != kNoNode) {
        isolateFromAll(s.other);
        const Node& b = node(s.other);
        s.otherLast = b.up ? b.replica->raft().lastIndex() : 0;
      }
      s.phase = 2;
      s.until = q_.now() + 2000 * kMs;
      if (s.other == kNoNode && !sc_.preVote) {
        // Two voters: A and L are a quorum, so A can wait while C, campaigning alone, runs
        // its term far ahead; L then cannot catch up with it by chance in the race of
        // their election timeouts, and must learn it from C.
        s.until = q_.now() + kStaleVoterElectionTimeouts * sc_.electionTicks * kTickNs;
        holdCalm(s.until + 2000 * kMs);
      }
      if (s.other != kNoNode) {
        // Entries that only A and L get, not left to the clients (a lull in the workload
        // outlasts check-quorum, which then deposes A): sessions nobody uses.
        KvCommand open;
        open.op = OpType::OpenSession;
        for (int i = 0; i < 3; ++i) {
          a.replica->submit(open, ReadMode::Linearizable, [](KvReply) {});
        }
      }
      return;
    }
    case 2: {  // A replicates to L alone until L is ahead of B
      if (!a.up || !l.up || q_.now() > s.until) {
        s.phase = 0;
        return;
      }
      if (s.other != kNoNode && l.replica->raft().lastIndex() <= s.otherLast + 1) return;
      if (s.other == kNoNode && !sc_.preVote && node(s.stale).up &&
          node(s.stale).replica->raft().term() <
              a.replica->raft().term() + kStaleVoterTermLead) {
        return;
      }
      count(Fault::Crash);
      crashNode(a, "stale voter story");
      uint64_t timeout = sc_.electionTicks * kTickNs;
      restartAfter(s.leader, kStaleVoterElectionTimeouts * 4 / 3 * timeout);
      ++partitionGen_;
      unblockAll();
      // True clocks for the ones left: only the vote rule may stand between them and a
      // leader.
      for (NodeId id : {s.stale, s.other, s.promoted}) {
        if (id != kNoNode) node(id).drift = 1.0;
      }
      s.phase = 3;
      s.watchFrom = q_.now();
      s.until = q_.now() + kStaleVoterElectionTimeouts * timeout;
      holdCalm(s.until);  // no other fault may explain what happens next
      trace(kj::str("membership stale voter: n", s.leader, " down; n", s.promoted,
                    " must win with n", s.stale, "'s vote")
                .cStr());
      return;
    }
    default: break;
  }
  // Phase 3: someone of B, C and L leads, or A is back: done.
  std::vector<NodeId> rest{s.stale, s.promoted};
  if (s.other != kNoNode) rest.push_back(s.other);
  for (NodeId id : rest) {
    const Node& n = node(id);
    if (n.up && n.replica->raft().role() == Role::Leader) {
      s.phase = 0;
      return;
    }
  }
  if (a.up) s.phase = 0;
  if (q_.now() < s.until || s.phase == 0) return;
  s.phase = 0;
  // Judged only where nothing else can explain it: all of them up, not recovering, their
  // clocks true, their links untouched since A went down.
  for (NodeId id : rest) {
    const Node& n = node(id);
    if (!quietSince(id, s.watchFrom) || n.replica->raft().recovering()) return;
    for (NodeId peer : rest) {
      if (peer == id) continue;
      if (blocked_[id][peer] || linkTrouble_[id][peer] >= s.watchFrom) return;
    }
  }
  fail("availability",
       kj::str("no leader ", (q_.now() - s.watchFrom) / kMs, " ms after n", s.leader,
               " went down, though the ", rest.size(), " other voters were up and connected: n",
               s.stale, " missed n", s.promoted, "'s promotion and must still vote for it")
           .cStr());
}

}  // namespace kvr::sim
