// The real file system, in a temporary directory under /tmp.
#include <gtest/gtest.h>

#include <stdlib.h>

#include "disk/disk_storage.h"
#include "disk/posix_fs.h"
#include "tests/disk/disk_test_util.h"

namespace kvr::disk {
namespace {

using namespace kvr::disk::testing;

struct PosixFsTest : ::testing::Test {
  PosixFileSystem fs;
  std::string dir;
  void SetUp() override {
    char tmpl[] = "/tmp/disk_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
  }
  void TearDown() override {
    for (const auto& name : fs.list(dir)) fs.remove(joinPath(dir, name));
    if (fs.exists(dir + "/data")) {
      for (const auto& name : fs.list(dir + "/data")) fs.remove(joinPath(dir + "/data", name));
      ::rmdir((dir + "/data").c_str());
    }
    ::rmdir(dir.c_str());
  }
};

TEST_F(PosixFsTest, FileRoundTrip) {
  const std::string a = dir + "/a";
  EXPECT_FALSE(fs.exists(a));
  {
    auto f = fs.open(a, OpenMode::Create);
    f->append("hello ");
    f->append("world");
    f->datasync();
    EXPECT_EQ(f->size(), 11u);
    EXPECT_EQ(f->pread(6, 100), "world");
    f->truncate(5);
    f->datasync();
  }
  fs.syncDir(dir);
  EXPECT_ANY_THROW(fs.open(a, OpenMode::Create));  // exclusive create
  EXPECT_EQ(fs.fileSize(a), 5u);
  {
    auto f = fs.open(a, OpenMode::Append);
    f->append("!");
    EXPECT_EQ(f->pread(0, 100), "hello!");
  }
  fs.rename(a, dir + "/b");
  EXPECT_EQ(fs.list(dir), std::vector<std::string>{"b"});
  fs.remove(dir + "/b");
  EXPECT_TRUE(fs.list(dir).empty());
  EXPECT_ANY_THROW(fs.open(dir + "/missing", OpenMode::Read));
}

// writeBehind is only a hint: interleaved with appends, a truncation and more appends,
// the file holds exactly what was appended; and a snapshot written in many hinted
// pieces loads back whole.
TEST_F(PosixFsTest, WriteBehindChangesNoContent) {
  const std::string a = dir + "/a";
  std::string want;
  {
    auto f = fs.open(a, OpenMode::Create);
    f->writeBehind();  // nothing appended yet
    for (int i = 0; i < 40; ++i) {
      std::string piece(100'000 + i, static_cast<char>('a' + i % 26));
      f->append(piece);
      want += piece;
      if (i % 3 == 0) f->writeBehind();
    }
    f->truncate(1000);
    want.resize(1000);
    f->writeBehind();
    f->append("tail");
    want += "tail";
    f->writeBehind();
    f->writeBehind();
    f->datasync();
  }
  auto f = fs.open(a, OpenMode::Read);
  EXPECT_EQ(f->size(), want.size());
  EXPECT_EQ(f->pread(0, want.size()), want);
  fs.remove(a);

  std::string data(9u * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + i / 4096);
  SnapshotStore store(fs, dir);
  SnapshotMarker marker = store.write(makeSnapshot(5, 2, data), false);
  Snapshot back = store.load(marker);
  ASSERT_NE(back.data, nullptr);
  EXPECT_TRUE(*back.data == data);
}

TEST_F(PosixFsTest, DiskStorageRoundTrip) {
  const std::string data = dir + "/data";
  {
    auto r = DiskStorage::open(fs, data, kIdentity, WalOptions{4096});
    for (uint64_t i = 0; i < 20; ++i) {
      PersistBatch b = entriesBatch(i + 1, 1, 1 + 5 * i, 5, 64);
      if (i == 10) b.snapshot = makeSnapshot(30, 1, "snapshot bytes");
      b.hardState = HardState{1, 2, 5 * i};
      r.storage->persist(std::move(b));
      if (i % 3 == 0) r.storage->flush();
    }
    // The split hand-off a node uses: take on the loop, write on the worker.
    QueuedWrites work = r.storage->takeQueued();
    EXPECT_FALSE(r.storage->hasQueued());
    EXPECT_EQ(r.storage->write(std::move(work)).back(), 20u);
  }
  auto r = DiskStorage::open(fs, data, kIdentity, WalOptions{4096});
  EXPECT_EQ(r.state.snapshot.meta.index, 30u);
  EXPECT_EQ(*r.state.snapshot.data, "snapshot bytes");
  ASSERT_EQ(r.state.entries.size(), 70u);
  EXPECT_EQ(r.state.entries.front().index, 31u);
  EXPECT_EQ(r.state.hardState, (HardState{1, 2, 95}));
  EXPECT_ANY_THROW(DiskStorage::open(fs, data, NodeIdentity{kIdentity.clusterId, 3}));
}

}  // namespace
}  // namespace kvr::disk
