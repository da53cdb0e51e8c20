// Snapshots: local compaction, chunked streaming to a follower that fell behind the
// log, the two install cases of Raft Figure 13, and resending a lost chunk.
#include <gtest/gtest.h>

#include "tests/raft/raft_harness.h"

namespace kvr::test {
namespace {

std::string snapshotBytes(size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + i % 26));
  return s;
}

Snapshot makeSnapshot(Index index, Term term, size_t voters, std::string data) {
  Snapshot s;
  s.meta.index = index;
  s.meta.term = term;
  s.meta.conf = votersUpTo(voters);
  s.data = std::make_shared<const std::string>(std::move(data));
  return s;
}

// A single-message snapshot chunk from `from` (the leader of `term`).
Message snapshotChunk(NodeId from, NodeId to, Term term, const Snapshot& snap, uint64_t offset,
                      size_t len) {
  Message m;
  m.type = MsgType::Snapshot;
  m.from = from;
  m.to = to;
  m.term = term;
  m.snap = snap.meta;
  m.snapSize = snap.data->size();
  m.snapOffset = offset;
  m.snapChunk = snap.data->substr(offset, len);
  m.snapDone = offset + m.snapChunk.size() == snap.data->size();
  return m;
}

Raft makeFollower(NodeId id, RecoveredState r) {
  RaftConfig c;
  c.id = id;
  return Raft(c, Rng(id), votersUpTo(3), std::move(r));
}

TEST(RaftSnapshot, CompactedDropsTheLogUpToTheSnapshot) {
  for (uint64_t keep : {uint64_t(0), uint64_t(5)}) {
    RaftConfig cfg;
    cfg.compactionKeepEntries = keep;
    RaftCluster c(1, cfg);
    c.elect(1);
    for (int i = 0; i < 20; ++i) ASSERT_EQ(c.propose(1, "v"), ProposeError::None);
    c.settle();
    ASSERT_EQ(c[1].appliedIndex(), 21u);
    const Term term = c[1].term();
    c[1].compacted(makeSnapshot(15, term, 1, "state@15"));
    EXPECT_EQ(c[1].snapshotIndex(), 15u);
    EXPECT_EQ(c[1].firstIndex(), 16 - keep) << "keep " << keep;
    EXPECT_EQ(c[1].lastIndex(), 21u);
    EXPECT_FALSE(c[1].termAt(14 - keep).has_value());
    EXPECT_EQ(c[1].entryAt(15 - keep), nullptr);
    EXPECT_EQ(c[1].termAt(15 - keep), term) << "the entry just before the log stays known";
    EXPECT_EQ(c[1].termAt(21), term);
    // The node keeps working on top of the snapshot.
    Index idx = 0;
    ASSERT_EQ(c.propose(1, "after", &idx), ProposeError::None);
    c.settle();
    EXPECT_EQ(c[1].commitIndex(), idx);
  }
}

// Three nodes; node 3 misses 20 writes, then the leader compacts its whole log.
struct LaggingFollower {
  RaftCluster c;
  std::string data = snapshotBytes(100);
  LaggingFollower() : c(3, config()) {
    c.elect(1);
    c.isolate(3);
    for (int i = 0; i < 20; ++i)
      EXPECT_EQ(c.propose(1, "w" + std::to_string(i)), ProposeError::None);
    c.settle();
    Index at = c[1].commitIndex();
    c[1].compacted(makeSnapshot(at, c[1].term(), 3, data));
    EXPECT_EQ(c[1].firstIndex(), at + 1);
    c.heal();
    c.sent.clear();
  }
  static RaftConfig config() {
    RaftConfig cfg;
    cfg.snapshotChunkBytes = 16;
    cfg.compactionKeepEntries = 0;
    return cfg;
  }
  size_t chunksSent(std::optional<uint64_t> offset = std::nullopt) {
    return c.countSent([&](const Message& m) {
      return m.type == MsgType::Snapshot && (!offset || m.snapOffset == *offset);
    });
  }
};

TEST(RaftSnapshot, FollowerBehindTheLogGetsTheSnapshotInChunksThenCatchesUp) {
  LaggingFollower f;
  auto& c = f.c;
  for (int i = 0; i < 3; ++i) c.tickAllAndSettle();
  ASSERT_EQ(c.node(3).snapshotsInstalled.size(), 1u);
  const Snapshot& got = c.node(3).snapshotsInstalled[0];
  EXPECT_EQ(got.meta, c[1].snapshot().meta);
  ASSERT_NE(got.data, nullptr);
  EXPECT_EQ(*got.data, f.data);
  EXPECT_EQ(f.chunksSent(), 7u) << "100 bytes in 16-byte chunks";
  for (auto& m : c.sent) {
    if (m.type == MsgType::Snapshot) {
      EXPECT_LE(m.snapChunk.size(), 16u);
    }
  }
  EXPECT_EQ(c[3].snapshotIndex(), c[1].snapshotIndex());
  EXPECT_EQ(c[3].commitIndex(), c[1].commitIndex());

  Index idx = 0;
  ASSERT_EQ(c.propose(1, "later", &idx), ProposeError::None);
  c.settleCommit(1);
  EXPECT_EQ(c[3].commitIndex(), idx);
  EXPECT_EQ(c.logOf(3), c.logOf(1));
  ASSERT_FALSE(c.node(3).applied.empty());
  EXPECT_EQ(c.node(3).applied.back().index, idx);
}

