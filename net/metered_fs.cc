#include "net/metered_fs.h"

#include <string_view>

namespace kvr::net {
namespace {

constexpr double kMeteredNanosPerSecond = 1e9;

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
  MeteredFile(kj::Own<disk::File> inner, Kind kind, DiskMetrics& metrics)
      : inner_(kj::mv(inner)),
        kind_(kind),
        metrics_(metrics),
        openedNs_(metrics::monotonicNanos()) {}
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
  void writeBehind() override { inner_->writeBehind(); }

 private:
  kj::Own<disk::File> inner_;
  Kind kind_;
  DiskMetrics& metrics_;
  uint64_t openedNs_;
  uint64_t appended_ = 0;
};

}  // namespace

kj::Own<disk::File> MeteredFileSystem::open(const std::string& path, disk::OpenMode mode) {
  Kind kind = kindOf(path, mode);
  kj::Own<disk::File> file = inner_.open(path, mode);
  if (kind == Kind::Other) return file;
  return kj::heap<MeteredFile>(kj::mv(file), kind, metrics_);
}

}  // namespace kvr::net
