// The simulated file system's durability model and fault hooks.
#include <gtest/gtest.h>

#include "sim/sim_fs.h"

namespace kvr::sim {
namespace {

using disk::OpenMode;

struct SimFsTest : ::testing::Test {
  Rng rng{42};
  SimFileSystem fs{rng};
  void SetUp() override { fs.createDir("/d"); }
};

TEST_F(SimFsTest, UnsyncedWritesLostAtCrash) {
  auto f = fs.open("/d/a", OpenMode::Create);
  fs.syncDir("/d");
  f->append("durable");
  f->datasync();
  f->append("-lost");
  EXPECT_EQ(fs.contents("/d/a"), "durable-lost");
  fs.crash(false);
  EXPECT_EQ(fs.contents("/d/a"), "durable");
  EXPECT_GE(fs.faults().lostFileWrites, 1u);
  EXPECT_ANY_THROW(f->append("x"));  // handle from before the crash
}

TEST_F(SimFsTest, DirectoryOpsNeedDirSync) {
  {
    auto f = fs.open("/d/a", OpenMode::Create);
    f->append("x");
    f->datasync();
  }
  fs.crash(false);
  EXPECT_FALSE(fs.exists("/d/a"));  // created, synced, but the entry was never durable
  {
    auto f = fs.open("/d/a", OpenMode::Create);
    f->append("x");
    f->datasync();
  }
  fs.syncDir("/d");
  fs.rename("/d/a", "/d/b");
  fs.crash(false);
  EXPECT_TRUE(fs.exists("/d/a"));
  EXPECT_FALSE(fs.exists("/d/b"));
  fs.rename("/d/a", "/d/b");
  fs.syncDir("/d");
  fs.remove("/d/b");
  fs.crash(false);
  EXPECT_EQ(fs.contents("/d/b"), "x");
  EXPECT_GE(fs.faults().lostDirOps, 3u);
}

TEST_F(SimFsTest, TornCrashKeepsASectorPrefix) {
  std::string durable(700, 'd');
  std::string inflight;
  for (int i = 0; i < 3000; ++i) inflight.push_back(static_cast<char>('A' + i % 26));
  bool sawPartial = false;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Rng r(seed);
    SimFileSystem s(r);
    s.createDir("/d");
    auto f = s.open("/d/a", OpenMode::Create);
    s.syncDir("/d");
    f->append(durable);
    f->datasync();
    f->append(inflight);
    s.crash(true);
    std::string after = s.contents("/d/a");
    std::string full = durable + inflight;
    ASSERT_GE(after.size(), durable.size());
    ASSERT_EQ(after.substr(0, 700), durable);
    // The surviving new bytes are exactly a prefix ending on a sector boundary (or at
    // the end); what follows differs from the new bytes only where garbage was written.
    size_t same = 0;
    while (same < after.size() && same < full.size() && after[same] == full[same]) ++same;
    if (same < after.size() && same < full.size() && same != durable.size()) {
      EXPECT_EQ(same % SimFileSystem::kSectorBytes, 0u) << seed;
    }
    if (same > 700 && same < full.size()) sawPartial = true;
  }
  EXPECT_TRUE(sawPartial);
}

TEST_F(SimFsTest, InjectedErrorsAndBitFlips) {
  auto f = fs.open("/d/a", OpenMode::Create);
  fs.failNextWrite();
  EXPECT_ANY_THROW(f->append("x"));
  f->append("abc");
  fs.failNextSync();
  EXPECT_ANY_THROW(f->datasync());
  f->datasync();
  fs.flipBit("/d/a", 1);
  EXPECT_NE(fs.contents("/d/a"), "abc");
  EXPECT_EQ(fs.faults().writeErrors, 1u);
  EXPECT_EQ(fs.faults().syncErrors, 1u);
  EXPECT_EQ(fs.faults().bitFlips, 1u);
}

TEST_F(SimFsTest, ArmedCrashFiresAtTheOp) {
  auto f = fs.open("/d/a", OpenMode::Create);
  fs.syncDir("/d");
  fs.armCrash(3, false);
  f->append("1");
  f->datasync();
  EXPECT_ANY_THROW(f->append("2"));
  EXPECT_EQ(fs.faults().crashes, 1u);
  EXPECT_EQ(fs.contents("/d/a"), "1");
}

}  // namespace
}  // namespace kvr::sim
