// The real FileSystem over POSIX syscalls. The only file in the project with file
// syscalls; the node calls it off its event loop (see DiskStorage::write).
#pragma once

#include <string>

#include "disk/file_system.h"

namespace kvr::disk {

class PosixFileSystem final : public FileSystem {
 public:
  kj::Own<File> open(const std::string& path, OpenMode mode) override;
  void rename(const std::string& from, const std::string& to) override;
  void remove(const std::string& path) override;
  void syncDir(const std::string& dir) override;
  void createDir(const std::string& dir) override;
  std::vector<std::string> list(const std::string& dir) override;
  uint64_t fileSize(const std::string& path) override;
  bool exists(const std::string& path) override;
};

// An exclusive lock on a data dir: flock(LOCK_EX) on DIR/LOCK, which holds the holder's
// pid. Taken before anything else in the dir is read or written, held until destroyed
// (or the process dies: the kernel drops the lock, so a kill -9 leaves nothing stale).
class DataDirLock {
 public:
  static constexpr const char* kFileName = "LOCK";

  // Creates DIR if missing, then takes the lock and writes this process's pid into
  // DIR/LOCK. If another process holds it, throws (kj FAILED) with one operator-facing
  // sentence naming the holder's pid, having changed nothing but DIR's creation.
  explicit DataDirLock(const std::string& dir);
  ~DataDirLock();
  KJ_DISALLOW_COPY(DataDirLock);

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace kvr::disk
