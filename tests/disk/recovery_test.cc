// DiskStorage over the simulated file system: recovery, refusals, fail-stop, segments.
#include <gtest/gtest.h>

#include "core/hash.h"
#include "core/wire.h"
#include "disk/disk_storage.h"
#include "disk/wal.h"
#include "sim/sim_fs.h"
#include "tests/disk/disk_test_util.h"

namespace kvr::disk {
namespace {

using namespace kvr::disk::testing;
using sim::SimFileSystem;

const std::string kDir = "/data/node1";
const std::string kSeg1 = kDir + "/wal-0000000000000001.log";

struct RecoveryTest : ::testing::Test {
  Rng rng{7};
  SimFileSystem fs{rng};

  DiskStorage::Recovered open(WalOptions opts = {}, NodeIdentity id = kIdentity) {
    return DiskStorage::open(fs, kDir, id, opts);
  }

  std::string openError(WalOptions opts = {}, NodeIdentity id = kIdentity) {
    try {
      open(opts, id);
    } catch (const kj::Exception& e) {
      return e.getDescription().cStr();
    }
    return "";
  }

  // Three batches of two entries each, flushed separately; returns the segment size
  // after each flush.
  std::vector<uint64_t> writeThreeBatches() {
    auto r = open();
    std::vector<uint64_t> sizes;
    for (uint64_t i = 0; i < 3; ++i) {
      PersistBatch b = entriesBatch(i + 1, 1, 1 + 2 * i, 2);
      b.hardState = HardState{1, 1, 2 * i};
      r.storage->persist(std::move(b));
      EXPECT_EQ(r.storage->flush(), std::vector<uint64_t>{i + 1});
      sizes.push_back(fs.fileSize(kSeg1));
    }
    return sizes;
  }
};

TEST_F(RecoveryTest, RoundTrip) {
  writeThreeBatches();
  auto r = open();
  ASSERT_EQ(r.state.entries.size(), 6u);
  EXPECT_EQ(r.state.entries[5].index, 6u);
  EXPECT_EQ(r.state.hardState, (HardState{1, 1, 4}));
  EXPECT_EQ(r.state.snapshot.meta.index, 0u);
}

TEST_F(RecoveryTest, OverwriteSuffix) {
  writeThreeBatches();
  {
    auto r = open();
    r.storage->persist(entriesBatch(1, 2, 4, 1));  // replaces 4..6 with one entry of term 2
    r.storage->flush();
  }
  auto r = open();
  ASSERT_EQ(r.state.entries.size(), 4u);
  EXPECT_EQ(r.state.entries.back().term, 2u);
}

// A damaged record that was completely written: cut there (durably marked first), the
// node recovers up to the highest index it held, and the repair names file and offset.
TEST_F(RecoveryTest, CorruptMiddleRecordIsCutAndTheNodeRecovers) {
  auto sizes = writeThreeBatches();
  const uint64_t payloadAt = sizes[0] + kRecordOverheadBytes + 20 + kRecordHeaderBytes + 30;
  fs.flipBit(kSeg1, payloadAt);  // inside the second batch's entries payload
  auto r = open();
  EXPECT_TRUE(r.state.recovering);
  EXPECT_EQ(r.state.recoverUntil, 6u);
  EXPECT_EQ(r.state.entries.size(), 2u);
  EXPECT_EQ(r.state.hardState.term, 1u);
  ASSERT_EQ(r.repairs.size(), 1u);
  const std::string& repair = r.repairs[0];
  EXPECT_NE(repair.find("wal-0000000000000001.log"), std::string::npos) << repair;
  EXPECT_NE(repair.find("byte offset " + std::to_string(sizes[0] + kRecordOverheadBytes + 20)),
            std::string::npos)
      << repair;
  EXPECT_NE(repair.find("Not a torn write"), std::string::npos) << repair;
  EXPECT_EQ(fs.fileSize(kSeg1), sizes[0]);
  EXPECT_TRUE(fs.exists(kDir + "/recovering"));
  // Restarting before catching up: still recovering, same target.
  r.storage = nullptr;
  auto again = open();
  EXPECT_TRUE(again.state.recovering);
  EXPECT_EQ(again.state.recoverUntil, 6u);
  EXPECT_TRUE(again.repairs.empty());
  // Caught up: the batch that ends the recovery removes the mark once durable.
  PersistBatch b = entriesBatch(1, 1, 3, 4);
  b.hardState = HardState{1, 1, 6};
  b.endRecovery = true;
  again.storage->persist(std::move(b));
  again.storage->flush();
  EXPECT_FALSE(fs.exists(kDir + "/recovering"));
  auto done = open();
  EXPECT_FALSE(done.state.recovering);
  EXPECT_EQ(done.state.entries.size(), 6u);
}

TEST_F(RecoveryTest, CorruptLengthFieldInMiddleIsHarmless) {
  auto sizes = writeThreeBatches();
  fs.flipBit(kSeg1, sizes[0] + 9);  // the second batch's first length field (front copy)
  auto r = open();
  EXPECT_FALSE(r.state.recovering);  // the trailer copy tells the record
  EXPECT_EQ(r.state.entries.size(), 6u);
}

TEST_F(RecoveryTest, TornTailIsCutAndTheNodeStarts) {
  auto sizes = writeThreeBatches();
  {
    // Half of a fourth batch, as a crash mid-write leaves it.
    PersistBatch b = entriesBatch(4, 1, 7, 3, 100);
    std::string frames;
    appendFrame(frames, RecordType::Entries, false, encodeEntries(b.entries));
    auto f = fs.open(kSeg1, OpenMode::Append);
    f->append(std::string_view(frames).substr(0, frames.size() / 2));
    f->datasync();
  }
  auto r = open();
  EXPECT_EQ(r.state.entries.size(), 6u);
  EXPECT_EQ(fs.fileSize(kSeg1), sizes[2]);
  // And it keeps working after the cut.
  r.storage->persist(entriesBatch(1, 1, 7, 1));
  r.storage->flush();
  auto again = DiskStorage::open(fs, kDir, kIdentity);
  EXPECT_EQ(again.state.entries.size(), 7u);
}

// Issue 14: a flip in the newest record's payload is corruption (its trailer proves
// it was completely written), not a torn tail: never cut silently.
TEST_F(RecoveryTest, CorruptNewestRecordIsNotATornTail) {
  auto sizes = writeThreeBatches();
  fs.flipBit(kSeg1, sizes[2] - kRecordHeaderBytes - 3);
  auto r = open();
  EXPECT_TRUE(r.state.recovering);
  EXPECT_EQ(r.state.recoverUntil, 6u);
  EXPECT_EQ(r.state.entries.size(), 4u);
  EXPECT_EQ(fs.fileSize(kSeg1), sizes[1]);
}

// A flip in the newest record's trailer: the record is intact; the node appends a
// record after it so that further damage cannot pass for a torn tail.
TEST_F(RecoveryTest, DamagedNewestTrailerIsKeptAndCovered) {
  auto sizes = writeThreeBatches();
  fs.flipBit(kSeg1, sizes[2] - 3);
  auto r = open();
  EXPECT_FALSE(r.state.recovering);
  EXPECT_EQ(r.state.entries.size(), 6u);
  EXPECT_GT(fs.fileSize(kSeg1), sizes[2]);
  r.storage = nullptr;
  fs.flipBit(kSeg1, sizes[2] - 3 - 8 * 20);  // now the front copy too (payload intact)
  auto again = open();
  EXPECT_TRUE(again.state.recovering);
}

TEST_F(RecoveryTest, HalfABatchIsNeverApplied) {
  auto sizes = writeThreeBatches();
  {
    // A batch of hard state + entries whose entries record is missing.
    std::string frames;
    appendFrame(frames, RecordType::HardState, true, encodeHardState({9, 9, 9}));
    Index hwm = 0;
    stampSeqs(frames, 7, &hwm);  // three batches of two records each before it
    auto f = fs.open(kSeg1, OpenMode::Append);
    f->append(frames);
    f->datasync();
  }
  auto r = open();
  EXPECT_EQ(r.state.hardState, (HardState{1, 1, 4}));
  EXPECT_EQ(fs.fileSize(kSeg1), sizes[2]);
}

TEST_F(RecoveryTest, IdentityMismatchIsRefused) {
  writeThreeBatches();
  std::string error = openError({}, NodeIdentity{0xc1u, 2});
  EXPECT_NE(error.find("belongs to cluster 193 node 1"), std::string::npos) << error;
  EXPECT_NE(error.find("this process is cluster 193 node 2"), std::string::npos) << error;
  error = openError({}, NodeIdentity{0xc2u, 1});
  EXPECT_NE(error.find("refusing to start"), std::string::npos) << error;
  EXPECT_EQ(openError(), "");
}

TEST_F(RecoveryTest, CorruptIdentityIsRefused) {
  writeThreeBatches();
  fs.flipBit(kDir + "/identity", 10);
  std::string error = openError();
  EXPECT_NE(error.find("identity"), std::string::npos) << error;
}

TEST_F(RecoveryTest, SnapshotAndLocalCompaction) {
  {
    auto r = open();
    r.storage->persist(entriesBatch(1, 1, 1, 10));
    PersistBatch s;
    s.seq = 2;
    s.snapshot = makeSnapshot(6, 1, "state@6");
    r.storage->persist(std::move(s));
    r.storage->persist(entriesBatch(3, 1, 11, 2));
    EXPECT_EQ(r.storage->flush(), (std::vector<uint64_t>{1, 2, 3}));
  }
  auto r = open();
  EXPECT_EQ(r.state.snapshot.meta.index, 6u);
  EXPECT_EQ(*r.state.snapshot.data, "state@6");
  ASSERT_EQ(r.state.entries.size(), 6u);
  EXPECT_EQ(r.state.entries.front().index, 7u);
  EXPECT_EQ(r.state.entries.back().index, 12u);
}

TEST_F(RecoveryTest, SnapshotFromLeaderResetsLog) {
  {
    auto r = open();
    r.storage->persist(entriesBatch(1, 1, 1, 10));
    PersistBatch s;
    s.seq = 2;
    s.snapshot = makeSnapshot(20, 3, "state@20");
    s.resetLog = true;
    s.entries = entriesBatch(0, 3, 21, 2).entries;
    r.storage->persist(std::move(s));
    r.storage->flush();
  }
  auto r = open();
  EXPECT_EQ(r.state.snapshot.meta.index, 20u);
  ASSERT_EQ(r.state.entries.size(), 2u);
  EXPECT_EQ(r.state.entries.front().index, 21u);
}

TEST_F(RecoveryTest, OldSnapshotFileRemovedAfterNewOneIsDurable) {
  auto r = open();
  r.storage->persist(entriesBatch(1, 1, 1, 10));
  for (uint64_t i = 0; i < 3; ++i) {
    PersistBatch s;
    s.seq = 2 + i;
    s.snapshot = makeSnapshot(3 + i, 1, std::to_string(i).append("-s"));
    r.storage->persist(std::move(s));
    r.storage->flush();
  }
  size_t snaps = 0;
  for (const auto& name : fs.list(kDir)) snaps += name.starts_with("snap-");
  EXPECT_EQ(snaps, 1u);
}

struct FixedSource final : SnapshotSource {
  explicit FixedSource(std::string bytes)
      : bytes(std::make_shared<const std::string>(std::move(bytes))) {}
  std::shared_ptr<const std::string> materialize() override {
    ++calls;
    return bytes;
  }
  // In pieces of 3 bytes.
  uint64_t stream(const std::function<void(std::string_view)>& sink) override {
    ++streams;
    for (size_t i = 0; i < bytes->size(); i += 3) sink(std::string_view(*bytes).substr(i, 3));
    return bytes->size();
  }
  std::shared_ptr<const std::string> bytes;
  int calls = 0;
  int streams = 0;
};

// A node prepares the snapshot file beside the WAL writes, then persists the snapshot
// in a batch that only appends the marker; recovery finds it. If the prepared file is
// gone by then (a leader's snapshot install removed it), the batch writes it again.
// Without `withBytes` the batch carries the source instead of the bytes (the node's way:
// they were never in memory), and a removed file is streamed again.
void preparedSnapshotRoundTrip(RecoveryTest& t, bool removed, bool withBytes) {
  auto& fs = t.fs;
  {
    {
      auto r = t.open();
      r.storage->persist(entriesBatch(1, 1, 1, 10));
      r.storage->flush();
      SnapshotMeta meta = makeSnapshot(6, 1, "").meta;
      auto source = std::make_shared<FixedSource>("state@6");
      SnapshotMarker marker = r.storage->prepareSnapshot(meta, *source);
      EXPECT_EQ(source->calls, 0);
      EXPECT_EQ(source->streams, 2);  // the size and checksum, then the file
      EXPECT_EQ(marker.dataBytes, 7u);
      EXPECT_EQ(marker.dataChecksum, hash64("state@6"));
      // The WAL goes on meanwhile.
      r.storage->persist(entriesBatch(2, 1, 11, 2));
      r.storage->flush();
      r.storage->notePrepared(marker);
      const std::string file = kDir + "/snap-0000000000000006-0000000000000001.snap";
      EXPECT_TRUE(fs.exists(file));
      // Its bytes read back in chunks, as a leader sends them.
      std::string chunk;
      ASSERT_TRUE(r.storage->readSnapshot(meta, 7, 3, 10, &chunk));
      EXPECT_EQ(chunk, "te@6");
      EXPECT_FALSE(r.storage->readSnapshot(meta, 8, 0, 4, &chunk));  // not its size
      if (removed) fs.remove(file);
      EXPECT_EQ(r.storage->readSnapshot(meta, 7, 0, 4, &chunk), !removed);
      PersistBatch s;
      s.seq = 3;
      if (withBytes) {
        s.snapshot = Snapshot{meta, source->materialize()};
      } else {
        s.snapshot = Snapshot{meta, nullptr};
        s.snapshotSource = source;
      }
      r.storage->persist(std::move(s));
      EXPECT_EQ(r.storage->flush(), std::vector<uint64_t>{3});
      EXPECT_EQ(source->streams, !withBytes && removed ? 4 : 2);
      ASSERT_TRUE(r.storage->readSnapshot(meta, 7, 0, 4, &chunk));
      EXPECT_EQ(chunk, "stat");
    }
    auto r = t.open();
    EXPECT_EQ(r.state.snapshot.meta.index, 6u);
    EXPECT_EQ(*r.state.snapshot.data, "state@6");
    ASSERT_EQ(r.state.entries.size(), 6u);
    EXPECT_EQ(r.state.entries.front().index, 7u);
  }
}

TEST_F(RecoveryTest, PreparedSnapshotIsPointedAtByTheLaterBatch) {
  preparedSnapshotRoundTrip(*this, false, true);
}

TEST_F(RecoveryTest, PreparedSnapshotRemovedMeanwhileIsWrittenByTheBatch) {
  preparedSnapshotRoundTrip(*this, true, true);
}

TEST_F(RecoveryTest, StreamedSnapshotBatchWithoutItsBytesPointsAtTheFile) {
  preparedSnapshotRoundTrip(*this, false, false);
}

TEST_F(RecoveryTest, StreamedSnapshotRemovedMeanwhileIsStreamedAgainByTheBatch) {
  preparedSnapshotRoundTrip(*this, true, false);
}

TEST_F(RecoveryTest, CorruptSnapshotIsWipedAndTheNodeRecovers) {
  {
    auto r = open();
    r.storage->persist(entriesBatch(1, 1, 1, 10));
    PersistBatch s;
    s.seq = 2;
    s.snapshot = makeSnapshot(6, 1, std::string(1000, 's'));
    r.storage->persist(std::move(s));
    r.storage->flush();
  }
  const std::string snap = kDir + "/snap-0000000000000006-0000000000000001.snap";
  fs.flipBit(snap, fs.fileSize(snap) - 10);
  auto r = open();
  EXPECT_TRUE(r.state.recovering);
  EXPECT_EQ(r.state.recoverUntil, 10u);
  EXPECT_EQ(r.state.snapshot.meta.index, 0u);
  EXPECT_TRUE(r.state.entries.empty());
  ASSERT_EQ(r.repairs.size(), 1u);
  EXPECT_NE(r.repairs[0].find(snap), std::string::npos) << r.repairs[0];
  EXPECT_NE(r.repairs[0].find("checksum"), std::string::npos) << r.repairs[0];
  EXPECT_FALSE(fs.exists(snap));
}

TEST_F(RecoveryTest, MissingSnapshotIsRecovered) {
  {
    auto r = open();
    r.storage->persist(entriesBatch(1, 1, 1, 10));
    PersistBatch s;
    s.seq = 2;
    s.snapshot = makeSnapshot(6, 1, "x");
    r.storage->persist(std::move(s));
    r.storage->flush();
  }
  fs.remove(kDir + "/snap-0000000000000006-0000000000000001.snap");
  auto r = open();
  EXPECT_TRUE(r.state.recovering);
  ASSERT_EQ(r.repairs.size(), 1u);
  EXPECT_NE(r.repairs[0].find("missing"), std::string::npos) << r.repairs[0];
}

TEST_F(RecoveryTest, SegmentsRollAndMissingSegmentIsCut) {
  WalOptions small{2048};
  {
    auto r = open(small);
    for (uint64_t i = 0; i < 40; ++i) {
      r.storage->persist(entriesBatch(i + 1, 1, 1 + 4 * i, 4, 50));
      r.storage->flush();
    }
    EXPECT_GE(r.storage->walSegments(), 4u);
  }
  auto r = open(small);
  EXPECT_EQ(r.state.entries.size(), 160u);
  std::vector<std::string> segments;
  for (const auto& name : fs.list(kDir)) {
    if (parseSegmentName(name)) segments.push_back(name);
  }
  ASSERT_GE(segments.size(), 3u);
  fs.remove(kDir + "/" + segments[1]);
  auto cut = open(small);
  EXPECT_TRUE(cut.state.recovering);
  EXPECT_EQ(cut.state.recoverUntil, 160u);
  ASSERT_EQ(cut.repairs.size(), 1u);
  EXPECT_NE(cut.repairs[0].find(segments[2]), std::string::npos) << cut.repairs[0];
  EXPECT_NE(cut.repairs[0].find("missing"), std::string::npos) << cut.repairs[0];
  EXPECT_FALSE(fs.exists(kDir + "/" + segments[2]));
}

TEST_F(RecoveryTest, OldFormatIsRefusedClearly) {
  open();  // the identity file
  fs.remove(kSeg1);
  {
    auto f = fs.open(kSeg1, OpenMode::Create);
    std::string payload = encodeHardState({1, 1, 0});
    std::string typed = std::string(1, '\x01') + payload;
    std::string v1;
    wire::putFixed32(v1, static_cast<uint32_t>(payload.size()));
    wire::putFixed64(v1, hash64(typed));
    f->append(v1 + typed);
    f->datasync();
  }
  fs.syncDir(kDir);
  std::string error = openError();
  EXPECT_NE(error.find("format v1"), std::string::npos) << error;
}

TEST_F(RecoveryTest, CoveredSegmentsAreDeleted) {
  WalOptions small{2048};
  Index last = 0;
  {
    auto r = open(small);
    uint64_t seq = 1;
    for (int round = 0; round < 30; ++round) {
      r.storage->persist(entriesBatch(seq++, 1, last + 1, 4, 100));
      last += 4;
      PersistBatch s;
      s.seq = seq++;
      s.snapshot = makeSnapshot(last - 1, 1, std::to_string(last).append("-snap"));
      s.hardState = HardState{1, 1, last};
      r.storage->persist(std::move(s));
      r.storage->flush();
    }
    EXPECT_LE(r.storage->walSegments(), 3u);
  }
  auto r = open(small);
  EXPECT_EQ(r.state.snapshot.meta.index, last - 1);
  EXPECT_EQ(*r.state.snapshot.data, std::to_string(last).append("-snap"));
  ASSERT_EQ(r.state.entries.size(), 1u);
  EXPECT_EQ(r.state.entries[0].index, last);
  EXPECT_EQ(r.state.hardState.commit, last);
}

// Writes 12 batches of 4 entries (several segments of a small WAL) and makes a snapshot
// at index 8 durable ("first"); advances `seq` and `last`.
void fillThenSnapshotAt8(DiskStorage& storage, uint64_t& seq, Index& last) {
  for (int i = 0; i < 12; ++i) {
    storage.persist(entriesBatch(seq++, 1, last + 1, 4, 100));
    last += 4;
    storage.flush();
  }
  PersistBatch first;
  first.seq = seq++;
  first.snapshot = makeSnapshot(8, 1, "first");
  storage.persist(std::move(first));
  storage.flush();
}

// The node removes obsolete files apart from the write that made them obsolete
// (writeDeferringCleanup, then cleanup on another pool job): until then they stay, a
// crash before the cleanup loses nothing, and the cleanup never removes a newer
// snapshot file being prepared meanwhile.
TEST_F(RecoveryTest, DeferredCleanupRemovesOnlyWhatTheWriteReplaced) {
  WalOptions small{2048};
  auto snapFiles = [&]() {
    std::vector<std::string> names;
    for (const auto& name : fs.list(kDir)) {
      if (SnapshotStore::isSnapshotFileName(name)) names.push_back(name);
    }
    return names;
  };
  auto segmentCount = [&]() {
    size_t n = 0;
    for (const auto& name : fs.list(kDir)) n += parseSegmentName(name).has_value() ? 1 : 0;
    return n;
  };
  Index last = 0;
  uint64_t seq = 1;
  {
    auto r = open(small);
    fillThenSnapshotAt8(*r.storage, seq, last);
    ASSERT_EQ(snapFiles().size(), 1u);
    const size_t segmentsBefore = segmentCount();
    ASSERT_GE(segmentsBefore, 3u);

    // A newer snapshot file, as if prepared beside the write below.
    PersistBatch second;
    second.seq = seq++;
    second.snapshot = makeSnapshot(last, 1, "second");
    r.storage->persist(std::move(second));
    SnapshotStore(fs, kDir).write(makeSnapshot(last + 100, 1, "newer"), false);
    Written w = r.storage->writeDeferringCleanup(r.storage->takeQueued());
    EXPECT_EQ(w.durable, std::vector<uint64_t>{seq - 1});
    ASSERT_TRUE(w.cleanup.snapshot.has_value());
    EXPECT_EQ(w.cleanup.snapshot->index, last);
    ASSERT_FALSE(w.cleanup.walSegments.empty());
    for (size_t i = 1; i < w.cleanup.walSegments.size(); ++i) {
      EXPECT_LT(w.cleanup.walSegments[i - 1], w.cleanup.walSegments[i]);  // oldest first
    }
    // Nothing removed yet: the old snapshot, the new one, the newer one, every segment.
    EXPECT_EQ(snapFiles().size(), 3u);
    EXPECT_EQ(segmentCount(), segmentsBefore);
    const size_t covered = w.cleanup.walSegments.size();

    // More writes go on before the cleanup runs.
    r.storage->persist(entriesBatch(seq++, 1, last + 1, 2, 100));
    Written more = r.storage->writeDeferringCleanup(r.storage->takeQueued());
    EXPECT_TRUE(more.cleanup.empty());

    r.storage->cleanup(std::move(w.cleanup));
    EXPECT_EQ(segmentCount(), segmentsBefore - covered);
    EXPECT_EQ(snapFiles(),
              (std::vector<std::string>{SnapshotStore::fileName(makeSnapshot(last, 1, "").meta),
                                        SnapshotStore::fileName(
                                            makeSnapshot(last + 100, 1, "").meta)}));
  }
  // The next start removes the leftover newer file and recovers the second snapshot.
  auto r = open(small);
  EXPECT_EQ(r.state.snapshot.meta.index, last);
  EXPECT_EQ(*r.state.snapshot.data, "second");
  ASSERT_FALSE(r.state.entries.empty());
  EXPECT_EQ(r.state.entries.back().index, last + 2);
  EXPECT_EQ(snapFiles().size(), 1u);
}

TEST_F(RecoveryTest, CrashBeforeDeferredCleanupLosesNothing) {
  WalOptions small{2048};
  Index last = 0;
  uint64_t seq = 1;
  {
    auto r = open(small);
    fillThenSnapshotAt8(*r.storage, seq, last);
    PersistBatch second;
    second.seq = seq++;
    second.snapshot = makeSnapshot(last, 1, "second");
    r.storage->persist(std::move(second));
    Written w = r.storage->writeDeferringCleanup(r.storage->takeQueued());
    ASSERT_FALSE(w.cleanup.empty());
    // Crash: the cleanup never runs.
  }
  fs.crash(false);
  auto r = open(small);
  EXPECT_FALSE(r.state.recovering);
  EXPECT_EQ(r.state.snapshot.meta.index, last);
  EXPECT_EQ(*r.state.snapshot.data, "second");
  size_t snaps = 0;
  for (const auto& name : fs.list(kDir))
    snaps += SnapshotStore::isSnapshotFileName(name) ? 1 : 0;
  EXPECT_EQ(snaps, 1u);  // open() removed the replaced one
}

// removeSegments renames a segment out of the WAL (durably) before unlinking it; a
// crash between the two leaves a .removed file that replay ignores and open() removes.
TEST_F(RecoveryTest, LeftoverRemovedSegmentIsIgnoredAndRemoved) {
  WalOptions small{2048};
  Index last = 0;
  {
    auto r = open(small);
    for (uint64_t i = 0; i < 12; ++i) {
      r.storage->persist(entriesBatch(i + 1, 1, last + 1, 4, 100));
      last += 4;
      r.storage->flush();
    }
    PersistBatch s;
    s.seq = 13;
    s.snapshot = makeSnapshot(last, 1, "snap");
    r.storage->persist(std::move(s));
    r.storage->flush();
  }
  std::vector<std::string> segments;
  for (const auto& name : fs.list(kDir)) {
    if (parseSegmentName(name)) segments.push_back(name);
    EXPECT_FALSE(isRemovedSegmentName(name)) << name;
  }
  ASSERT_GE(segments.size(), 1u);
  // As if a crash hit between the rename and the unlink of a covered segment: a copy of
  // the oldest segment under the .removed name.
  {
    auto in = fs.open(kDir + "/" + segments[0], OpenMode::Read);
    auto out = fs.open(kDir + "/" + segments[0] + ".removed", OpenMode::Create);
    out->append(in->pread(0, in->size()));
    out->datasync();
  }
  fs.syncDir(kDir);
  EXPECT_TRUE(isRemovedSegmentName(segments[0] + ".removed"));
  EXPECT_FALSE(isRemovedSegmentName("snap-0000000000000001-0000000000000001.snap.removed"));
  auto r = open(small);
  EXPECT_FALSE(r.state.recovering);
  EXPECT_EQ(r.state.snapshot.meta.index, last);
  EXPECT_FALSE(fs.exists(kDir + "/" + segments[0] + ".removed"));
}

TEST(SnapshotStoreNames, IndexOfFileName) {
  SnapshotMeta meta;
  meta.index = 0x1234abcd;
  meta.term = 7;
  meta.conf.voters = {1};
  EXPECT_EQ(SnapshotStore::indexOfFileName(SnapshotStore::fileName(meta)), meta.index);
  EXPECT_EQ(SnapshotStore::indexOfFileName(SnapshotStore::fileName(meta) + ".tmp"), meta.index);
  EXPECT_FALSE(SnapshotStore::indexOfFileName("wal-0000000000000001.log").has_value());
  EXPECT_FALSE(SnapshotStore::indexOfFileName("snap-00000000000000zz-0000000000000001.snap")
                   .has_value());
  EXPECT_FALSE(SnapshotStore::indexOfFileName("snap-1-2.snap").has_value());
  // WAL segment names share the parser: 16 lowercase hex digits, nothing else.
  EXPECT_EQ(parseSegmentName("wal-00000000000000ff.log"), std::optional<uint64_t>(255));
  EXPECT_FALSE(parseSegmentName("wal-00000000000000FF.log").has_value());
  EXPECT_FALSE(parseSegmentName("wal-00000000000000f.log").has_value());
}

TEST_F(RecoveryTest, FsyncErrorIsFailStop) {
  auto r = open();
  r.storage->persist(entriesBatch(1, 1, 1, 2));
  EXPECT_EQ(r.storage->flush(), std::vector<uint64_t>{1});
  r.storage->persist(entriesBatch(2, 1, 3, 2));
  fs.failNextSync();
  try {
    r.storage->flush();
    ADD_FAILURE() << "flush succeeded after an fsync error";
  } catch (const kj::Exception& e) {
    EXPECT_NE(std::string(e.getDescription().cStr()).find("fail-stop"), std::string::npos);
  }
  EXPECT_TRUE(r.storage->dead());
  r.storage->persist(entriesBatch(3, 1, 5, 2));
  EXPECT_ANY_THROW(r.storage->flush());  // never retries and carries on
}

TEST_F(RecoveryTest, WriteErrorIsFailStop) {
  auto r = open();
  r.storage->persist(entriesBatch(1, 1, 1, 2));
  fs.failNextWrite();
  EXPECT_ANY_THROW(r.storage->flush());
  EXPECT_TRUE(r.storage->dead());
}

TEST_F(RecoveryTest, OversizedBatchIsRejected) {
  auto r = open();
  PersistBatch b;
  b.seq = 1;
  for (Index i = 1; i <= 40; ++i)
    b.entries.push_back(makeEntry(1, i, std::string(2 << 20, 'x')));
  try {
    r.storage->persist(std::move(b));
    ADD_FAILURE() << "oversized batch accepted";
  } catch (const kj::Exception& e) {
    EXPECT_NE(std::string(e.getDescription().cStr()).find("over the WAL record limit"),
              std::string::npos);
  }
  EXPECT_FALSE(r.storage->hasQueued());
}

TEST_F(RecoveryTest, BadSegmentSizeIsRejected) {
  EXPECT_NE(openError(WalOptions{100}).find("segment size"), std::string::npos);
}

// A WAL segment holding random bytes is never loaded as state: recovery either refuses
// or treats it all as a torn tail.
TEST_F(RecoveryTest, RandomSegmentBytesNeverAccepted) {
  for (uint64_t seed = 0; seed < 50; ++seed) {
    Rng r(seed);
    SimFileSystem fs2(r);
    DiskStorage::open(fs2, kDir, kIdentity);  // creates the dir, identity and segment 1
    {
      auto f = fs2.open(kSeg1, OpenMode::Append);
      std::string junk;
      for (uint64_t i = r.below(4000); i > 0; --i) junk.push_back(static_cast<char>(r.next()));
      f->append(junk);
      f->datasync();
    }
    try {
      auto rec = DiskStorage::open(fs2, kDir, kIdentity);
      EXPECT_TRUE(rec.state.entries.empty());
      EXPECT_EQ(rec.state.hardState, HardState{});
      EXPECT_EQ(fs2.fileSize(kSeg1), 0u);
    } catch (const kj::Exception&) {
    }
  }
}

}  // namespace
}  // namespace kvr::disk

