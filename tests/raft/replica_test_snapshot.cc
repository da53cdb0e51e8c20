// The replica's local snapshots with a storage that prepares them off the loop
// (Storage::prepareSnapshot): the replica hands over a frozen view and keeps applying;
// the snapshot it persists afterwards is the state at its index, not the later one.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/replica.h"
#include "tests/raft/raft_harness.h"

namespace kvr {
namespace {
using test::votersUpTo;

struct NullTransport final : Transport {
  void send(Message&&) override {}
};

struct PreparingStorage final : Storage {
  std::vector<PersistBatch> batches;
  std::optional<SnapshotMeta> meta;
  std::shared_ptr<SnapshotSource> source;
  bool supported = true;
  void persist(PersistBatch&& batch) override { batches.push_back(std::move(batch)); }
  bool prepareSnapshot(const SnapshotMeta& m, std::shared_ptr<SnapshotSource> s) override {
    if (!supported) return false;
    EXPECT_FALSE(meta.has_value()) << "one snapshot at a time";
    meta = m;
    source = std::move(s);
    return true;
  }
};

class SingleNode {
 public:
  explicit SingleNode(bool prepare, uint32_t snapshotLogShare = 8, uint32_t spreadPercent = 0,
                      uint64_t seed = 3, uint64_t every = 8) {
    storage_.supported = prepare;
    ReplicaConfig c;
    c.raft.id = 1;
    c.initialConf = votersUpTo(1);
    c.snapshotEveryEntries = every;
    c.snapshotLogShare = snapshotLogShare;
    c.snapshotSpreadPercent = spreadPercent;
    replica_.emplace(c, Rng(seed), transport_, storage_, RecoveredState{});
    for (int i = 0; i < 100 && replica_->status().role != Role::Leader; ++i) tick();
    EXPECT_EQ(replica_->status().role, Role::Leader);
    KvCommand open;
    open.op = OpType::OpenSession;
    std::optional<KvReply> r;
    replica_->submit(open, ReadMode::Linearizable, [&](KvReply x) { r = std::move(x); });
    drain();
    EXPECT_TRUE(r && r->status == Status::Ok);
    client_ = r->clientId;
  }

  void tick() {
    replica_->tick();
    drain();
  }
  void drain() {
    while (!storage_.batches.empty()) {
      auto batches = std::move(storage_.batches);
      storage_.batches.clear();
      for (auto& b : batches) {
        if (b.snapshot) snapshots.push_back(*b.snapshot);
        replica_->onPersisted(b.seq);
      }
    }
  }
  void put(const std::string& key, const std::string& value) {
    KvCommand cmd;
    cmd.op = OpType::Put;
    cmd.clientId = client_;
    cmd.requestId = ++request_;
    cmd.key = key;
    cmd.value = value;
    std::optional<KvReply> r;
    replica_->submit(cmd, ReadMode::Linearizable, [&](KvReply x) { r = std::move(x); });
    drain();
    ASSERT_TRUE(r && r->status == Status::Ok);
  }

