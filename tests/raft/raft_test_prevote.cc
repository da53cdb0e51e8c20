// Pre-vote and check-quorum: a partitioned node cannot disrupt a healthy leader, and a
// leader cut off from its majority steps down (failing its pending reads).
#include <gtest/gtest.h>

#include "tests/raft/raft_harness.h"

namespace kvr::test {
namespace {

size_t grantedPreVotes(const RaftCluster& c) {
  return c.countSent(
      [](const Message& m) { return m.type == MsgType::PreVoteResp && !m.reject; });
}

// Node 3 sits behind a partition for many election timeouts while the leader commits
// a write, then rejoins. Returns the cluster for the caller's checks.
void partitionAndRejoin(RaftCluster& c) {
  c.elect(1);
  c.sent.clear();  // count only what happens from here on
  const Term term = c[1].term();
  c.isolate(3);
  ASSERT_EQ(c.propose(1, "x"), ProposeError::None);
  c.settle();
  for (int i = 0; i < 100; ++i) c.tickAllAndSettle();
  EXPECT_EQ(c[3].term(), term) << "pre-vote must keep the isolated node's term";
  EXPECT_NE(c[3].role(), Role::Candidate);
  c.heal();
  for (int i = 0; i < 100; ++i) c.tickAllAndSettle();
}

TEST(RaftPreVote, RejoiningNodeDoesNotDisruptTheLeader) {
  RaftCluster c(3);
  partitionAndRejoin(c);
  const Term term = c[1].term();
  EXPECT_EQ(c[1].role(), Role::Leader);
  for (NodeId id = 1; id <= 3; ++id) {
    EXPECT_EQ(c[id].term(), term) << "node " << id;
    EXPECT_EQ(c[id].leader(), 1u) << "node " << id;
  }
  EXPECT_EQ(grantedPreVotes(c), 0u);
  EXPECT_EQ(c[3].commitIndex(), c[1].commitIndex());
}

TEST(RaftPreVote, StalePreVotesAreRefusedOnTheLogCheckWithoutCheckQuorum) {
  // Without leases the pre-vote's log check alone protects the leader here: the
  // rejoining node missed a committed write.
  RaftConfig cfg;
  cfg.checkQuorum = false;
  RaftCluster c(3, cfg);
  partitionAndRejoin(c);
  const Term term = c[1].term();
  EXPECT_EQ(c[1].role(), Role::Leader);
  for (NodeId id = 1; id <= 3; ++id) EXPECT_EQ(c[id].term(), term) << "node " << id;
  EXPECT_GT(c.countSent([](const Message& m) { return m.type == MsgType::PreVote; }), 0u);
  EXPECT_EQ(grantedPreVotes(c), 0u);
}

TEST(RaftCheckQuorum, LeaderThatHearsNothingBackStepsDownAndFailsItsReads) {
  RaftCluster c(3);
  c.elect(1);
  // Asymmetric partition: the leader's messages get out, nothing comes back.
  c.cut.insert({2, 1});
  c.cut.insert({3, 1});
  c[1].readIndex(77);
  int ticks = 0;
  while (c[1].role() == Role::Leader && ticks < 100) {
    c.tickAllAndSettle();
    ++ticks;
  }
  EXPECT_NE(c[1].role(), Role::Leader);
  EXPECT_LE(ticks, 2 * 10) << "must step down within two election timeouts";
  auto read = c.readFor(1, 77);
  ASSERT_TRUE(read.has_value()) << "a pending read must be answered when leadership ends";
  EXPECT_TRUE(read->failed);
}

TEST(RaftCheckQuorum, IsolatedLeaderStepsDownWhileTheMajorityMovesOn) {
  RaftCluster c(5);
  c.elect(1);
  const Term term = c[1].term();
  c.partition({1, 2}, {3, 4, 5});  // the old leader keeps one follower: a minority
  c[1].readIndex(5);
  int ticks = 0;
  while (c[1].role() == Role::Leader && ticks < 100) {
    c.tickAllAndSettle();
    ++ticks;
  }
  EXPECT_NE(c[1].role(), Role::Leader);
  EXPECT_LE(ticks, 2 * 10);
  auto read = c.readFor(1, 5);
  ASSERT_TRUE(read.has_value());
  EXPECT_TRUE(read->failed);
  for (int i = 0; i < 100 && c.leaders().empty(); ++i) c.tickAllAndSettle();
  auto leaders = c.leaders();
  ASSERT_EQ(leaders.size(), 1u);
  EXPECT_GE(leaders[0], 3u);
  EXPECT_GT(c[leaders[0]].term(), term);
}

TEST(RaftCheckQuorum, FollowerInLeaseIgnoresDisruptiveVote) {
  RaftCluster c(3);
  c.elect(1);
  c.tickAllAndSettle();  // a heartbeat: node 2 has just heard from its leader
  c.sent.clear();
  const Term term = c[1].term();
  for (NodeId target : {NodeId(2), NodeId(1)}) {
    Message v;
    v.type = MsgType::Vote;
    v.from = 3;
    v.to = target;
    v.term = term + 5;
    v.index = c[3].lastIndex();
    v.logTerm = c[3].lastTerm();
    c[target].step(v);
    c.pump(target);
    EXPECT_EQ(c[target].term(), term) << "node " << target;
    EXPECT_EQ(c[target].vote(), 1u) << "node " << target;
  }
  EXPECT_EQ(c.countSent([](const Message& m) { return m.type == MsgType::VoteResp; }), 0u);
  EXPECT_EQ(c[1].role(), Role::Leader);
  EXPECT_EQ(c[2].leader(), 1u);

  // The same request sent on the leader's behalf (a leadership transfer) is heard.
  Message t;
  t.type = MsgType::Vote;
  t.from = 3;
  t.to = 2;
  t.term = term + 1;
  t.index = c[3].lastIndex();
  t.logTerm = c[3].lastTerm();
  t.context = kCampaignTransfer;
  c[2].step(t);
  EXPECT_EQ(c[2].term(), term + 1);
  EXPECT_EQ(c[2].vote(), 3u);
}

}  // namespace
}  // namespace kvr::test
