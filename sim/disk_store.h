// NodeStore over the real disk/ code (WAL, snapshot store, identity) on the simulated
// file system, so every simulated crash, torn write and bit flip hits production code.
#pragma once

#include <kj/memory.h>

#include "disk/disk_storage.h"
#include "sim/mem_store.h"
#include "sim/node_store.h"
#include "sim/sim_fs.h"

namespace kvr::sim {

class DiskStore final : public NodeStore, public SnapshotReader {
 public:
  DiskStore(Rng& fsRng, uint64_t clusterId, NodeId node, disk::WalOptions options);
  ~DiskStore() noexcept override;

  void persist(PersistBatch&& batch) override;
  // The snapshot files of the storage of the current incarnation (none while down).
  SnapshotReader* snapshotReader() override { return this; }
  bool readSnapshot(const SnapshotMeta& meta, uint64_t size, uint64_t offset, size_t len,
                    std::string* out) override {
    return storage_.get() != nullptr && storage_->readSnapshot(meta, size, offset, len, out);
  }
  std::vector<uint64_t> beginFlush() override;
  void finishFlush() override;
  bool hasQueued() const override;
  void crash(Rng& rng, bool tornWrites) override;
  RecoveredState recover() override;

  SimFileSystem& fs() { return fs_; }
  // Flips a bit somewhere a checksum must catch it and recovery cannot mistake it for a
  // torn tail: WAL segments other than the newest, and snapshot files. False if there
  // is no such place yet.
  bool flipBitAtRest(Rng& rng) override;
  bool loseWriteAtRest(Rng& rng) override;
  bool misdirectWriteAtRest(Rng& rng) override;
  bool loseNewestEntriesAtRest(Index committed) override;
  bool loseNewestOverwriteAtRest(Index committed) override;
  const RecoveredState& durableState() const override { return shadow_.durable(); }
  bool corrupted() const override {
    const SimFsFaultStats& f = fs_.faults();
    return f.bitFlips + f.lostSectors + f.misdirectedSectors > 0;
  }
  // What the last recovery repaired (for the trace).
  const std::vector<std::string>& lastRepairs() const override { return lastRepairs_; }
  uint64_t tornFiles() const override { return fs_.faults().tornFiles; }

  static constexpr const char* kDir = "data";

 private:
  std::vector<std::pair<std::string, uint64_t>> filesAtRest();    // (path, bytes)
  std::vector<std::pair<std::string, uint64_t>> sectorsAtRest();  // (path, sectors)
  std::string newestSegment();  // its path; empty if there is none
  // Loses the sector holding bytes [from, end) of `path` (whose contents are `bytes`) if
  // they lie within that one sector and it is not the segment's last trailer's.
  bool loseWholeRecords(const std::string& path, const std::string& bytes, size_t from,
                        size_t end);

  SimFileSystem fs_;
  disk::NodeIdentity identity_;
  disk::WalOptions options_;
  kj::Own<disk::DiskStorage> storage_;
  disk::QueuedWrites writing_;
  // The same batches in memory: when a crash hit no write in flight, recovery must give
  // back exactly what this holds as durable.
  MemStore shadow_;
  bool shadowExact_ = true;
  std::vector<std::string> lastRepairs_;
};

}  // namespace kvr::sim
