// Backup files (disk/backup_file.h) and restoring a data dir from one (disk/restore.h).
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include <kj/exception.h>

#include "core/kv.h"
#include "disk/backup_file.h"
#include "disk/disk_storage.h"
#include "disk/posix_fs.h"
#include "disk/restore.h"

namespace kvr::disk {
namespace {

namespace stdfs = std::filesystem;

KvCommand command(OpType op, uint64_t client, uint64_t request, std::string key,
                  std::string value = "") {
  KvCommand c;
  c.op = op;
  c.clientId = client;
  c.requestId = request;
  c.key = std::move(key);
  c.value = std::move(value);
  return c;
}

// A store with a session and `keys` keys, applied up to index keys + 2.
KvStore sampleStore(int keys) {
  KvStore kv;
  kv.apply(1, command(OpType::OpenSession, 0, 0, ""));
  for (int i = 0; i < keys; ++i) {
    kv.apply(2 + i, command(OpType::Put, 1, 1 + i, "key" + std::to_string(i),
                            "value" + std::to_string(i)));
  }
  kv.skip(2 + keys);
  return kv;
}

std::string sampleFile(const KvStore& kv, Term term = 3) {
  BackupHeader h;
  h.clusterId = 0xabcdef;
  h.nodeId = 2;
  h.index = kv.appliedIndex();
  h.term = term;
  return encodeBackup(h, kv.snapshot());
}

TEST(BackupFile, RoundTrip) {
  KvStore kv = sampleStore(5);
  std::string file = sampleFile(kv);
  KvStore back;
  BackupCheck c = checkBackup(file, &back);
  ASSERT_TRUE(c.ok) << c.error;
  EXPECT_TRUE(c.checksumOk);
  EXPECT_EQ(c.header.version, kBackupFormatVersion);
  EXPECT_EQ(c.header.clusterId, 0xabcdefu);
  EXPECT_EQ(c.header.nodeId, 2u);
  EXPECT_EQ(c.header.index, 7u);
  EXPECT_EQ(c.header.term, 3u);
  EXPECT_EQ(c.header.size, kv.snapshot().size());
  EXPECT_EQ(file.size(), kBackupHeaderBytes + c.header.size + kBackupChecksumBytes);
  EXPECT_EQ(back.digest(), kv.digest());
  EXPECT_EQ(back.size(), 5u);
}

TEST(BackupFile, EveryTruncationIsRefusedWithItsLength) {
  std::string file = sampleFile(sampleStore(3));
  for (size_t n = 0; n < file.size(); ++n) {
    KvStore store;
    BackupCheck c = checkBackup(std::string_view(file).substr(0, n), &store);
    ASSERT_FALSE(c.ok) << "accepted a file cut at " << n;
    EXPECT_NE(c.error.find("truncated at byte " + std::to_string(n) + ":"), std::string::npos)
        << "cut at " << n << ": " << c.error;
    EXPECT_EQ(store.appliedIndex(), 0u);
  }
}

TEST(BackupFile, EveryFlippedBitIsRefused) {
  std::string file = sampleFile(sampleStore(3));
  for (size_t i = 0; i < file.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = file;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      KvStore store;
      BackupCheck c = checkBackup(bad, &store);
      ASSERT_FALSE(c.ok) << "accepted a flip of bit " << bit << " at byte " << i;
      ASSERT_FALSE(c.error.empty());
      if (i < 8) {
        EXPECT_NE(c.error.find("bad magic"), std::string::npos) << i << ": " << c.error;
      } else if (i < 12) {
        EXPECT_NE(c.error.find("format version"), std::string::npos) << i << ": " << c.error;
      } else if (i < 36 || i >= kBackupHeaderBytes) {
        // Header fields other than the size, the payload, the checksum itself.
        EXPECT_NE(c.error.find("checksum mismatch"), std::string::npos) << i << ": " << c.error;
      }
    }
  }
}

TEST(BackupFile, TrailingBytesAndBadPayloadsAreRefused) {
  KvStore kv = sampleStore(2);
  std::string file = sampleFile(kv) + "x";
  BackupCheck c = checkBackup(file);
  EXPECT_FALSE(c.ok);
  EXPECT_NE(c.error.find("1 unexpected bytes after the checksum"), std::string::npos)
      << c.error;

  BackupHeader h;
  h.index = 4;
  c = checkBackup(encodeBackup(h, "not a snapshot"), nullptr);
  EXPECT_TRUE(c.ok) << "structure and checksum alone are fine: " << c.error;
  KvStore store;
  c = checkBackup(encodeBackup(h, "not a snapshot"), &store);
  EXPECT_FALSE(c.ok);
  EXPECT_NE(c.error.find("not a valid KV snapshot"), std::string::npos) << c.error;

  h.index = kv.appliedIndex() + 1;  // the header lies about the index
  c = checkBackup(encodeBackup(h, kv.snapshot()), &store);
  EXPECT_FALSE(c.ok);
  EXPECT_NE(c.error.find("but the header says index"), std::string::npos) << c.error;

  c = checkBackup("KVRID001 something else entirely");
  EXPECT_NE(c.error.find("bad magic"), std::string::npos) << c.error;
}

struct RestoreTest : ::testing::Test {
  std::string root;
  void SetUp() override {
    char tmpl[] = "/tmp/kvr-restore-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root = tmpl;
  }
  void TearDown() override { stdfs::remove_all(root); }

