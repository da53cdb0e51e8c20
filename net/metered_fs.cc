#include "net/metered_fs.h"

#include "disk/snapshot_store.h"
#include "disk/wal.h"

#include <unistd.h>

#include <algorithm>
#include <string_view>

namespace kvr::net {
namespace {

constexpr double kMeteredNanosPerSecond = 1e9;
// One pacing sleep is at most this long (a limit on everything; the next hint sleeps on).
constexpr uint64_t kMaxPaceSleepMicros = 1'000'000;
// Removing a snapshot file: cut this much at a time, then pause this long (about one
// WAL fsync, so each journal commit frees at most one step).
constexpr uint64_t kRemoveStepBytes = 8u * 1024 * 1024;
constexpr useconds_t kRemoveStepPauseMicros = 5'000;
// At most this many steps (a limit on everything: kMaxSnapshotBytes / 8 MB is less).
constexpr uint64_t kMaxRemoveSteps = 1u << 16;

// Files removed only once obsolete, which may be cut down before the unlink: snapshot
// files and WAL segments already renamed out of the WAL (disk/wal.h removeSegments).
bool isCutBeforeRemoval(std::string_view path) {
  size_t slash = path.rfind('/');
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  return disk::SnapshotStore::isSnapshotFileName(std::string(name)) ||
         disk::isRemovedSegmentName(std::string(name));
}

thread_local uint64_t tPaceBytesPerSecond = 0;

enum class Kind { Wal, Snapshot, Other };

Kind kindOf(const std::string& path, disk::OpenMode mode) {
  std::string_view name(path);
  size_t slash = name.rfind('/');
  if (slash != std::string_view::npos) name.remove_prefix(slash + 1);
  if (name.starts_with("wal-") && name.ends_with(".log")) return Kind::Wal;
  if (mode == disk::OpenMode::Create && name.ends_with(".snap.tmp")) return Kind::Snapshot;
  return Kind::Other;
}

class MeteredFile final : public disk::File {
 public:
  MeteredFile(kj::Own<disk::File> inner, Kind kind, DiskMetrics& metrics, uint64_t pace)
      : inner_(kj::mv(inner)),
        kind_(kind),
        metrics_(metrics),
        openedNs_(metrics::monotonicNanos()),
        paceBytesPerSecond_(pace) {}
  ~MeteredFile() noexcept override {}

  uint64_t size() override { return inner_->size(); }
  void append(std::string_view bytes) override {
    inner_->append(bytes);
    appended_ += bytes.size();
    if (kind_ == Kind::Wal) metrics_.walBytes.inc(bytes.size());
  }
  std::string pread(uint64_t offset, size_t length) override {
    return inner_->pread(offset, length);
  }
  void datasync() override {
    uint64_t start = metrics::monotonicNanos();
    inner_->datasync();  // a failure throws: nothing is recorded for it
    uint64_t end = metrics::monotonicNanos();
    if (kind_ == Kind::Wal) {
      metrics_.walFsyncSeconds.observe(double(end - start) / kMeteredNanosPerSecond);
    } else if (kind_ == Kind::Snapshot) {
      metrics_.snapshotSaveSeconds.observe(double(end - openedNs_) / kMeteredNanosPerSecond);
      metrics_.lastSnapshotBytes.store(appended_, std::memory_order_relaxed);
    }
  }
  void truncate(uint64_t size) override { inner_->truncate(size); }
  void writeBehind() override {
    inner_->writeBehind();
    if (paceBytesPerSecond_ == 0) return;
    // Due: when `appended_` bytes may have been written at the pace since the open.
    const uint64_t dueNs = openedNs_ +
                           static_cast<uint64_t>(double(appended_) * kMeteredNanosPerSecond /
                                                 double(paceBytesPerSecond_));
    const uint64_t now = metrics::monotonicNanos();
    if (dueNs > now) {
      ::usleep(static_cast<useconds_t>(std::min((dueNs - now) / 1000, kMaxPaceSleepMicros)));
    }
  }

 private:
  kj::Own<disk::File> inner_;
  Kind kind_;
  DiskMetrics& metrics_;
  uint64_t openedNs_;
  uint64_t paceBytesPerSecond_;  // 0: not paced
  uint64_t appended_ = 0;
};

}  // namespace

SnapshotPace::SnapshotPace(uint64_t bytesPerSecond) : outer_(tPaceBytesPerSecond) {
  tPaceBytesPerSecond = bytesPerSecond;
}

SnapshotPace::~SnapshotPace() { tPaceBytesPerSecond = outer_; }

uint64_t SnapshotPace::current() { return tPaceBytesPerSecond; }

void MeteredFileSystem::remove(const std::string& path) {
  if (isCutBeforeRemoval(path)) {
    kj::Own<disk::File> file = inner_.open(path, disk::OpenMode::Append);
    uint64_t size = file->size();
    for (uint64_t step = 0; size > kRemoveStepBytes && step < kMaxRemoveSteps; ++step) {
      size -= kRemoveStepBytes;
      file->truncate(size);
      ::usleep(kRemoveStepPauseMicros);
    }
  }
  inner_.remove(path);
}

kj::Own<disk::File> MeteredFileSystem::open(const std::string& path, disk::OpenMode mode) {
  Kind kind = kindOf(path, mode);
  kj::Own<disk::File> file = inner_.open(path, mode);
  if (kind == Kind::Other) return file;
  const uint64_t pace = kind == Kind::Snapshot ? SnapshotPace::current() : 0;
  return kj::heap<MeteredFile>(kj::mv(file), kind, metrics_, pace);
}

}  // namespace kvr::net
