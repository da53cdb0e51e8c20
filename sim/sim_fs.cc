#include "sim/sim_fs.h"

#include <algorithm>

#include <kj/debug.h>

namespace kvr::sim {
namespace {

std::string parentOf(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

[[noreturn]] void fail(const char* what, const std::string& path) {
  kj::throwFatalException(KJ_EXCEPTION(FAILED, what, path));
}

}  // namespace

class SimFileSystem::SimFile final : public disk::File {
 public:
  SimFile(SimFileSystem& fs, std::shared_ptr<Inode> inode, std::string path, bool writable)
      : fs_(fs),
        inode_(std::move(inode)),
        path_(std::move(path)),
        epoch_(fs.epoch_),
        writable_(writable) {}

  uint64_t size() override {
    check();
    return inode_->current.size();
  }

  void append(std::string_view bytes) override {
    check();
    KJ_REQUIRE(writable_, "sim-fs: append to a file opened read-only", path_);
    if (fs_.injectWriteError()) fail("sim-fs: injected write error", path_);
    inode_->current.append(bytes);
    fs_.afterMutation();
  }

  std::string pread(uint64_t offset, size_t length) override {
    check();
    const std::string& c = inode_->current;
    if (offset >= c.size()) return {};
    return c.substr(offset, length);
  }

  void datasync() override {
    check();
    if (fs_.injectSyncError()) fail("sim-fs: injected fdatasync error", path_);
    inode_->durable = inode_->current;
    fs_.afterMutation();
  }

  void truncate(uint64_t size) override {
    check();
    KJ_REQUIRE(writable_, "sim-fs: truncate of a file opened read-only", path_);
    KJ_REQUIRE(size <= inode_->current.size(), "sim-fs: truncate can only shrink", path_);
    if (fs_.injectWriteError()) fail("sim-fs: injected truncate error", path_);
    inode_->current.resize(size);
    fs_.afterMutation();
  }

 private:
  void check() {
    KJ_REQUIRE(epoch_ == fs_.epoch_, "sim-fs: file handle used after a crash", path_);
  }

  SimFileSystem& fs_;
  std::shared_ptr<Inode> inode_;
  std::string path_;
  uint64_t epoch_;
  bool writable_;
};

std::shared_ptr<SimFileSystem::Inode> SimFileSystem::liveInode(const std::string& path,
                                                               const char* op) const {
  auto it = live_.find(path);
  if (it == live_.end()) {
    kj::throwFatalException(KJ_EXCEPTION(FAILED, "sim-fs: no such file", op, path));
  }
  return it->second;
}

void SimFileSystem::requireDir(const std::string& path, const char* op) const {
  if (dirs_.count(parentOf(path)) == 0) {
    kj::throwFatalException(KJ_EXCEPTION(FAILED, "sim-fs: no such directory", op, path));
  }
}

bool SimFileSystem::injectWriteError() {
  bool fault = failNextWrite_ || (writeErrorRate_ > 0 && rng_.chance(writeErrorRate_));
  failNextWrite_ = false;
  if (fault) ++faults_.writeErrors;
  return fault;
}

bool SimFileSystem::injectSyncError() {
  bool fault = failNextSync_ || (syncErrorRate_ > 0 && rng_.chance(syncErrorRate_));
  failNextSync_ = false;
  if (fault) ++faults_.syncErrors;
  return fault;
}

void SimFileSystem::afterMutation() {
  ++mutatingOps_;
  if (crashCountdown_ && --*crashCountdown_ == 0) {
    crashCountdown_.reset();
    crash(crashTorn_);
    kj::throwFatalException(KJ_EXCEPTION(FAILED, "sim-fs: crashed"));
  }
}

void SimFileSystem::armCrash(uint64_t ops, bool torn) {
  KJ_REQUIRE(ops >= 1);
  crashCountdown_ = ops;
  crashTorn_ = torn;
}

kj::Own<disk::File> SimFileSystem::open(const std::string& path, disk::OpenMode mode) {
  requireDir(path, "open");
  if (mode == disk::OpenMode::Create) {
    if (live_.count(path) != 0) fail("sim-fs: create: file exists", path);
    auto inode = std::make_shared<Inode>();
    live_[path] = inode;
    auto file = kj::heap<SimFile>(*this, inode, path, true);
    afterMutation();
    return file;
  }
  return kj::heap<SimFile>(*this, liveInode(path, "open"), path,
                           mode == disk::OpenMode::Append);
}

void SimFileSystem::rename(const std::string& from, const std::string& to) {
  requireDir(to, "rename");
  auto inode = liveInode(from, "rename");
  live_.erase(from);
  live_[to] = std::move(inode);
  afterMutation();
}

void SimFileSystem::remove(const std::string& path) {
  liveInode(path, "remove");
  live_.erase(path);
  afterMutation();
}

void SimFileSystem::syncDir(const std::string& dir) {
  if (dirs_.count(dir) == 0) fail("sim-fs: syncDir: no such directory", dir);
  if (injectSyncError()) fail("sim-fs: injected directory fsync error", dir);
  for (auto it = durable_.begin(); it != durable_.end();) {
    it = parentOf(it->first) == dir ? durable_.erase(it) : std::next(it);
  }
  for (const auto& [path, inode] : live_) {
    if (parentOf(path) == dir) durable_[path] = inode;
  }
  afterMutation();
}

void SimFileSystem::createDir(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos == dir.size() || dir[pos] == '/') dirs_.insert(dir.substr(0, pos));
  }
}