  std::string writeBackup(const std::string& bytes) {
    std::string path = root + "/backup.kvb";
    writeFileAtomically(path, bytes);
    return path;
  }
  std::string restoreError(const std::string& backup, const std::string& dir) {
    try {
      restoreDataDir(backup, dir, NodeIdentity{99, 2}, ConfState{{1, 2, 3}, {}, {}});
    } catch (const kj::Exception& e) {
      return e.getDescription().cStr();
    }
    return "";
  }
};

TEST_F(RestoreTest, SeedsADataDirThatRecoversToTheSnapshotWithTheNewMembers) {
  KvStore kv = sampleStore(4);
  std::string backup = writeBackup(sampleFile(kv, 5));
  std::string dir = root + "/node2";
  RestoreResult r = restoreDataDir(backup, dir, NodeIdentity{99, 2},
                                   ConfState{{1, 2, 3}, {}, {}});
  EXPECT_EQ(r.header.index, 6u);
  EXPECT_EQ(r.keys, 4u);
  EXPECT_EQ(r.droppedSessions, 1u);
  EXPECT_FALSE(stdfs::exists(dir + ".restore.tmp"));
  EXPECT_FALSE(stdfs::exists(dir + "/LOCK"));

  PosixFileSystem fs;
  auto opened = DiskStorage::open(fs, dir, NodeIdentity{99, 2});
  const Snapshot& snap = opened.state.snapshot;
  EXPECT_EQ(snap.meta.index, 6u);
  EXPECT_EQ(snap.meta.term, 5u);
  EXPECT_EQ(snap.meta.conf.voters, (std::vector<NodeId>{1, 2, 3}));
  EXPECT_TRUE(opened.state.entries.empty());
  EXPECT_EQ(opened.state.hardState, (HardState{5, kNoNode, 6}));
  KvStore back;
  ASSERT_TRUE(back.restore(*snap.data));
  EXPECT_EQ(back.data(), kv.data());
  EXPECT_EQ(back.appliedIndex(), 6u);
  EXPECT_EQ(back.sessionCount(), 0u);
  opened.storage = nullptr;
  // Another node or cluster id is refused by the identity file.
  EXPECT_THROW(DiskStorage::open(fs, dir, NodeIdentity{98, 2}), kj::Exception);
}

TEST_F(RestoreTest, AnEmptyExistingDirIsFine) {
  std::string backup = writeBackup(sampleFile(sampleStore(1)));
  std::string dir = root + "/empty";
  stdfs::create_directory(dir);
  EXPECT_EQ(restoreError(backup, dir), "");
  EXPECT_TRUE(stdfs::exists(dir + "/identity"));
}

TEST_F(RestoreTest, ATrailingSlashNamesTheSameDir) {
  std::string backup = writeBackup(sampleFile(sampleStore(1)));
  EXPECT_EQ(restoreError(backup, root + "/slash/"), "");
  EXPECT_TRUE(stdfs::exists(root + "/slash/identity"));
  EXPECT_FALSE(stdfs::exists(root + "/slash/.restore.tmp"));
  EXPECT_FALSE(stdfs::exists(root + "/slash.restore.tmp"));
  EXPECT_NE(restoreError(backup, "/").find("cannot be restored into"), std::string::npos);
}

TEST_F(RestoreTest, ABadFileOrANonEmptyDirLeavesNothingBehind) {
  std::string good = sampleFile(sampleStore(2));
  std::string dir = root + "/node2";

  std::string backup = writeBackup(good.substr(0, good.size() - 3));
  std::string err = restoreError(backup, dir);
  EXPECT_NE(err.find(backup), std::string::npos) << err;
  EXPECT_NE(err.find("truncated at byte " + std::to_string(good.size() - 3)), std::string::npos)
      << err;
  EXPECT_FALSE(stdfs::exists(dir));
  EXPECT_FALSE(stdfs::exists(dir + ".restore.tmp"));

  std::string flipped = good;
  flipped[kBackupHeaderBytes + 5] ^= 0x10;
  backup = writeBackup(flipped);
  err = restoreError(backup, dir);
  EXPECT_NE(err.find("checksum mismatch"), std::string::npos) << err;
  EXPECT_FALSE(stdfs::exists(dir));

  err = restoreError(root + "/missing.kvb", dir);
  EXPECT_NE(err.find("missing.kvb"), std::string::npos) << err;
  EXPECT_FALSE(stdfs::exists(dir));

  backup = writeBackup(good);
  stdfs::create_directory(dir);
  writeFileAtomically(dir + "/wal-0000000000000001.log", "old data");
  err = restoreError(backup, dir);
  EXPECT_NE(err.find("not empty"), std::string::npos) << err;
  EXPECT_EQ(readWholeFile(dir + "/wal-0000000000000001.log"), "old data");
  EXPECT_FALSE(stdfs::exists(dir + ".restore.tmp"));
}

}  // namespace
}  // namespace kvr::disk
