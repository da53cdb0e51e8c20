// Data dir incarnations (disk/identity.h, disk/peer_incarnations.h): drawn once with the
// dir and kept, given once to a dir written without one, and each peer's first one
// recorded durably; a damaged `peers` file is refused with one sentence.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/hash.h"
#include "core/wire.h"
#include "disk/disk_storage.h"
#include "disk/identity.h"
#include "disk/peer_incarnations.h"
#include "sim/sim_fs.h"

namespace kvr::disk {
namespace {

constexpr const char* kDataDir = "/d";

// A simulated file system with an empty data dir.
class PeersFile : public ::testing::Test {
 protected:
  PeersFile() { fs.createDir(kDataDir); }
  Rng rng{3};
  sim::SimFileSystem fs{rng};
};

TEST(Incarnation, AFreshDirKeepsTheIncarnationItWasMadeWith) {
  Rng rng(1);
  sim::SimFileSystem fs(rng);
  auto first = DiskStorage::open(fs, kDataDir, NodeIdentity{7, 2, 0xabc});
  EXPECT_EQ(first.identity.incarnation, 0xabcu);
  first.storage = nullptr;
  // A restart draws another candidate; the dir keeps its own.
  auto again = DiskStorage::open(fs, kDataDir, NodeIdentity{7, 2, 0xdef});
  EXPECT_EQ(again.identity.incarnation, 0xabcu);
  EXPECT_EQ(again.identity.nodeId, 2u);
}

TEST(Incarnation, AnIdentityWrittenWithoutOneGetsOneOnce) {
  Rng rng(2);
  sim::SimFileSystem fs(rng);
  fs.createDir(kDataDir);
  // The format before incarnations: "KVRID001", cluster, node, XXH3.
  std::string v1 = "KVRID001";
  wire::putFixed64(v1, 7);
  wire::putFixed32(v1, 2);
  wire::putFixed64(v1, hash64(v1));
  fs.open(std::string(kDataDir) + "/identity", OpenMode::Create)->append(v1);
  EXPECT_EQ(checkOrWriteIdentity(fs, kDataDir, NodeIdentity{7, 2, 0}, false).incarnation, 0u);
  EXPECT_EQ(checkOrWriteIdentity(fs, kDataDir, NodeIdentity{7, 2, 55}, false).incarnation, 55u);
  EXPECT_EQ(checkOrWriteIdentity(fs, kDataDir, NodeIdentity{7, 2, 66}, false).incarnation, 55u);
  EXPECT_THROW(checkOrWriteIdentity(fs, kDataDir, NodeIdentity{7, 3, 55}, false),
               kj::Exception);
}

TEST_F(PeersFile, EachPeersFirstIncarnationIsRecordedAndAnotherIsDifferent) {
  {
    PeerIncarnations peers(fs, kDataDir);
    uint64_t known = 0;
    EXPECT_EQ(peers.check(2, 0), PeerIncarnations::Seen::Unchecked);
    EXPECT_EQ(peers.check(2, 11, &known), PeerIncarnations::Seen::First);
    EXPECT_EQ(known, 11u);
    EXPECT_EQ(peers.check(3, 12), PeerIncarnations::Seen::First);
    EXPECT_EQ(peers.check(2, 11), PeerIncarnations::Seen::Same);
    EXPECT_EQ(peers.check(2, 0), PeerIncarnations::Seen::Unchecked);
  }
  // Durable: a crash right after the check keeps the record.
  fs.crash(false);
  PeerIncarnations reloaded(fs, kDataDir);
  EXPECT_EQ(reloaded.size(), 2u);
  uint64_t known = 0;
  EXPECT_EQ(reloaded.check(2, 99, &known), PeerIncarnations::Seen::Different);
  EXPECT_EQ(known, 11u);
  EXPECT_EQ(reloaded.check(3, 12), PeerIncarnations::Seen::Same);
  EXPECT_FALSE(fs.exists(std::string(kDataDir) + "/peers.tmp"));
}

TEST_F(PeersFile, AForgottenPeerMayComeBackWithAnotherIncarnation) {
  {
    PeerIncarnations peers(fs, kDataDir);
    peers.check(2, 11);
    peers.check(3, 12);
    peers.forget(2);
    peers.forget(4);  // never recorded: nothing to do
    EXPECT_EQ(peers.ids(), std::vector<NodeId>{3});
  }
  fs.crash(false);
  PeerIncarnations reloaded(fs, kDataDir);
  EXPECT_EQ(reloaded.check(2, 21), PeerIncarnations::Seen::First);
  EXPECT_EQ(reloaded.check(3, 22), PeerIncarnations::Seen::Different);
}

TEST_F(PeersFile, AnyChangedByteOfThePeersFileIsRefused) {
  {
    PeerIncarnations peers(fs, kDataDir);
    peers.check(1, 5);
    peers.check(3, 6);
  }
  const std::string path = std::string(kDataDir) + "/peers";
  const std::string good = fs.open(path, OpenMode::Read)->pread(0, fs.fileSize(path));
  for (size_t i = 0; i <= good.size(); ++i) {
    std::string bad = good;
    if (i == good.size()) {
      bad += 'x';
    } else {
      bad[i] = static_cast<char>(bad[i] ^ 0x10);
    }
    fs.remove(path);
    fs.open(path, OpenMode::Create)->append(bad);
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { PeerIncarnations peers(fs, kDataDir); })) {
      EXPECT_NE(std::string(e->getDescription().cStr()).find("/d/peers"), std::string::npos)
          << e->getDescription().cStr();
    } else {
      ADD_FAILURE() << "a peers file with byte " << i << " changed was accepted";
    }
  }
}

}  // namespace
}  // namespace kvr::disk
