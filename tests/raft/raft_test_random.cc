// A small randomized nemesis over the bare Raft state machine: message loss, delay,
// reordering and duplication, partitions, crashes that lose unsynced writes, restarts,
// compaction and leadership transfers. Checked on every step: the simulator's safety
// checker (sim/checker.h: one leader per term, committed entries never change, every
// leader holds every committed entry, no two nodes apply different entries at one index),
// and a successful read index covers every write completed before the read.
// Debug aids: RAFT_NEMESIS_DUMP=1 prints every node's log at the first violation,
// RAFT_NEMESIS_STATS=1 prints what each run exercised.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "sim/checker.h"
#include "tests/raft/raft_harness.h"

namespace kvr::test {
namespace {

// The safety invariants are the simulator's (sim/checker.h): one leader per term,
// committed entries never change, leader completeness, and no two nodes apply different
// entries at one index. This test adds the read-index rule, which needs its own record of
// what had completed when each read was asked.
struct Safety {
  explicit Safety(size_t nodes) : checker(static_cast<uint32_t>(nodes)) {}

  sim::Checker checker;
  Index maxCommitted = 0;               // highest index applied by anyone
  std::map<uint64_t, Index> readFloor;  // read context -> highest completed write at request
  size_t readsServed = 0;
  size_t violations = 0;

  void onReady(NodeId id, const Ready& rd) {
    for (auto& e : rd.committed) {
      checker.onApply(id, e, nullptr, 0);
      maxCommitted = std::max(maxCommitted, e.index);
    }
    for (auto& r : rd.readStates) {
      if (r.failed) continue;
      ++readsServed;
      auto it = readFloor.find(r.context);
      if (it == readFloor.end()) continue;
      if (r.index < it->second) {
        ++violations;
        ADD_FAILURE() << "node " << id << " read " << r.context << " at index " << r.index
                      << " but index " << it->second << " completed before it";
      }
    }
    report();
  }

  // After every step: the checker looks at every node that is up.
  void afterStep(RaftCluster& c, const std::set<NodeId>& crashed) {
    std::vector<const Raft*> rafts;
    for (NodeId id = 1; id <= c.size(); ++id)
      rafts.push_back(crashed.count(id) ? nullptr : &c[id]);
    checker.afterEvent(rafts);
    report();
  }

