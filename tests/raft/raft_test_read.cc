// ReadIndex: a read is answered only after a heartbeat round proves the leader still
// leads, never by a deposed leader, and many reads share one round.
#include <gtest/gtest.h>

#include "tests/raft/raft_harness.h"

namespace kvr::test {
namespace {

bool isReadHeartbeat(const Message& m) { return m.type == MsgType::Heartbeat && m.context > 0; }

// Moves every message in flight that matches `pred` out of the network.
std::vector<Message> takeInflight(RaftCluster& c,
                                  const std::function<bool(const Message&)>& pred) {
  std::vector<Message> taken;
  std::deque<Message> rest;
  for (auto& m : c.inflight) {
    if (pred(m)) {
      taken.push_back(m);
    } else {
      rest.push_back(m);
    }
  }
  c.inflight = std::move(rest);
  return taken;
}

TEST(RaftReadIndex, ServedOnlyAfterAHeartbeatRoundConfirmsLeadership) {
  RaftCluster c(5);
  c.elect(1);
  Index idx = 0;
  ASSERT_EQ(c.propose(1, "w", &idx), ProposeError::None);
  c.settle();
  c.sent.clear();
  c[1].readIndex(7);
  c.pumpAll();
  EXPECT_FALSE(c.readFor(1, 7).has_value()) << "answered before any follower confirmed";
  EXPECT_EQ(c.countSent(isReadHeartbeat), 4u);

  // The followers get the round's heartbeats but their answers are delayed.
  c.deliverAll();
  c.pumpAll();
  auto acks = takeInflight(c,
                           [](const Message& m) { return m.type == MsgType::HeartbeatResp; });
  ASSERT_EQ(acks.size(), 4u);
  c.settle();
  EXPECT_FALSE(c.readFor(1, 7).has_value());

  c.deliver(acks[0]);  // leader + one follower: no quorum of five
  c.pump(1);
  EXPECT_FALSE(c.readFor(1, 7).has_value()) << "served on two of five acks";
  c.deliver(acks[1]);  // leader + two followers: a quorum
  c.pump(1);
  auto read = c.readFor(1, 7);
  ASSERT_TRUE(read.has_value());
  EXPECT_FALSE(read->failed);
  EXPECT_EQ(read->index, idx);
}

TEST(RaftReadIndex, ReadSurvivesTheLossOfItsHeartbeatRound) {
  RaftCluster c(3);
  c.elect(1);
  c[1].readIndex(8);
  c.pump(1);
  auto lost = takeInflight(c, isReadHeartbeat);
  ASSERT_EQ(lost.size(), 2u);
  c.settle();
  EXPECT_FALSE(c.readFor(1, 8).has_value());
  // Regular heartbeats must carry on the confirmation of the pending round.
  c.tickAllAndSettle(2);
  auto read = c.readFor(1, 8);
  ASSERT_TRUE(read.has_value()) << "a read whose round was lost must not hang while the leader "
                                   "leads";
  EXPECT_FALSE(read->failed);
  EXPECT_EQ(read->index, c[1].commitIndex());
}

// The old leader's read round is delayed in the network while the majority elects a
// new leader and commits a write. The old read must fail or never be answered.
void expectDeposedLeaderNeverServesTheOldRead(RaftConfig cfg) {
  RaftCluster c(3, cfg);
  c.elect(1);
  const Term oldTerm = c[1].term();
  c[1].readIndex(9);
  c.pump(1);
  auto delayed = takeInflight(c, isReadHeartbeat);
  ASSERT_EQ(delayed.size(), 2u);

  c.isolate(1);
  for (int i = 0; i < 200 && c.leaders() == std::vector<NodeId>{1}; ++i) {
    c.tick(2);
    c.tick(3);
    c.settle();
  }
  auto leaders = c.leaders();
  ASSERT_EQ(leaders.size(), 2u) << "nodes 2/3 should have elected a leader beside stale node 1";
  NodeId newLeader = leaders[0] == 1 ? leaders[1] : leaders[0];
  ASSERT_GT(c[newLeader].term(), oldTerm);
  Index w = 0;
  ASSERT_EQ(c.propose(newLeader, "new", &w), ProposeError::None);
  c.settle();
  ASSERT_EQ(c[newLeader].commitIndex(), w);

  c.heal();
  for (auto& m : delayed) c.deliver(m);
  c.settle();
  for (int i = 0; i < 5; ++i) {
    c.tickAllAndSettle();
  }
  auto read = c.readFor(1, 9);
  if (read) {
    EXPECT_TRUE(read->failed) << "a deposed leader served a read at index " << read->index
                              << " after index " << w << " was committed elsewhere";
  }
  EXPECT_NE(c[1].role(), Role::Leader);
}

TEST(RaftReadIndex, DeposedLeaderNeverServesTheOldRead) {
  expectDeposedLeaderNeverServesTheOldRead({});
}

TEST(RaftReadIndex, DeposedLeaderNeverServesTheOldReadWithoutPreVoteOrCheckQuorum) {
  RaftConfig cfg;
  cfg.preVote = false;
  cfg.checkQuorum = false;
  expectDeposedLeaderNeverServesTheOldRead(cfg);
}

TEST(RaftReadIndex, LeaderWithOnlyAMinorityNeverServesTheOldRead) {
  RaftCluster c(5);
  c.elect(1);
  c.partition({1, 2}, {3, 4, 5});  // node 2 still acks the old leader
  c[1].readIndex(9);
  c.settle();
  EXPECT_FALSE(c.readFor(1, 9).has_value());
  for (int i = 0; i < 200 && c[3].role() != Role::Leader && c[4].role() != Role::Leader &&
                  c[5].role() != Role::Leader;
       ++i) {
    for (NodeId id : {3, 4, 5}) c.tick(id);
    c.settle();
  }
  NodeId newLeader = kNoNode;
  for (NodeId id : {3, 4, 5}) {
    if (c[id].role() == Role::Leader) newLeader = id;
  }
  ASSERT_NE(newLeader, kNoNode);
  Index w = 0;
  ASSERT_EQ(c.propose(newLeader, "new", &w), ProposeError::None);
  c.settle();
  ASSERT_EQ(c[newLeader].commitIndex(), w);
  EXPECT_FALSE(c.readFor(1, 9).has_value());
  for (int i = 0; i < 30; ++i) c.tickAllAndSettle();
  auto read = c.readFor(1, 9);
  ASSERT_TRUE(read.has_value()) << "check-quorum ends the old leadership and fails the read";
  EXPECT_TRUE(read->failed);
}

TEST(RaftReadIndex, IsolatedLeaderFailsItsReadWhenItStepsDown) {
  RaftCluster c(3);
  c.elect(1);
  c.isolate(1);
  c[1].readIndex(10);
  for (int i = 0; i < 40; ++i) c.tickAllAndSettle();
  auto read = c.readFor(1, 10);
  ASSERT_TRUE(read.has_value());
  EXPECT_TRUE(read->failed);
}

TEST(RaftReadIndex, ManyReadsShareOneHeartbeatRound) {
  RaftCluster c(5);
  c.elect(1);
  c.sent.clear();
  for (uint64_t ctx = 1; ctx <= 10; ++ctx) c[1].readIndex(ctx);
  c.settle();
  EXPECT_EQ(c.countSent([](const Message& m) { return m.type == MsgType::Heartbeat; }), 4u)
      << "ten reads, one round: one heartbeat per follower";
  for (uint64_t ctx = 1; ctx <= 10; ++ctx) {
    auto read = c.readFor(1, ctx);
    ASSERT_TRUE(read.has_value()) << ctx;
    EXPECT_FALSE(read->failed);
    EXPECT_EQ(read->index, c[1].commitIndex());
  }
}

TEST(RaftReadIndex, FollowerReadGetsTheLeadersReadIndex) {
  RaftCluster c(3);
  c.elect(1);
  // Node 3 misses a write, so the read index must come from the leader, not node 3.
  c.isolate(3);
  Index w = 0;
  ASSERT_EQ(c.propose(1, "w", &w), ProposeError::None);
  c.settle();
  c.heal();
  c.sent.clear();
  c[3].readIndex(42);
  c.settle();
  EXPECT_EQ(c.countSent(
                [](const Message& m) { return m.type == MsgType::ReadIndex && m.from == 3; }),
            1u);
  auto read = c.readFor(3, 42);
  ASSERT_TRUE(read.has_value());
  EXPECT_FALSE(read->failed);
  EXPECT_EQ(read->index, w);
  // The host serves the read once its applied index reaches read->index.
  c.tickAllAndSettle();
  EXPECT_GE(c[3].appliedIndex(), read->index);
}

TEST(RaftReadIndex, FollowerReadFailsWithoutALeader) {
  RaftCluster c(3);
  c[2].readIndex(5);
  c.settle();
  auto read = c.readFor(2, 5);
  ASSERT_TRUE(read.has_value());
  EXPECT_TRUE(read->failed);
}

TEST(RaftReadIndex, NewLeaderDefersReadsUntilItsNoopCommits) {
  // Every node holds 1..2 (committed by an earlier leader, though nobody knows it).
  std::map<NodeId, RecoveredState> rec;
  for (NodeId id = 1; id <= 3; ++id) rec[id] = recoveredWith(1, {1, 1}, 0);
  RaftCluster c(3, {}, rec);
  for (int i = 0; i < 100 && c[1].role() == Role::Follower; ++i) c.tick(1);
  for (int i = 0; i < 100 && c[1].role() != Role::Leader; ++i) {
    c.pumpAll();
    c.deliverAll();
  }
  ASSERT_EQ(c[1].role(), Role::Leader);
  ASSERT_LT(c[1].commitIndex(), c[1].lastIndex());
  const Index noop = c[1].lastIndex();
  c.sent.clear();
  c[1].readIndex(5);
  c.pump(1);
  EXPECT_EQ(c.countSent(isReadHeartbeat), 0u) << "no read round before the no-op commits";
  c.settle();
  auto read = c.readFor(1, 5);
  ASSERT_TRUE(read.has_value());
  EXPECT_FALSE(read->failed);
  EXPECT_GE(read->index, noop);
}

TEST(RaftReadIndex, SingleNodeServesReadsAtOnce) {
  RaftCluster c(1);
  c.elect(1);
  c[1].readIndex(3);
  c.pump(1);
  auto read = c.readFor(1, 3);
  ASSERT_TRUE(read.has_value());
  EXPECT_FALSE(read->failed);
  EXPECT_EQ(read->index, 1u);
}

}  // namespace
}  // namespace kvr::test
