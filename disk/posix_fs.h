// The real FileSystem over POSIX syscalls. The only file in the project with file
// syscalls; the node calls it off its event loop (see DiskStorage::write).
#pragma once

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

}  // namespace kvr::disk