  // The checker keeps its first violation; it fails the test once.
  void report() {
    if (!checker.failed() || reported) return;
    reported = true;
    ++violations;
    ADD_FAILURE() << checker.violation()->property << ": " << checker.violation()->detail;
  }
  bool reported = false;
};

void dumpCluster(RaftCluster& c, const Safety& s, int step) {
  fprintf(stderr, "step %d, highest committed %lu\n", step, s.maxCommitted);
  for (NodeId id = 1; id <= c.size(); ++id) {
    Raft& r = c[id];
    fprintf(stderr, "node %u %s term %lu vote %u commit %lu stable %lu first %lu, terms:", id,
            roleName(r.role()), r.term(), r.vote(), r.commitIndex(), r.stableIndex(),
            r.firstIndex());
    for (Index i = r.firstIndex(); i <= r.lastIndex(); ++i)
      fprintf(stderr, " %lu", r.entryAt(i)->term);
    fprintf(stderr, "\n");
  }
}

// Per-step probabilities of each fault.
struct Faults {
  double partition = 0.01;  // re-draw the partition (heal, isolate one, or split)
  double crash = 0.004;     // crash a node, losing its unsynced writes
  double reboot = 0.03;     // per crashed node
  double sync = 0.7;        // per node: storage makes its pending writes durable
  double compact = 0.02;
  double transfer = 0.003;
  double delay = 0.25;  // per message: stays in flight another step
  double loss = 0.05;
  double duplicate = 0.03;
};

void runNemesis(size_t n, uint64_t seed, RaftConfig cfg, int steps, Faults f = {}) {
  SCOPED_TRACE("seed " + std::to_string(seed) + ", nodes " + std::to_string(n));
  RaftCluster c(n, cfg, {}, seed);
  Safety s(n);
  c.onReady = [&s](NodeId id, const Ready& rd) { s.onReady(id, rd); };
  Rng rng(seed * 7 + 3);
  for (NodeId id = 1; id <= n; ++id) c.node(id).holdWrites = true;
  std::set<NodeId> crashed;
  uint64_t nextRead = 1;
  int proposals = 0;
  auto randomNode = [&]() { return NodeId(1 + rng.below(n)); };

  for (int step = 0; step < steps && !::testing::Test::HasFailure(); ++step) {
    // Faults.
    if (rng.chance(f.partition)) {
      c.cut.clear();
      c.isolated.clear();
      switch (rng.below(3)) {
        case 0: break;  // heal
        case 1: c.isolate(randomNode()); break;
        case 2: {
          std::vector<NodeId> a, b;
          for (NodeId id = 1; id <= n; ++id) (rng.chance(0.5) ? a : b).push_back(id);
          c.partition(a, b);
          break;
        }
      }
    }
    if (rng.chance(f.crash)) {
      NodeId id = randomNode();
      if (!crashed.count(id)) {
        c.crash(id);
        crashed.insert(id);
      }
    }
    for (NodeId id : std::vector<NodeId>(crashed.begin(), crashed.end())) {
      if (rng.chance(f.reboot)) {
        c.reboot(id);
        s.checker.onRestart(id, c[id].snapshotIndex());
        crashed.erase(id);
      }
    }
    // Clients and hosts.
    NodeId who = randomNode();
    if (!crashed.count(who) && rng.chance(0.3) && c[who].role() == Role::Leader) {
      c.propose(who, "s" + std::to_string(seed) + "-" + std::to_string(proposals++));
    }
    who = randomNode();
    if (!crashed.count(who) && rng.chance(0.1)) {
      s.readFloor[nextRead] = s.maxCommitted;
      c[who].readIndex(nextRead++);
    }
    who = randomNode();
    if (!crashed.count(who) && rng.chance(f.compact)) {
      c.compact(who, "snapshot of " + std::to_string(c[who].appliedIndex()));
    }
    who = randomNode();
    if (!crashed.count(who) && rng.chance(f.transfer) && c[who].role() == Role::Leader) {
      c[who].transferLeadership(randomNode());
    }
    for (NodeId id = 1; id <= n; ++id) {
      if (!crashed.count(id) && rng.chance(0.5)) c.tick(id);
    }
    // Storage syncs at its own pace; the network delays, reorders, loses, duplicates.
    c.pumpAll();
    for (NodeId id = 1; id <= n; ++id) {
      if (!crashed.count(id) && rng.chance(f.sync)) c.persist(id);
    }
    std::deque<Message> keep;
    std::vector<Message> now;
    for (auto& m : c.inflight) {
      if (rng.chance(f.delay)) {
        keep.push_back(std::move(m));
      } else {
        now.push_back(std::move(m));
      }
    }
    c.inflight = std::move(keep);
    for (size_t i = now.size(); i > 1; --i) std::swap(now[i - 1], now[rng.below(i)]);
    for (auto& m : now) {
      if (rng.chance(f.loss)) continue;
      if (rng.chance(f.duplicate)) c.inflight.push_back(m);
      c.deliver(std::move(m));
    }
    s.afterStep(c, crashed);
    if (s.violations && getenv("RAFT_NEMESIS_DUMP")) dumpCluster(c, s, step);
  }
  ASSERT_EQ(s.violations, 0u);

  // Heal everything: the cluster must elect a leader and commit a new write everywhere.
  c.heal();
  for (NodeId id : crashed) {
    c.reboot(id);
    s.checker.onRestart(id, c[id].snapshotIndex());
  }
  crashed.clear();
  for (NodeId id = 1; id <= n; ++id) c.node(id).holdWrites = false;
  for (NodeId id = 1; id <= n; ++id) c.persist(id);
  Index idx = 0;
  NodeId leader = kNoNode;
  for (int t = 0; t < 2000 && idx == 0 && !::testing::Test::HasFailure(); ++t) {
    c.tickAllAndSettle();
    s.afterStep(c, crashed);
    auto ls = c.leaders();
    if (ls.size() == 1 && c[ls[0]].transferTarget() == kNoNode) {
      leader = ls[0];
      if (c.propose(leader, "final", &idx) != ProposeError::None) idx = 0;
    }
  }
  if (getenv("RAFT_NEMESIS_STATS")) {
    size_t snaps = 0, restarts = 0;
    for (NodeId id = 1; id <= n; ++id) {
      snaps += c.node(id).snapshotsInstalled.size();
      restarts += c.node(id).restarts;
    }
    Term term = 0;
    for (NodeId id = 1; id <= n; ++id) term = std::max(term, c[id].term());
    fprintf(stderr,
            "seed %lu: committed %lu, highest term %lu, reads served %zu, snapshots installed "
            "%zu, restarts %zu\n",
            seed, s.maxCommitted, term, s.readsServed, snaps, restarts);
  }
  ASSERT_NE(idx, 0u) << "no leader accepted a write after healing";
  // The write commits everywhere, or, if its leader lost office first (it may then be
  // cut from the log: it never committed), a write proposed to the next leader does.
  auto allCommitted = [&]() {
    for (NodeId id = 1; id <= n; ++id) {
      if (c[id].commitIndex() < idx) return false;
    }
    return true;
  };
  Term proposedIn = c[leader].term();
  for (int t = 0; t < 1000 && !allCommitted() && !::testing::Test::HasFailure(); ++t) {
    c.tickAllAndSettle();
    auto ls = c.leaders();
    if (ls.size() == 1 && c[ls[0]].term() != proposedIn &&
        c[ls[0]].transferTarget() == kNoNode) {
      Index again = 0;
      if (c.propose(ls[0], "final", &again) == ProposeError::None) {
        idx = again;
        proposedIn = c[ls[0]].term();
      }
    }
  }
  for (NodeId id = 1; id <= n; ++id) {
    EXPECT_GE(c[id].commitIndex(), idx) << "node " << id;
  }
  s.afterStep(c, crashed);
  EXPECT_GE(s.checker.maxCommitted(), idx) << "the checker did not see the final write";
  EXPECT_EQ(s.violations, 0u);
  EXPECT_GT(s.maxCommitted, 10u) << "the run made too little progress to mean much";
}

TEST(RaftRandom, ThreeNodesSurviveTheNemesis) {
  for (uint64_t seed = 1; seed <= 12 && !HasFailure(); ++seed) runNemesis(3, seed, {}, 3000);
}

TEST(RaftRandom, FiveNodesSurviveTheNemesis) {
  RaftConfig cfg;
  cfg.maxInflight = 4;
  cfg.snapshotChunkBytes = 7;
  cfg.compactionKeepEntries = 3;
  for (uint64_t seed = 1; seed <= 8 && !HasFailure(); ++seed) runNemesis(5, seed, cfg, 3000);
}

TEST(RaftRandom, WithoutPreVoteOrCheckQuorum) {
  RaftConfig cfg;
  cfg.preVote = false;
  cfg.checkQuorum = false;
  cfg.compactionKeepEntries = 0;
  for (uint64_t seed = 1; seed <= 8 && !HasFailure(); ++seed) runNemesis(3, seed, cfg, 3000);
}

Faults crashHeavy() {
  Faults f;
  f.partition = 0.03;
  f.crash = 0.02;
  f.reboot = 0.05;
  f.sync = 0.3;
  return f;
}

TEST(RaftRandom, FrequentCrashesAndSlowStorage) {
  for (uint64_t seed = 1; seed <= 10 && !HasFailure(); ++seed)
    runNemesis(3, seed, {}, 3000, crashHeavy());
  for (uint64_t seed = 1; seed <= 6 && !HasFailure(); ++seed)
    runNemesis(5, seed, {}, 3000, crashHeavy());
  RaftConfig noPreVote;  // more competing candidates, so lost votes matter
  noPreVote.preVote = false;
  noPreVote.checkQuorum = false;
  for (uint64_t seed = 1; seed <= 10 && !HasFailure(); ++seed)
    runNemesis(3, seed, noPreVote, 3000, crashHeavy());
}

}  // namespace
}  // namespace kvr::test