namespace kvr::disk {
namespace {

using namespace kvr::disk::testing;
using sim::SimFileSystem;

// Builds a small WAL (three batches, the last with a hard state and two entries) on a
// fresh file system and returns its newest segment's size.
uint64_t buildSmallWal(SimFileSystem& fs) {
  auto r = DiskStorage::open(fs, kDir, kIdentity);
  for (uint64_t i = 0; i < 3; ++i) {
    PersistBatch b = entriesBatch(i + 1, 1, 1 + 2 * i, 2);
    b.hardState = HardState{1 + i, 1, 2 * i};
    r.storage->persist(std::move(b));
    r.storage->flush();
  }
  return fs.fileSize(kSeg1);
}

// The issue-14 property for single bit flips: whatever bit of the WAL flips, recovery
// either gives back exactly what was durable, or starts recovering up to at least the
// last index the node held (never a silent cut of a completely written record).
TEST(StorageFaults, EveryBitFlipIsHarmlessOrRecovering) {
  Rng probeRng{1};
  SimFileSystem probe{probeRng};
  const uint64_t size = buildSmallWal(probe);
  for (uint64_t bit = 0; bit < size * 8; ++bit) {
    Rng rng{3};
    SimFileSystem fs{rng};
    buildSmallWal(fs);
    std::string bytes = fs.contents(kSeg1);
    bytes[bit / 8] ^= static_cast<char>(1u << (bit % 8));
    fs.remove(kSeg1);
    {
      auto f = fs.open(kSeg1, OpenMode::Create);
      f->append(bytes);
      f->datasync();
    }
    fs.syncDir(kDir);
    auto r = DiskStorage::open(fs, kDir, kIdentity);
    if (r.state.recovering) {
      EXPECT_GE(r.state.recoverUntil, 6u) << "bit " << bit;
      EXPECT_EQ(r.state.hardState.term, 3u) << "bit " << bit;
      EXPECT_FALSE(r.repairs.empty());
    } else {
      ASSERT_EQ(r.state.entries.size(), 6u) << "bit " << bit << " of " << size * 8;
      EXPECT_EQ(r.state.hardState, (HardState{3, 1, 4})) << "bit " << bit;
    }
  }
}

}  // namespace
}  // namespace kvr::disk
