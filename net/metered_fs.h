// A FileSystem decorator that measures the WAL and snapshot files for the node's
// metrics: fdatasync durations and bytes appended to WAL segments (wal-*.log), and how
// long writing a snapshot file (*.snap.tmp, from its creation until its fdatasync
// returns) takes and how large it is. Everything else passes through unchanged, errors
// included. Used from the WAL writer on the pool thread: DiskMetrics is atomics only.
//
// It also paces local snapshot files: a snapshot file created on a thread inside a
// SnapshotPace scope (NodeStorage's prepare job, never the WAL writer, which must not
// wait) sleeps in its writeBehind() hints (disk/file_system.h, every 4 MB) until its
// bytes are no more than the scope's rate allows since it was opened.
#pragma once

#include <string>

#include "disk/file_system.h"
#include "net/node_metrics.h"

namespace kvr::net {

// While alive on a thread, snapshot files that thread creates through a
// MeteredFileSystem are written at most `bytesPerSecond` (0: no limit).
class SnapshotPace {
 public:
  explicit SnapshotPace(uint64_t bytesPerSecond);
  ~SnapshotPace();
  KJ_DISALLOW_COPY(SnapshotPace);
  static uint64_t current();  // the innermost scope's rate on this thread, 0 if none

 private:
  uint64_t outer_;
};

class MeteredFileSystem final : public disk::FileSystem {
 public:
  MeteredFileSystem(disk::FileSystem& inner, DiskMetrics& metrics)
      : inner_(inner), metrics_(metrics) {}

  kj::Own<disk::File> open(const std::string& path, disk::OpenMode mode) override;
  void rename(const std::string& from, const std::string& to) override {
    inner_.rename(from, to);
  }
  // A snapshot file (only ever removed once obsolete: disk/snapshot_store.h) or a WAL
  // segment already renamed out of the WAL (disk/wal.h removeSegments) is first cut
  // down in steps of kRemoveStepBytes with a short pause after each, then unlinked:
  // ext4 (mounted with discard, as here) frees and discards a whole 270 MB file in one
  // journal commit, which the WAL's fdatasyncs then wait for (40-70 ms, issue 10). A
  // crash in between leaves a shorter obsolete file, removed at the next start.
  void remove(const std::string& path) override;
  void syncDir(const std::string& dir) override { inner_.syncDir(dir); }
  void createDir(const std::string& dir) override { inner_.createDir(dir); }
  std::vector<std::string> list(const std::string& dir) override { return inner_.list(dir); }
  uint64_t fileSize(const std::string& path) override { return inner_.fileSize(path); }
  bool exists(const std::string& path) override { return inner_.exists(path); }

 private:
  disk::FileSystem& inner_;
  DiskMetrics& metrics_;
};

}  // namespace kvr::net
