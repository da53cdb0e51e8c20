#include "disk/posix_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <kj/debug.h>

namespace kvr::disk {
namespace {

class PosixFile final : public File {
 public:
  PosixFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixFile() override { ::close(fd_); }
  KJ_DISALLOW_COPY(PosixFile);

  uint64_t size() override {
    struct stat st;
    KJ_SYSCALL(::fstat(fd_, &st), path_);
    return static_cast<uint64_t>(st.st_size);
  }

  void append(std::string_view bytes) override {
    // O_APPEND: every write lands at the current end. Loop over short writes.
    while (!bytes.empty()) {
      ssize_t n;
      KJ_SYSCALL(n = ::write(fd_, bytes.data(), bytes.size()), "write", path_);
      KJ_ASSERT(n > 0, "write returned 0", path_);
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

  std::string pread(uint64_t offset, size_t length) override {
    std::string out(length, '\0');
    size_t done = 0;
    while (done < length) {
      ssize_t n;
      KJ_SYSCALL(n = ::pread(fd_, out.data() + done, length - done,
                             static_cast<off_t>(offset + done)),
                 "pread", path_);
      if (n == 0) break;  // end of file
      done += static_cast<size_t>(n);
    }
    out.resize(done);
    return out;
  }

  void datasync() override { KJ_SYSCALL(::fdatasync(fd_), "fdatasync", path_); }

  void truncate(uint64_t size) override {
    KJ_SYSCALL(::ftruncate(fd_, static_cast<off_t>(size)), "ftruncate", path_);
  }

  void writeBehind() override {
    const uint64_t end = size();
    if (end < startedTo_) {  // truncated meanwhile: start over from the new end
      waitedTo_ = startedTo_ = end;
      return;
    }
    // Wait for the range the previous call started (the pages are clean, or written
    // again since: WRITE restarts those), then start the new one. Errors are the
    // final datasync()'s to report: a hint failing changes nothing durable.
    if (startedTo_ > waitedTo_) {
      (void)::sync_file_range(fd_, static_cast<off_t>(waitedTo_),
                              static_cast<off_t>(startedTo_ - waitedTo_),
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER);
      waitedTo_ = startedTo_;
    }
    if (end > startedTo_) {
      (void)::sync_file_range(fd_, static_cast<off_t>(startedTo_),
                              static_cast<off_t>(end - startedTo_), SYNC_FILE_RANGE_WRITE);
      startedTo_ = end;
    }
  }

 private:
  int fd_;
  std::string path_;
  uint64_t waitedTo_ = 0;   // writeBehind: bytes below this were waited for
  uint64_t startedTo_ = 0;  // writeBehind: bytes below this were started
};

}  // namespace

kj::Own<File> PosixFileSystem::open(const std::string& path, OpenMode mode) {
  int flags = O_CLOEXEC;
  switch (mode) {
    case OpenMode::Read: flags |= O_RDONLY; break;
    case OpenMode::Append: flags |= O_RDWR | O_APPEND; break;
    case OpenMode::Create: flags |= O_RDWR | O_APPEND | O_CREAT | O_EXCL; break;
  }
  int fd;
  KJ_SYSCALL(fd = ::open(path.c_str(), flags, 0644), "open", path);
  return kj::heap<PosixFile>(fd, path);
}

void PosixFileSystem::rename(const std::string& from, const std::string& to) {
  KJ_SYSCALL(::rename(from.c_str(), to.c_str()), "rename", from, to);
}

void PosixFileSystem::remove(const std::string& path) {
  KJ_SYSCALL(::unlink(path.c_str()), "unlink", path);
}

void PosixFileSystem::syncDir(const std::string& dir) {
  int fd;
  KJ_SYSCALL(fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), "open dir", dir);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) KJ_FAIL_SYSCALL("fsync dir", err, dir);
}

void PosixFileSystem::createDir(const std::string& dir) {
  // Create each missing component, then fsync its parent so the entry is durable.
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0755) == 0) {
      auto slash = part.rfind('/');
      syncDir(slash == std::string::npos || slash == 0 ? std::string(slash == 0 ? "/" : ".")
                                                       : part.substr(0, slash));
    } else if (errno != EEXIST) {
      KJ_FAIL_SYSCALL("mkdir", errno, part);
    }
  }
}

std::vector<std::string> PosixFileSystem::list(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) KJ_FAIL_SYSCALL("opendir", errno, dir);
  KJ_DEFER(::closedir(d));
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::stat(joinPath(dir, name).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      names.push_back(std::move(name));
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

uint64_t PosixFileSystem::fileSize(const std::string& path) {
  struct stat st;
  KJ_SYSCALL(::stat(path.c_str(), &st), "stat", path);
  return static_cast<uint64_t>(st.st_size);
}

bool PosixFileSystem::exists(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) return true;
  if (errno == ENOENT) return false;
  KJ_FAIL_SYSCALL("stat", errno, path);
}

DataDirLock::DataDirLock(const std::string& dir) : path_(joinPath(dir, kFileName)) {
  PosixFileSystem().createDir(dir);
  // O_CREAT without O_TRUNC: opening must not touch the holder's pid before we own it.
  KJ_SYSCALL(fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644), "open", path_);
  int rc;
  KJ_NONBLOCKING_SYSCALL(rc = ::flock(fd_, LOCK_EX | LOCK_NB), "flock", path_);
  if (rc != 0) {
    // EWOULDBLOCK: someone holds it. Its pid is in the file (unless it is just starting).
    char buf[32] = {};
    ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    ::close(fd_);
    fd_ = -1;
    std::string pid = n > 0 ? std::string(buf, size_t(n)) : std::string();
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    bool digits = !pid.empty() && pid.find_first_not_of("0123456789") == std::string::npos;
    std::string holder = digits ? "process " + pid : "another process (pid not known yet)";
    kj::throwFatalException(
        KJ_EXCEPTION(FAILED, kj::str("data dir ", dir, " is in use: ", holder.c_str(),
                                     " holds its lock ", path_.c_str(),
                                     "; stop that node first (or use another --data-dir). "
                                     "Nothing in the data dir was changed")));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  KJ_SYSCALL(::ftruncate(fd_, 0), "ftruncate", path_);
  ssize_t n;
  KJ_SYSCALL(n = ::pwrite(fd_, pid.data(), pid.size(), 0), "pwrite", path_);
  KJ_ASSERT(size_t(n) == pid.size(), "short write", path_);
}

DataDirLock::~DataDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock; the file stays (harmless)
}

}  // namespace kvr::disk
