// kvr::Storage over a FileSystem and a data directory: the WAL (disk/wal.h), snapshot
// files (disk/snapshot_store.h) and the identity file (disk/identity.h).
//
// Threading. The work is split in halves that share no mutable state:
//  - the loop half: persist() encodes a batch into WAL frames and queues it (cheap);
//    takeQueued() hands everything queued so far over as one QueuedWrites value.
//  - the writer half: writeDeferringCleanup(QueuedWrites&&) makes it durable (group
//    commit: one append and one fdatasync for all of it) and returns the seqs now
//    durable, in order, and the files that became obsolete (a replaced snapshot file,
//    WAL segments the new snapshot covers).
//  - the cleanup half: cleanup(Cleanup&&) removes those files. Unlinking a file of
//    hundreds of MB and the directory fsyncs take long; run apart from the writer, they
//    do not hold up the next append's fsync. Removing them late (or never: a crash)
//    loses nothing; open() removes leftovers.
// A node calls persist()/takeQueued() on its loop thread, writeDeferringCleanup() on one
// worker thread at a time and cleanup() on one worker thread at a time (in the order
// the writes returned them), moving values across with its own hand-off (whatever
// queue/lock the host uses). No lock is needed in here. A single-threaded host (the
// simulator) calls flush(), which is write(takeQueued()); write() cleans up at once.
//
// Fail-stop: if write() throws, the storage is dead. Every later write() throws; the
// batches of the failed write and all later ones are never reported durable. The host
// must stop the node (and restart it from disk, which recovers a prefix of batches).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/env.h"
#include "disk/file_system.h"
#include "disk/identity.h"
#include "disk/snapshot_store.h"
#include "disk/wal.h"

namespace kvr::disk {

// One encoded batch on its way from the loop half to the writer half.
struct QueuedBatch {
  uint64_t seq = 0;
  std::optional<Snapshot> snapshot;  // written to its file by the writer half
  // The file of `snapshot` was already written by prepareSnapshot (if it still exists,
  // the writer half only appends this marker).
  std::optional<SnapshotMarker> prepared;
  std::shared_ptr<SnapshotSource> snapshotSource;  // when `snapshot` comes without its bytes
  bool resetLog = false;
  bool endRecovery = false;  // remove the recovery mark once this batch is durable
  WalBatch wal;  // frames after the snapshot marker (the writer prepends the marker)
};
using QueuedWrites = std::vector<QueuedBatch>;

// Files a write made obsolete, for DiskStorage::cleanup.
struct Cleanup {
  std::vector<std::string> walSegments;  // oldest first
  std::optional<SnapshotMeta> snapshot;  // remove the snapshot files it replaced
  bool empty() const { return walSegments.empty() && !snapshot; }
};

struct Written {
  std::vector<uint64_t> durable;  // seqs, in order
  Cleanup cleanup;
};
class DiskStorage final : public Storage, public SnapshotReader {
 public:
  struct Recovered;

  // Opens (creating if needed) the data dir, verifies the identity, replays and
  // verifies the WAL and the snapshot, cuts a torn WAL tail. Throws kj::Exception with
  // one operator-facing sentence when the data cannot be trusted.
  static Recovered open(FileSystem& fs, const std::string& dir, const NodeIdentity& id,
                        const WalOptions& options = {});

  // ---- loop half ----
  // Throws (without queuing) if the batch's entries exceed kMaxRecordPayloadBytes.
  void persist(PersistBatch&& batch) override;
  QueuedWrites takeQueued();
  bool hasQueued() const { return !queue_.empty(); }

  // Notes a snapshot file prepareSnapshot wrote; the batch that persists that snapshot
  // then reuses the file instead of writing it again.
  void notePrepared(const SnapshotMarker& marker) { prepared_ = marker; }

  // ---- snapshot half (any one thread, concurrently with the writer half) ----
  // Streams `source` into the snapshot file for `meta`, durably, without holding its
  // bytes (the WAL does not point at it yet). Returns its marker (resetLog false).
  SnapshotMarker prepareSnapshot(const SnapshotMeta& meta, SnapshotSource& source);

  // ---- snapshot reads (any thread, concurrently with both halves) ----
  SnapshotReader* snapshotReader() override { return this; }
  // Reads the snapshot file for `meta` (SnapshotStore::readData).
  bool readSnapshot(const SnapshotMeta& meta, uint64_t size, uint64_t offset, size_t len,
                    std::string* out) override {
    return SnapshotStore(fs_, dir_).readData(meta, size, offset, len, out);
  }

  // ---- writer half ----
  Written writeDeferringCleanup(QueuedWrites&& work);
  // writeDeferringCleanup, then cleanup at once: the durable seqs.
  std::vector<uint64_t> write(QueuedWrites&& work);
  bool dead() const { return dead_; }  // read only from the writer's thread
  size_t walSegments() const { return wal_.segmentCount(); }

  // ---- cleanup half (one thread at a time, beside the other halves) ----
  // Removes the files `work` names, durably. Throws (kj::Exception) if a removal or a
  // directory fsync fails: the host must fail-stop, as for a failed write.
  void cleanup(Cleanup&& work);

  // Single-threaded hosts.
  std::vector<uint64_t> flush() { return write(takeQueued()); }

  DiskStorage(FileSystem& fs, const std::string& dir, WalOptions options,
              const WalReplay& replay);
  ~DiskStorage() noexcept override;
  KJ_DISALLOW_COPY(DiskStorage);

 private:
  // Loop half.
  QueuedWrites queue_;
  Index encodedSnapshotIndex_ = 0;  // the log's shape after every queued batch
  Index encodedLastIndex_ = 0;
  std::optional<SnapshotMarker> encodedMarker_;
  std::optional<SnapshotMarker> prepared_;
  // Snapshot half.
  FileSystem& fs_;
  const std::string dir_;
  // Writer half.
  SnapshotStore snapshots_;
  WalWriter wal_;
  bool dead_ = false;
};

struct DiskStorage::Recovered {
  kj::Own<DiskStorage> storage;
  RecoveredState state;
  // For the operator's log: each damage found (file, byte offset, what) and what was
  // done about it. Empty when the data dir was clean (a torn tail is not damage).
  std::vector<std::string> repairs;
  NodeIdentity identity;  // as the identity file holds it (incarnation included)
};

}  // namespace kvr::disk
