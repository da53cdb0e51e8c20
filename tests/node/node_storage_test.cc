// NodeStorage: batches become durable in order, share writes (group commit) while one is
// in flight, and a failed fsync is fatal and reports nothing durable.
#include <gtest/gtest.h>

#include <vector>

#include "disk/disk_storage.h"
#include "net/node_storage.h"
#include "tests/net/uv_loop_fixture.h"
#include "tests/node/node_test_util.h"

namespace kvr::net {
namespace {

using NodeStorageTest = testing::UvLoopTest;

PersistBatch entryBatch(uint64_t seq) {
  PersistBatch b;
  b.seq = seq;
  if (seq == 1) b.hardState = HardState{1, 1, 0};
  Entry e;
  e.term = 1;
  e.index = seq;
  e.kind = EntryKind::Command;
  e.data = "value " + std::to_string(seq);
  b.entries.push_back(e);
  return b;
}

const disk::NodeIdentity kId{77, 1};

TEST_F(NodeStorageTest, ReportsEveryBatchInOrderAndGroupsWritesWhileOneIsInFlight) {
  testing::TempDir dir;
  testing::FaultyFileSystem fs;
  UvAsyncIo io(loop());
  auto recovered = disk::DiskStorage::open(fs, dir.path(), kId);
  std::vector<std::string> fatal;
  NodeStorage storage(loop(), kj::mv(recovered.storage),
                      [&](const std::string& line) { fatal.push_back(line); });
  std::vector<uint64_t> durable;
  storage.setDurableCallback([&](uint64_t seq) { durable.push_back(seq); });

  // The first write is slow; everything persisted meanwhile must go in one more write.
  fs.syncDelayMs = 100;
  storage.persist(entryBatch(1));
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return storage.writing(); }));
  for (uint64_t seq = 2; seq <= 50; ++seq) storage.persist(entryBatch(seq));
  EXPECT_TRUE(durable.empty());  // nothing is reported before its fsync returns
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return durable.size() == 50; }));
  for (uint64_t i = 0; i < durable.size(); ++i) EXPECT_EQ(durable[i], i + 1);
  EXPECT_EQ(storage.writesCompleted(), 2u);
  EXPECT_TRUE(fatal.empty());
  storage.stop().wait(io.waitScope());

  // Everything reported durable is there after a restart.
  auto again = disk::DiskStorage::open(fs, dir.path(), kId);
  ASSERT_EQ(again.state.entries.size(), 50u);
  EXPECT_EQ(again.state.entries.back().data, "value 50");
  EXPECT_EQ(again.state.hardState.term, 1u);
}

TEST_F(NodeStorageTest, BatchesFromOneTurnShareOneWrite) {
  testing::TempDir dir;
  testing::FaultyFileSystem fs;
  UvAsyncIo io(loop());
  auto recovered = disk::DiskStorage::open(fs, dir.path(), kId);
  NodeStorage storage(loop(), kj::mv(recovered.storage), [](const std::string&) {});
  std::vector<uint64_t> durable;
  storage.setDurableCallback([&](uint64_t seq) { durable.push_back(seq); });
  int syncsBefore = fs.syncs;
  for (uint64_t seq = 1; seq <= 10; ++seq) storage.persist(entryBatch(seq));
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return durable.size() == 10; }));
  EXPECT_EQ(storage.writesCompleted(), 1u);
  EXPECT_EQ(fs.syncs - syncsBefore, 1);
}

TEST_F(NodeStorageTest, FailedFsyncIsFatalAndNothingIsReportedDurable) {
  testing::TempDir dir;
  testing::FaultyFileSystem fs;
  UvAsyncIo io(loop());
  auto recovered = disk::DiskStorage::open(fs, dir.path(), kId);
  std::vector<std::string> fatal;
  NodeStorage storage(loop(), kj::mv(recovered.storage),
                      [&](const std::string& line) { fatal.push_back(line); });
  std::vector<uint64_t> durable;
  storage.setDurableCallback([&](uint64_t seq) { durable.push_back(seq); });

  storage.persist(entryBatch(1));
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return durable.size() == 1; }));
  fs.failSync = true;
  storage.persist(entryBatch(2));
  storage.persist(entryBatch(3));
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return !fatal.empty(); }));
  ASSERT_EQ(fatal.size(), 1u);
  EXPECT_NE(fatal[0].find("injected fsync failure"), std::string::npos) << fatal[0];
  // Never retried, never reported, even once the disk "recovers".
  fs.failSync = false;
  storage.persist(entryBatch(4));
  io.timer().afterDelay(50 * kj::MILLISECONDS).wait(io.waitScope());
  EXPECT_EQ(durable, std::vector<uint64_t>{1});
  EXPECT_EQ(fatal.size(), 1u);
  EXPECT_FALSE(storage.writing());
}

TEST_F(NodeStorageTest, StopWaitsForTheWriteInFlightAndStartsNoMore) {
  testing::TempDir dir;
  testing::FaultyFileSystem fs;
  UvAsyncIo io(loop());
  auto recovered = disk::DiskStorage::open(fs, dir.path(), kId);
  NodeStorage storage(loop(), kj::mv(recovered.storage), [](const std::string&) {});
  std::vector<uint64_t> durable;
  storage.setDurableCallback([&](uint64_t seq) { durable.push_back(seq); });
  fs.syncDelayMs = 50;
  storage.persist(entryBatch(1));
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return storage.writing(); }));
  storage.persist(entryBatch(2));
  storage.stop().wait(io.waitScope());
  EXPECT_FALSE(storage.writing());
  EXPECT_EQ(durable, std::vector<uint64_t>{1});
  io.timer().afterDelay(80 * kj::MILLISECONDS).wait(io.waitScope());
  EXPECT_EQ(durable, std::vector<uint64_t>{1});
}

}  // namespace
}  // namespace kvr::net
