// A FileSystem decorator that measures the WAL and snapshot files for the node's
// metrics: fdatasync durations and bytes appended to WAL segments (wal-*.log), and how
// long writing a snapshot file (*.snap.tmp, from its creation until its fdatasync
// returns) takes and how large it is. Everything else passes through unchanged, errors
// included. Used from the WAL writer on the pool thread: DiskMetrics is atomics only.
#pragma once

#include <string>

#include "disk/file_system.h"
#include "net/node_metrics.h"

namespace kvr::net {

class MeteredFileSystem final : public disk::FileSystem {
 public:
  MeteredFileSystem(disk::FileSystem& inner, DiskMetrics& metrics)
      : inner_(inner), metrics_(metrics) {}

  kj::Own<disk::File> open(const std::string& path, disk::OpenMode mode) override;
  void rename(const std::string& from, const std::string& to) override {
    inner_.rename(from, to);
  }
  void remove(const std::string& path) override { inner_.remove(path); }
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
