// Released payloads (Raft::releasePayloads): an entry every member holds and this node
// applied keeps only its index, term and kind in the in-memory log; a member that needs
// it again gets a snapshot.
#include <gtest/gtest.h>

#include <string>

#include "tests/raft/raft_harness.h"

namespace kvr::test {
namespace {

size_t heldPayloads(Raft& r) {
  size_t n = 0;
  for (Index i = r.firstIndex(); i <= r.lastIndex(); ++i) {
    const Entry* e = r.entryAt(i);
    if (e->kind == EntryKind::Command && !e->data.empty()) ++n;
  }
  return n;
}

void proposeSome(RaftCluster& c, NodeId leader, int n, const std::string& prefix) {
  for (int i = 0; i < n; ++i)
    ASSERT_EQ(c.propose(leader, prefix + std::to_string(i)), ProposeError::None);
}

// Proposes n entries, commits them, and lets one heartbeat round tell every follower what
// every member holds.
void writeAndSpread(RaftCluster& c, NodeId leader, int n, const std::string& prefix) {
  proposeSome(c, leader, n, prefix);
  c.settleCommit(leader);
  c.tickAllAndSettle();
}

TEST(RaftRelease, EntriesEveryMemberHoldsLoseTheirPayloadOnceApplied) {
  RaftCluster c(3);
  c.elect(1);
  writeAndSpread(c, 1, 10, "v");
  const Index last = c[1].lastIndex();
  for (NodeId id = 1; id <= 3; ++id) {
    EXPECT_EQ(c[id].appliedIndex(), last) << "node " << id;
    EXPECT_EQ(c[id].payloadFloor(), last) << "node " << id;
    EXPECT_EQ(heldPayloads(c[id]), 0u) << "node " << id;
    EXPECT_EQ(c[id].termAt(last), c[1].term()) << "node " << id;  // terms stay
    EXPECT_EQ(c.logOf(id), c.logOf(1)) << "node " << id;
  }
  EXPECT_EQ(c.node(1).snapshotsWanted, 0u);
}

TEST(RaftRelease, NothingALaggingMemberLacksIsReleased) {
  RaftCluster c(3);
  c.elect(1);
  writeAndSpread(c, 1, 3, "a");
  const Index heldBefore = c[1].lastIndex();
  c.isolate(3);
  writeAndSpread(c, 1, 10, "b");
  // Committed and applied by two of three, but node 3 lacks them: payloads stay.
  for (NodeId id : {1, 2}) {
    EXPECT_EQ(c[id].appliedIndex(), c[1].lastIndex()) << "node " << id;
    EXPECT_EQ(c[id].payloadFloor(), heldBefore) << "node " << id;
    EXPECT_EQ(heldPayloads(c[id]), 10u) << "node " << id;
  }
  // Node 3 catches up from the leader's log, not from a snapshot.
  c.heal();
  c.tickAllAndSettle(3);
  EXPECT_EQ(c[3].lastIndex(), c[1].lastIndex());
  EXPECT_TRUE(c.node(3).snapshotsInstalled.empty());
  EXPECT_EQ(c.node(1).snapshotsWanted, 0u);
  EXPECT_EQ(c.logOf(3), c.logOf(1));
  EXPECT_EQ(c[1].payloadFloor(), c[1].lastIndex());
}

TEST(RaftRelease, AMemberThatLostEntriesItHeldGetsASnapshotPastTheFloor) {
  RaftCluster c(3);
  c.elect(1);
  writeAndSpread(c, 1, 10, "v");
  const Index floor = c[1].payloadFloor();
  ASSERT_EQ(floor, c[1].lastIndex());
  ASSERT_EQ(c[1].snapshotIndex(), 0u);
  // Node 3's disk loses all but its first two entries, which it had acknowledged: it
  // restarts recovering, and the entries it needs have no payload on the leader.
  c.crash(3);
  RecoveredState& d = c.node(3).durable;
  d.entries.resize(2);
  d.recovering = true;
  d.recoverUntil = floor;
  c.reboot(3);
  c.tickAllAndSettle(5);
  EXPECT_GE(c.node(1).snapshotsWanted, 1u);
  EXPECT_GE(c[1].snapshotIndex(), floor);
  ASSERT_EQ(c.node(3).snapshotsInstalled.size(), 1u);
  EXPECT_GE(c.node(3).snapshotsInstalled[0].meta.index, floor);
  EXPECT_FALSE(c[3].recovering());
  EXPECT_EQ(c[3].lastIndex(), c[1].lastIndex());
  // And it takes new entries from the log again.
  proposeSome(c, 1, 2, "w");
  c.settleCommit(1);
  EXPECT_EQ(c[3].lastIndex(), c[1].lastIndex());
  EXPECT_EQ(c.node(3).snapshotsInstalled.size(), 1u);
}

TEST(RaftRelease, AHeldIndexAboveTheCommitIndexIsMalformed) {
  RaftCluster c(3);
  c.elect(1);
  Message m;
  m.type = MsgType::Heartbeat;
  m.from = 1;
  m.to = 2;
  m.term = c[1].term();
  m.commit = 1;
  m.heldByAll = 2;
  const uint64_t before = c[2].droppedMessages();
  c[2].step(m);
  EXPECT_EQ(c[2].droppedMessages(), before + 1);
  m.heldByAll = 1;
  c[2].step(m);
  EXPECT_EQ(c[2].droppedMessages(), before + 1);
}

}  // namespace
}  // namespace kvr::test
