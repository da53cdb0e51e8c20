// Leadership transfer: the target takes over in the next term, proposals wait, a
// lagging target is caught up first, and a transfer to a dead node gives up.
#include <gtest/gtest.h>

#include "tests/raft/raft_harness.h"

namespace kvr::test {
namespace {

TEST(RaftTransfer, TargetBecomesLeaderInTheNextTerm) {
  RaftCluster c(3);
  c.elect(1);
  const Term term = c[1].term();
  ASSERT_TRUE(c[1].transferLeadership(2));
  EXPECT_EQ(c[1].transferTarget(), 2u);
  EXPECT_EQ(c.propose(1, "meanwhile"), ProposeError::TransferInProgress);
  c.settle();
  EXPECT_EQ(c[2].role(), Role::Leader);
  EXPECT_EQ(c[2].term(), term + 1);
  EXPECT_EQ(c[1].role(), Role::Follower);
  EXPECT_EQ(c[1].leader(), 2u);
  EXPECT_EQ(c[3].leader(), 2u);
  Index idx = 0;
  ASSERT_EQ(c.propose(2, "after", &idx), ProposeError::None);
  c.settleCommit(2);
  EXPECT_EQ(c[1].commitIndex(), idx);
}

TEST(RaftTransfer, RefusesNonsenseTargets) {
  RaftCluster c(3);
  c.elect(1);
  EXPECT_FALSE(c[1].transferLeadership(1));
  EXPECT_FALSE(c[1].transferLeadership(9));
  EXPECT_FALSE(c[2].transferLeadership(3)) << "only a leader transfers";
}

TEST(RaftTransfer, LaggingTargetIsCaughtUpBeforeItIsToldToCampaign) {
  RaftCluster c(3);
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(c.propose(1, "w" + std::to_string(i)), ProposeError::None);
  c.settle();
  const Index last = c[1].lastIndex();
  ASSERT_LT(c[3].lastIndex(), last);
  c.heal();
  c.sent.clear();
  // Watch every TimeoutNow at the moment it reaches node 3.
  std::vector<Index> targetLastAtTimeoutNow;
  c.dropIf = [&](const Message& m) {
    if (m.type == MsgType::TimeoutNow) targetLastAtTimeoutNow.push_back(c[m.to].lastIndex());
    return false;
  };
  ASSERT_TRUE(c[1].transferLeadership(3));
  c.settle();
  ASSERT_EQ(targetLastAtTimeoutNow.size(), 1u);
  EXPECT_EQ(targetLastAtTimeoutNow[0], last)
      << "TimeoutNow sent to a target that lacks entries";
  ASSERT_FALSE(c.sent.empty());
  EXPECT_EQ(c.sent.front().type, MsgType::Append);
  EXPECT_EQ(c[3].role(), Role::Leader);
  c.settle();
  for (NodeId id = 1; id <= 3; ++id) EXPECT_EQ(c.logOf(id), c.logOf(3)) << "node " << id;
}

TEST(RaftTransfer, AbortsAfterAnElectionTimeoutWhenTheTargetIsDown) {
  RaftConfig cfg;  // electionTicks 10
  RaftCluster c(3, cfg);
  c.elect(1);
  c.stop(3);
  ASSERT_TRUE(c[1].transferLeadership(3));
  c.tickAllAndSettle();
  EXPECT_EQ(c[1].transferTarget(), 3u);
  EXPECT_EQ(c.propose(1, "x"), ProposeError::TransferInProgress);
  c.tickAllAndSettle(cfg.electionTicks - 1);
  EXPECT_EQ(c[1].transferTarget(), kNoNode)
      << "the transfer must give up after an election timeout";
  EXPECT_EQ(c[1].role(), Role::Leader);
  Index idx = 0;
  EXPECT_EQ(c.propose(1, "x", &idx), ProposeError::None);
  c.settle();
  EXPECT_EQ(c[1].commitIndex(), idx);
}

}  // namespace
}  // namespace kvr::test
