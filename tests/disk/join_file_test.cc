// The join file of a node added with kvnode --join: written durably, read back whole,
// and refused with one sentence when any byte of it changed.
#include <gtest/gtest.h>

#include "core/membership.h"
#include "disk/join_file.h"
#include "sim/sim_fs.h"

namespace kvr::disk {
namespace {

JoinRecord sample() {
  JoinRecord r;
  r.clusterId = 0x1234567890abcdefULL;
  r.conf.voters = {1, 2, 3};
  r.conf.learners = {4};
  r.conf.addrs = {{1, "127.0.0.1:7101", ""},
                  {2, "127.0.0.1:7102", ""},
                  {3, "127.0.0.1:7103", ""},
                  {4, "127.0.0.1:7104", "127.0.0.1:7004"}};
  return r;
}

TEST(JoinFile, RoundTripsAndIsAbsentUntilWritten) {
  Rng rng(1);
  sim::SimFileSystem fs(rng);
  fs.createDir("/d");
  std::optional<JoinRecord> got;
  std::string error;
  ASSERT_TRUE(readJoinFile(fs, "/d", &got, &error));
  EXPECT_FALSE(got.has_value());

  writeJoinFile(fs, "/d", sample());
  ASSERT_TRUE(readJoinFile(fs, "/d", &got, &error)) << error;
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->clusterId, sample().clusterId);
  EXPECT_EQ(got->conf, sample().conf);
  EXPECT_FALSE(fs.exists("/d/join.tmp"));
}

TEST(JoinFile, AnyChangedByteIsRefused) {
  Rng rng(2);
  sim::SimFileSystem fs(rng);
  fs.createDir("/d");
  writeJoinFile(fs, "/d", sample());
  std::string good = fs.open("/d/join", OpenMode::Read)->pread(0, fs.fileSize("/d/join"));
  for (size_t i = 0; i <= good.size(); ++i) {
    std::string bad = good;
    if (i == good.size()) {
      bad += 'x';  // a longer file
    } else {
      bad[i] = static_cast<char>(bad[i] ^ 0x20);
    }
    fs.remove("/d/join");
    fs.open("/d/join", OpenMode::Create)->append(bad);
    std::optional<JoinRecord> got;
    std::string error;
    EXPECT_FALSE(readJoinFile(fs, "/d", &got, &error)) << "byte " << i;
    EXPECT_NE(error.find("/d/join is damaged"), std::string::npos) << error;
    EXPECT_FALSE(got.has_value());
  }
}

}  // namespace
}  // namespace kvr::disk
