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

// Two election timeouts of the leader, each tick's messages settled: a member that is
// cut off is silent for a whole round.
void silentRounds(RaftCluster& c, NodeId leader) {
  for (int i = 0; i < 20; ++i) {
    c.tick(leader);
    c.settle();
  }
}

// Proposes n entries, commits them, and lets one heartbeat round tell every follower what
// every member holds.
void writeAndSpread(RaftCluster& c, NodeId leader, int n, const std::string& prefix) {
  proposeSome(c, leader, n, prefix);
  c.settleCommit(leader);
  c.tickAllAndSettle();
}

RaftConfig keeping(uint64_t entriesBehindSnapshot) {
  RaftConfig cfg;
  cfg.compactionKeepEntries = entriesBehindSnapshot;
  return cfg;
}

// Node 1 leads; node 3 takes `before` writes, then is cut off while `after` more commit
// on nodes 1 and 2. Returns the last index node 3 holds.
Index cutOffNode3(RaftCluster& c, int before, int after) {
  c.elect(1);
  writeAndSpread(c, 1, before, "a");
  const Index had = c[3].lastIndex();
  c.isolate(3);
  writeAndSpread(c, 1, after, "b");
  return had;
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

TEST(RaftRelease, AMemberBehindTheCompactedLogNoLongerHoldsPayloadsBack) {
  RaftCluster c(3, keeping(2));
  const Index node3Had = cutOffNode3(c, 2, 10);  // down: its match stays where it was
  EXPECT_LE(c[1].payloadFloor(), node3Had);      // held back for node 3
  c.compact(1, "snap");                          // the log no longer reaches node 3's match
  ASSERT_GT(c[1].firstIndex(), node3Had + 1);
  EXPECT_LE(c[1].payloadFloor(), node3Had);  // until node 3 has been silent a whole round
  silentRounds(c, 1);
  EXPECT_EQ(c[1].payloadFloor(), c[1].lastIndex());
  EXPECT_EQ(heldPayloads(c[1]), 0u);
  writeAndSpread(c, 1, 3, "c");  // and what follows is released as the others take it
  EXPECT_EQ(c[1].payloadFloor(), c[1].lastIndex());
  // Node 3 comes back through a snapshot.
  c.heal();
  c.tickAllAndSettle(5);
  EXPECT_EQ(c[3].lastIndex(), c[1].lastIndex());
  EXPECT_EQ(c.node(3).snapshotsInstalled.size(), 1u);
  EXPECT_EQ(c[3].termAt(c[3].lastIndex()), c[1].termAt(c[1].lastIndex()));
  EXPECT_EQ(c[3].commitIndex(), c[1].commitIndex());
}

TEST(RaftRelease, AMemberDownSinceBeforeThisTermStopsHoldingPayloadsOnceCompactedPast) {
  RaftCluster c(3, keeping(2));
  cutOffNode3(c, 2, 0);
  // Node 2 leads a term in which it never hears from node 3 (match 0).
  ASSERT_TRUE(c[1].transferLeadership(2));
  c.settle();
  ASSERT_EQ(c[2].role(), Role::Leader);
  c.settleCommit(2);
  writeAndSpread(c, 2, 10, "b");
  EXPECT_LT(c[2].payloadFloor(), c[2].lastIndex());  // held back: node 3 may need them
  c.compact(2, "snap");  // past this term's first entry: node 3 needs a snapshot anyway
  silentRounds(c, 2);
  EXPECT_EQ(c[2].payloadFloor(), c[2].lastIndex());
  c.heal();
  c.tickAllAndSettle(5);
  EXPECT_EQ(c[3].lastIndex(), c[2].lastIndex());
  EXPECT_EQ(c.node(3).snapshotsInstalled.size(), 1u);
}

TEST(RaftRelease, ANewLeaderCountsMembersItHasNotHeardFromYet) {
  RaftCluster c(3, keeping(2));
  const Index node3Had = cutOffNode3(c, 6, 2);
  c.compact(2, "snap");
  ASSERT_LE(c[2].firstIndex(), node3Had + 1);  // node 2's log still reaches node 3's end
  // Node 2 leads without node 1. Until node 3 answers, its match is unknown (0), not
  // behind the log: the new leader must not release what node 3 still needs.
  c.tick(3, 25);  // node 3's lease on node 1 runs out (its own campaign goes nowhere)
  c.isolated.erase(3);
  c.isolate(1);
  c.campaign(2);
  ASSERT_EQ(c[2].role(), Role::Leader);
  c.settleCommit(2);
  c.tickAllAndSettle(3);
  EXPECT_EQ(c[3].lastIndex(), c[2].lastIndex());
  EXPECT_TRUE(c.node(3).snapshotsInstalled.empty()) << "caught up by a snapshot, not the log";
  EXPECT_EQ(c.node(2).snapshotsWanted, 0u);
}

// Node 3 is cut off before node 2's term and stays so for two election timeouts. Node 2's
// log is compacted, but not past its term's first entry: node 3 may still need only
// entries the log holds, so it counts, and comes back through the log.
TEST(RaftRelease, ASilentMemberUnheardThisTermCountsWhileTheLogReachesTheTermStart) {
  RaftCluster c(3, keeping(4));
  const Index node3Had = cutOffNode3(c, 6, 2);
  ASSERT_TRUE(c[1].transferLeadership(2));
  c.settle();
  ASSERT_EQ(c[2].role(), Role::Leader);
  c.settleCommit(2);
  c.compact(2, "snap");
  ASSERT_LE(c[2].firstIndex(), node3Had + 1);
  silentRounds(c, 2);
  EXPECT_LE(c[2].payloadFloor(), node3Had);
  c.heal();
  c.tickAllAndSettle(3);
  EXPECT_EQ(c[3].lastIndex(), c[2].lastIndex());
  EXPECT_TRUE(c.node(3).snapshotsInstalled.empty()) << "caught up by a snapshot, not the log";
}

// Node 3 goes silent in the middle of receiving a snapshot: it still needs the entries
// after the snapshot, so the leader keeps their payloads, and one snapshot does.
TEST(RaftRelease, AMemberSilentDuringItsSnapshotStillCountsFromTheSnapshot) {
  RaftConfig cfg = keeping(2);
  cfg.snapshotChunkBytes = 4;
  RaftCluster c(3, cfg);
  cutOffNode3(c, 2, 6);
  c.compact(1, "0123456789abcdef");  // four chunks
  c.heal();
  c.dropIf = [](const Message& m) { return m.type == MsgType::Snapshot && m.snapOffset > 0; };
  c.tickAllAndSettle();
  c.heal();  // clears dropIf
  c.isolate(3);
  writeAndSpread(c, 1, 3, "c");
  silentRounds(c, 1);
  EXPECT_LT(c[1].payloadFloor(), c[1].lastIndex());
  c.heal();
  c.tickAllAndSettle(10);
  EXPECT_EQ(c[3].lastIndex(), c[1].lastIndex());
  EXPECT_EQ(c.node(3).snapshotsInstalled.size(), 1u);
  EXPECT_EQ(c.node(1).snapshotsWanted, 0u);
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
