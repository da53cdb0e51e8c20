// Helpers for the node tests: temp dirs, a file system with injectable slowness and
// failures, and waiting on the uv loop for a condition.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#include <kj/async.h>

#include "disk/posix_fs.h"
#include "net/uv_io.h"

namespace kvr::net::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/kvnode-test-XXXXXX";
    EXPECT_NE(mkdtemp(tmpl), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// PosixFileSystem whose datasync can be slowed down or made to fail (read from the
// pool thread, hence atomics).
class FaultyFileSystem final : public disk::FileSystem {
 public:
  std::atomic<int> syncDelayMs{0};
  std::atomic<bool> failSync{false};
  std::atomic<int> syncs{0};

  kj::Own<disk::File> open(const std::string& path, disk::OpenMode mode) override {
    return kj::heap<FaultyFile>(*this, real_.open(path, mode));
  }
  void rename(const std::string& from, const std::string& to) override {
    real_.rename(from, to);
  }
  void remove(const std::string& path) override { real_.remove(path); }
  void syncDir(const std::string& dir) override { real_.syncDir(dir); }
  void createDir(const std::string& dir) override { real_.createDir(dir); }
  std::vector<std::string> list(const std::string& dir) override { return real_.list(dir); }
  uint64_t fileSize(const std::string& path) override { return real_.fileSize(path); }
  bool exists(const std::string& path) override { return real_.exists(path); }

 private:
  class FaultyFile final : public disk::File {
   public:
    FaultyFile(FaultyFileSystem& fs, kj::Own<disk::File> real) : fs_(fs), real_(kj::mv(real)) {}
    ~FaultyFile() noexcept override {}
    uint64_t size() override { return real_->size(); }
    void append(std::string_view bytes) override { real_->append(bytes); }
    std::string pread(uint64_t offset, size_t length) override {
      return real_->pread(offset, length);
    }
    void datasync() override {
      int delay = fs_.syncDelayMs.load();
      if (delay > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
      if (fs_.failSync.load()) KJ_FAIL_REQUIRE("injected fsync failure");
      ++fs_.syncs;
      real_->datasync();
    }
    void truncate(uint64_t size) override { real_->truncate(size); }

   private:
    FaultyFileSystem& fs_;
    kj::Own<disk::File> real_;
  };

  disk::PosixFileSystem real_;
};

// Runs the loop (through kj's wait) until `done` holds or `timeoutMs` passes.
inline bool waitUntil(UvAsyncIo& io, const std::function<bool()>& done, int timeoutMs = 5000) {
  for (int waited = 0; !done(); waited += 2) {
    if (waited >= timeoutMs) return false;
    io.timer().afterDelay(2 * kj::MILLISECONDS).wait(io.waitScope());
  }
  return true;
}

}  // namespace kvr::net::testing