  PreparingStorage storage_;
  NullTransport transport_;
  std::optional<Replica> replica_;
  std::vector<Snapshot> snapshots;
  uint64_t client_ = 0;
  uint64_t request_ = 0;
};

TEST(ReplicaSnapshot, PreparedSnapshotHoldsTheStateOfItsIndex) {
  SingleNode n(true);
  for (int i = 0; i < 10; ++i) n.put("k" + std::to_string(i), "a");
  ASSERT_TRUE(n.storage_.meta.has_value());
  const Index index = n.storage_.meta->index;
  // The store moves on while the snapshot is being prepared.
  for (int i = 0; i < 10; ++i) n.put("k" + std::to_string(i), "b");
  EXPECT_TRUE(n.snapshots.empty());
  EXPECT_EQ(n.replica_->status().snapshotIndex, 0u);
  auto source = std::move(n.storage_.source);
  n.storage_.meta.reset();
  source->materialize();  // the pool's part
  n.replica_->onSnapshotPrepared(index);
  n.drain();
  ASSERT_EQ(n.snapshots.size(), 1u);
  EXPECT_EQ(n.snapshots[0].meta.index, index);
  EXPECT_EQ(n.replica_->status().snapshotIndex, index);
  KvStore back;
  ASSERT_TRUE(back.restore(*n.snapshots[0].data));
  EXPECT_EQ(back.appliedIndex(), index);
  auto data = back.data();
  for (const auto& [k, v] : data) EXPECT_EQ(v, "a") << k;
  // The next snapshot is taken once this one is durable.
  for (int i = 0; i < 10; ++i) n.put("k" + std::to_string(i), "c");
  ASSERT_TRUE(n.storage_.meta.has_value());
  EXPECT_GT(n.storage_.meta->index, index);
}

TEST(ReplicaSnapshot, WithoutPreparingTheSnapshotIsPersistedAtOnce) {
  SingleNode n(false);
  for (int i = 0; i < 10; ++i) n.put("k" + std::to_string(i), "a");
  ASSERT_EQ(n.snapshots.size(), 1u);
  EXPECT_EQ(n.replica_->status().snapshotIndex, n.snapshots[0].meta.index);
}

// A large store is not rewritten every snapshotEveryEntries small writes: a snapshot
// also waits until the entries applied since the last one reach 1/snapshotLogShare of
// the store's bytes. requestSnapshot() (an operator's compaction) does not wait.
TEST(ReplicaSnapshot, LargeStoreWaitsForItsShareOfLogBytes) {
  for (uint32_t share : {8u, 0u}) {
    SCOPED_TRACE(share);
    SingleNode n(false, share);
    n.put("big", std::string(8000, 'x'));  // the store: about 8 KB
    for (int i = 0; i < 8; ++i) n.put("k" + std::to_string(i), "a");
    ASSERT_EQ(n.snapshots.size(), 1u);  // the big entry's bytes count toward the first
    // 16 more small entries: far below 8 KB / 8 of log bytes.
    for (int i = 0; i < 16; ++i) n.put("k" + std::to_string(i), "b");
    EXPECT_EQ(n.snapshots.size(), share == 0 ? 3u : 1u);
    if (share == 0) continue;
    // Enough small entries to reach the share: the next snapshot is taken.
    size_t before = n.snapshots.size();
    for (int i = 0; i < 200 && n.snapshots.size() == before; ++i)
      n.put("k" + std::to_string(i % 8), std::string(16, 'c'));
    ASSERT_EQ(n.snapshots.size(), before + 1);
    const Index last = n.snapshots.back().meta.index;
    EXPECT_GE(last - n.snapshots.front().meta.index, 1000u / 40);  // ~40 B per entry
    // An operator's compaction is not held back by the share.
    n.put("k0", "d");
    n.replica_->requestSnapshot();
    n.tick();
    ASSERT_EQ(n.snapshots.size(), before + 2);
    EXPECT_GT(n.snapshots.back().meta.index, last);
  }
}

// Members apply the same entries; with a spread, each draws how much later than the
// thresholds its next snapshot starts, so they do not all serialize at once.
TEST(ReplicaSnapshot, SpreadStretchesEachIntervalByADrawnShare) {
  std::set<Index> firstIndexes;
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    SCOPED_TRACE(seed);
    SingleNode n(false, 0, 50, seed);
    for (int i = 0; i < 60; ++i) n.put("k" + std::to_string(i % 4), "v");
    ASSERT_GE(n.snapshots.size(), 4u);
    Index previous = 0;
    for (const Snapshot& s : n.snapshots) {
      // Every 8 entries, stretched by at most half: 8 to 12 entries apart.
      EXPECT_GE(s.meta.index - previous, 8u);
      EXPECT_LE(s.meta.index - previous, 12u);
      previous = s.meta.index;
    }
    firstIndexes.insert(n.snapshots.front().meta.index);
  }
  EXPECT_GE(firstIndexes.size(), 3u) << "the seeds drew (nearly) the same stretch";
  // The stretched threshold does not wrap around (2^63 times an even stretch is 0 in 64
  // bits): so large an interval never comes.
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    SingleNode never(false, 0, 50, seed, uint64_t(1) << 63);
    for (int i = 0; i < 20; ++i) never.put("k", "v");
    EXPECT_TRUE(never.snapshots.empty()) << seed;
  }
  // Without a spread, the intervals are exact.
  SingleNode exact(false, 0, 0, 5);
  for (int i = 0; i < 40; ++i) exact.put("k", "v");
  for (size_t i = 0; i < exact.snapshots.size(); ++i)
    EXPECT_EQ(exact.snapshots[i].meta.index, 8u * (i + 1));
}

}  // namespace
}  // namespace kvr