std::vector<std::string> SimFileSystem::list(const std::string& dir) {
  if (dirs_.count(dir) == 0) fail("sim-fs: list: no such directory", dir);
  std::vector<std::string> names;
  for (const auto& [path, inode] : live_) {
    if (parentOf(path) == dir) names.push_back(path.substr(dir.size() + 1));
  }
  std::sort(names.begin(), names.end());
  return names;
}

uint64_t SimFileSystem::fileSize(const std::string& path) {
  return liveInode(path, "fileSize")->current.size();
}

bool SimFileSystem::exists(const std::string& path) {
  return live_.count(path) != 0 || dirs_.count(path) != 0;
}

std::string SimFileSystem::contents(const std::string& path) const {
  return liveInode(path, "contents")->current;
}

void SimFileSystem::flipBit(const std::string& path, uint64_t offset) {
  auto inode = liveInode(path, "flipBit");
  KJ_REQUIRE(offset < inode->current.size(), "sim-fs: flipBit beyond end of file", path,
             offset);
  const char mask = static_cast<char>(1u << rng_.below(8));
  inode->current[offset] ^= mask;
  if (offset < inode->durable.size()) inode->durable[offset] ^= mask;
  ++faults_.bitFlips;
}

void SimFileSystem::loseSector(const std::string& path, uint64_t sector) {
  auto inode = liveInode(path, "loseSector");
  const uint64_t begin = sector * kSectorBytes;
  KJ_REQUIRE(begin < inode->current.size(), "sim-fs: loseSector beyond end of file", path);
  const uint64_t end = std::min<uint64_t>(begin + kSectorBytes, inode->current.size());
  for (uint64_t i = begin; i < end; ++i) {
    inode->current[i] = '\0';
    if (i < inode->durable.size()) inode->durable[i] = '\0';
  }
  ++faults_.lostSectors;
}

void SimFileSystem::misdirectSector(const std::string& fromPath, uint64_t from,
                                    const std::string& toPath, uint64_t to) {
  auto src = liveInode(fromPath, "misdirectSector");
  auto dst = liveInode(toPath, "misdirectSector");
  const uint64_t fromBegin = from * kSectorBytes;
  const uint64_t toBegin = to * kSectorBytes;
  KJ_REQUIRE(fromBegin < src->current.size() && toBegin < dst->current.size(),
             "sim-fs: misdirectSector beyond end of file");
  std::string bytes = src->current.substr(fromBegin, kSectorBytes);
  bytes.resize(std::min<uint64_t>(bytes.size(), dst->current.size() - toBegin));
  loseSector(fromPath, from);
  --faults_.lostSectors;
  for (size_t i = 0; i < bytes.size(); ++i) {
    dst->current[toBegin + i] = bytes[i];
    if (toBegin + i < dst->durable.size()) dst->durable[toBegin + i] = bytes[i];
  }
  ++faults_.misdirectedSectors;
}

std::string SimFileSystem::crashedContent(const Inode& inode, bool torn) {
  const std::string& d = inode.durable;
  const std::string& c = inode.current;
  if (!torn || c == d) return d;
  size_t common = 0;
  while (common < d.size() && common < c.size() && d[common] == c[common]) ++common;
  if (common == c.size()) {
    // An unsynced truncation: it happened or it did not.
    return rng_.chance(0.5) ? c : d;
  }
  // The in-flight sectors are those from the one holding `common` to the end of c.
  const uint64_t firstSector = common / kSectorBytes;
  const uint64_t endSector = (c.size() + kSectorBytes - 1) / kSectorBytes;
  const uint64_t kept = rng_.between(0, endSector - firstSector);
  size_t cut = std::min<size_t>(c.size(), (firstSector + kept) * kSectorBytes);
  cut = std::max(cut, common);
  std::string out = c.substr(0, cut);
  const size_t tailEnd = std::max(cut, static_cast<size_t>(rng_.between(cut, c.size())));
  switch (rng_.below(3)) {
    case 0:  // old bytes: what was durable there before
      if (d.size() > cut) out += d.substr(cut);
      break;
    case 1:  // garbage
      for (size_t i = cut; i < tailEnd; ++i) out.push_back(static_cast<char>(rng_.next()));
      break;
    default:  // zeros (allocated but never written blocks)
      out.append(tailEnd - cut, '\0');
      break;
  }
  return out;
}

void SimFileSystem::crash(bool torn) {
  ++faults_.crashes;
  // Directory entries not made durable revert.
  for (const auto& [path, inode] : live_) {
    auto it = durable_.find(path);
    if (it == durable_.end() || it->second != inode) ++faults_.lostDirOps;
  }
  for (const auto& [path, inode] : durable_) {
    if (live_.count(path) == 0) ++faults_.lostDirOps;
  }
  live_ = durable_;
  // Each surviving file keeps its durable bytes (plus, torn, part of its in-flight ones).
  // Walk in path order so the Rng draws are deterministic; a file reachable under two
  // durable names is resolved once.
  std::set<const Inode*> done;
  for (const auto& [path, inode] : durable_) {
    if (!done.insert(inode.get()).second) continue;
    std::string content = crashedContent(*inode, torn);
    if (content != inode->current) ++faults_.lostFileWrites;
    if (content != inode->durable) ++faults_.tornFiles;
    inode->durable = content;
    inode->current = std::move(content);
  }
  ++epoch_;
}

}  // namespace kvr::sim