TEST(RaftSnapshot, LostChunkIsResent) {
  LaggingFollower f;
  auto& c = f.c;
  bool lostOne = false;
  c.dropIf = [&lostOne](const Message& m) {
    if (!lostOne && m.type == MsgType::Snapshot && m.snapOffset == 16) {
      lostOne = true;
      return true;
    }
    return false;
  };
  c.tickAllAndSettle();
  ASSERT_TRUE(lostOne);
  EXPECT_TRUE(c.node(3).snapshotsInstalled.empty());
  for (int i = 0; i < 5; ++i) c.tickAllAndSettle();
  EXPECT_EQ(f.chunksSent(16), 2u)
      << "the lost chunk is sent again, from the acknowledged offset";
  ASSERT_EQ(c.node(3).snapshotsInstalled.size(), 1u);
  EXPECT_EQ(*c.node(3).snapshotsInstalled[0].data, f.data);
  EXPECT_EQ(c[3].commitIndex(), c[1].commitIndex());
}

TEST(RaftSnapshot, OutOfOrderChunkAsksForTheMissingOffset) {
  Raft r = makeFollower(2, recoveredWith(1, {1}, 1));
  Snapshot snap = makeSnapshot(8, 2, 3, snapshotBytes(40));
  r.step(snapshotChunk(1, 2, 2, snap, 0, 16));
  r.step(snapshotChunk(1, 2, 2, snap, 32, 8));  // the chunk at 16 was lost
  Ready rd = r.takeReady();
  EXPECT_FALSE(rd.snapshot.has_value());
  ASSERT_EQ(rd.afterPersist.size(), 2u);
  EXPECT_EQ(rd.afterPersist[0].type, MsgType::SnapshotResp);
  EXPECT_EQ(rd.afterPersist[0].snapOffset, 16u);
  EXPECT_EQ(rd.afterPersist[1].type, MsgType::SnapshotResp);
  EXPECT_EQ(rd.afterPersist[1].snapOffset, 16u) << "still wants offset 16";
  r.step(snapshotChunk(1, 2, 2, snap, 16, 16));
  r.step(snapshotChunk(1, 2, 2, snap, 32, 8));
  rd = r.takeReady();
  ASSERT_TRUE(rd.snapshot.has_value());
  EXPECT_EQ(*rd.snapshot->data, *snap.data);
}

TEST(RaftSnapshot, InstallWithAMatchingSuffixKeepsTheLogAfterTheSnapshot) {
  // Figure 13 step 6: the follower already holds the snapshot's last entry.
  Raft r = makeFollower(2, recoveredWith(1, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 2));
  Snapshot snap = makeSnapshot(5, 1, 3, snapshotBytes(10));
  r.step(snapshotChunk(1, 2, 1, snap, 0, 10));
  Ready rd = r.takeReady();
  EXPECT_FALSE(rd.snapshot.has_value()) << "the log already has it: nothing to reset";
  EXPECT_EQ(r.lastIndex(), 10u);
  for (Index i = 6; i <= 10; ++i) {
    ASSERT_NE(r.entryAt(i), nullptr) << i;
    EXPECT_EQ(r.entryAt(i)->data, "e" + std::to_string(i));
  }
  EXPECT_EQ(r.commitIndex(), 5u);
  bool acked = false;
  for (auto& m : rd.afterPersist) {
    if (m.type == MsgType::AppendResp && !m.reject && m.index == 5) acked = true;
  }
  EXPECT_TRUE(acked);
}

TEST(RaftSnapshot, InstallWithAConflictingSuffixDiscardsTheLog) {
  // Figure 13 step 7: the follower's entry at the snapshot index has another term.
  Raft r = makeFollower(2, recoveredWith(2, {1, 1, 1, 1, 2, 2, 2}, 2));
  Snapshot snap = makeSnapshot(5, 3, 3, snapshotBytes(10));
  r.step(snapshotChunk(1, 2, 3, snap, 0, 10));
  Ready rd = r.takeReady();
  ASSERT_TRUE(rd.snapshot.has_value());
  EXPECT_EQ(rd.snapshot->meta, snap.meta);
  EXPECT_EQ(*rd.snapshot->data, *snap.data);
  EXPECT_TRUE(rd.entries.empty());
  EXPECT_EQ(r.lastIndex(), 5u);
  EXPECT_EQ(r.firstIndex(), 6u);
  EXPECT_EQ(r.entryAt(6), nullptr);
  EXPECT_EQ(r.lastTerm(), 3u);
  EXPECT_EQ(r.commitIndex(), 5u);
  EXPECT_EQ(r.snapshotIndex(), 5u);
  EXPECT_EQ(r.term(), 3u);
  EXPECT_TRUE(rd.committed.empty()) << "the snapshot replaces applying entries 1..5";
}

TEST(RaftSnapshot, InstallOnAShortLogDiscardsTheLog) {
  Raft r = makeFollower(2, recoveredWith(1, {1, 1}, 1));
  Snapshot snap = makeSnapshot(9, 1, 3, snapshotBytes(3));
  r.step(snapshotChunk(1, 2, 1, snap, 0, 3));
  Ready rd = r.takeReady();
  ASSERT_TRUE(rd.snapshot.has_value());
  EXPECT_EQ(r.lastIndex(), 9u);
  EXPECT_EQ(r.commitIndex(), 9u);
}

}  // namespace
}  // namespace kvr::test
