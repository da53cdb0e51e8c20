// The simulator's safety checkers, fed hand-made replicas whose logs break one
// invariant each. Every checker must catch its own violation and stay quiet on a
// consistent cluster.
#include <gtest/gtest.h>

#include "core/replica.h"
#include "sim/checker.h"
#include "sim/mem_store.h"

namespace kvr::sim {
namespace {

class NullTransport final : public Transport {
 public:
  void send(Message&&) override {}
};

struct TestNode {
  NullTransport transport;
  MemStore store;
  std::unique_ptr<Replica> replica;

  TestNode(NodeId id, std::vector<NodeId> voters, HardState hs, std::vector<Entry> entries) {
    ReplicaConfig cfg;
    cfg.raft.id = id;
    cfg.initialConf.voters = std::move(voters);
    RecoveredState rec;
    rec.hardState = hs;
    rec.entries = std::move(entries);
    store.reset(rec);  // the store holds what the replica recovers
    replica = std::make_unique<Replica>(cfg, Rng(id), transport, store, std::move(rec));
  }
  // Ticks until this (single-voter) node leads and its writes are durable.
  void lead() {
    for (int i = 0; i < 100 && replica->raft().role() != Role::Leader; ++i) {
      replica->tick();
      flush();
    }
    ASSERT_EQ(replica->raft().role(), Role::Leader);
  }
  void flush() {
    for (uint64_t seq : store.beginFlush()) {
      store.finishFlush();
      replica->onPersisted(seq);
    }
  }
};

Entry entry(Index index, Term term, std::string data) {
  return Entry{term, index, EntryKind::Noop, std::move(data)};
}

std::vector<const Replica*> view(std::initializer_list<TestNode*> nodes) {
  std::vector<const Replica*> out;
  for (auto* n : nodes) out.push_back(n == nullptr ? nullptr : n->replica.get());
  return out;
}

TEST(Checker, ElectionSafetyCatchesTwoLeadersInOneTerm) {
  TestNode a(1, {1}, {}, {});
  TestNode b(2, {2}, {}, {});
  a.lead();
  b.lead();
  ASSERT_EQ(a.replica->raft().term(), b.replica->raft().term());
  Checker checker(2);
  checker.afterEvent(view({&a, nullptr}));
  EXPECT_FALSE(checker.failed());
  checker.afterEvent(view({&a, &b}));
  ASSERT_TRUE(checker.failed());
  EXPECT_EQ(checker.violation()->property, "election_safety");
}

TEST(Checker, ElectionSafetyAllowsLeadersOfDifferentTerms) {
  TestNode a(1, {1}, {}, {});
  // b already holds a's first entry (a's no-op of term 1), then leads term 4.
  TestNode b(2, {2}, HardState{3, 0, 0}, {entry(1, 1, "")});
  a.lead();
  b.lead();
  Checker checker(2);
  checker.afterEvent(view({&a, &b}));
  EXPECT_FALSE(checker.failed());
}

TEST(Checker, LogMatchingCatchesDivergentPrefix) {
  TestNode a(1, {1, 2, 3}, HardState{2, 0, 0}, {entry(1, 1, "a"), entry(2, 2, "b")});
  TestNode b(2, {1, 2, 3}, HardState{2, 0, 0}, {entry(1, 1, "x"), entry(2, 2, "b")});
  Checker checker(2);
  checker.fullCheck(view({&a, &b}));
  ASSERT_TRUE(checker.failed());
  EXPECT_EQ(checker.violation()->property, "log_matching");
}

TEST(Checker, LogMatchingCatchesSameIndexAndTermWithOtherData) {
  TestNode a(1, {1, 2, 3}, HardState{1, 0, 0}, {entry(1, 1, "a")});
  TestNode b(2, {1, 2, 3}, HardState{1, 0, 0}, {entry(1, 1, "b")});
  Checker checker(2);
  checker.fullCheck(view({&a, &b}));
  ASSERT_TRUE(checker.failed());
  EXPECT_EQ(checker.violation()->property, "log_matching");
}

TEST(Checker, LogMatchingAllowsDivergentUncommittedSuffix) {
  TestNode a(1, {1, 2, 3}, HardState{3, 0, 0}, {entry(1, 1, "a"), entry(2, 2, "b")});
  TestNode b(2, {1, 2, 3}, HardState{3, 0, 0}, {entry(1, 1, "a"), entry(2, 3, "c")});
  Checker checker(2);
  checker.fullCheck(view({&a, &b}));
  EXPECT_FALSE(checker.failed());
}

TEST(Checker, CommittedEntryLostWhenAnotherNodeCommitsOtherEntry) {
  TestNode a(1, {1, 2, 3}, HardState{2, 0, 2}, {entry(1, 1, "a"), entry(2, 1, "b")});
  TestNode b(2, {1, 2, 3}, HardState{2, 0, 2}, {entry(1, 1, "a"), entry(2, 2, "c")});
  Checker checker(2);
  checker.afterEvent(view({&a, nullptr}));
  EXPECT_FALSE(checker.failed());
  checker.afterEvent(view({&a, &b}));
  ASSERT_TRUE(checker.failed());
  EXPECT_EQ(checker.violation()->property, "committed_entry_lost");
}

TEST(Checker, LeaderCompletenessCatchesLeaderMissingCommittedEntry) {
  TestNode a(1, {1, 2, 3}, HardState{1, 0, 2}, {entry(1, 1, "a"), entry(2, 1, "b")});
  TestNode b(2, {2}, HardState{5, 0, 1}, {entry(1, 1, "a")});
  Checker checker(2);
  checker.afterEvent(view({&a, nullptr}));
  EXPECT_FALSE(checker.failed());
  b.lead();
  checker.afterEvent(view({nullptr, &b}));
  ASSERT_TRUE(checker.failed());
  EXPECT_EQ(checker.violation()->property, "leader_completeness");
}

TEST(Checker, StateMachineSafetyCatchesDifferentAppliesAtOneIndex) {
  Checker checker(2);
  checker.onApply(1, entry(7, 3, "x"), nullptr, 0);
  EXPECT_FALSE(checker.failed());
  checker.onApply(2, entry(7, 3, "x"), nullptr, 0);
  EXPECT_FALSE(checker.failed());
  checker.onApply(2, entry(7, 4, "y"), nullptr, 0);
  ASSERT_TRUE(checker.failed());
  EXPECT_EQ(checker.violation()->property, "state_machine_safety");
}

Entry putEntry(Index index, uint64_t client, uint64_t request) {
  KvCommand cmd;
  cmd.op = OpType::Put;
  cmd.clientId = client;
  cmd.requestId = request;
  cmd.key = "k";
  cmd.value = "v";
  return Entry{1, index, EntryKind::Command, encodeCommand(cmd)};
}

TEST(Checker, AtMostOnceCatchesReexecutedRetry) {
  Checker checker(1);
  KvReply ok;
  checker.onApply(1, putEntry(1, 9, 1), &ok, 1);
  checker.onApply(1, putEntry(2, 9, 1), &ok, 0);  // deduplicated retry: fine
  EXPECT_FALSE(checker.failed());
  checker.onApply(1, putEntry(3, 9, 1), &ok, 1);  // executed again
  ASSERT_TRUE(checker.failed());
  EXPECT_EQ(checker.violation()->property, "at_most_once");
}

}  // namespace
}  // namespace kvr::sim
