#include "sim/disk_store.h"

#include <kj/debug.h>

namespace kvr::sim {

DiskStore::DiskStore(Rng& fsRng, uint64_t clusterId, NodeId node, disk::WalOptions options)
    : fs_(fsRng), identity_{clusterId, node}, options_(options) {}

DiskStore::~DiskStore() noexcept = default;

void DiskStore::persist(PersistBatch&& batch) {
  KJ_REQUIRE(storage_.get() != nullptr, "persist on a stopped node");
  PersistBatch copy = batch;
  storage_->persist(std::move(batch));
  shadow_.persist(std::move(copy));
}

std::vector<uint64_t> DiskStore::beginFlush() {
  KJ_REQUIRE(writing_.empty(), "flush already in progress");
  writing_ = storage_->takeQueued();
  shadow_.beginFlush();
  std::vector<uint64_t> seqs;
  for (auto& b : writing_) seqs.push_back(b.seq);
  return seqs;
}

void DiskStore::finishFlush() {
  auto work = std::move(writing_);
  writing_.clear();
  storage_->write(std::move(work));
  shadow_.finishFlush();
}

bool DiskStore::hasQueued() const { return storage_.get() != nullptr && storage_->hasQueued(); }

void DiskStore::crash(Rng& rng, bool tornWrites) {
  shadowExact_ = writing_.empty();
  Rng unused(0);
  shadow_.crash(unused, false);
  if (!writing_.empty() && storage_.get() != nullptr && rng.chance(0.5)) {
    // The crash lands inside the write: after a few file operations, before the fsync.
    fs_.armCrash(rng.between(1, 3), tornWrites);
    try {
      storage_->write(std::move(writing_));
    } catch (const kj::Exception&) {
      // "sim-fs: crashed" (or the write completed and the crash hit nothing).
    }
    fs_.disarmCrash();
  }
  writing_.clear();
  storage_ = nullptr;
  fs_.crash(tornWrites);
}

RecoveredState DiskStore::recover() {
  writing_.clear();
  auto rec = disk::DiskStorage::open(fs_, kDir, identity_, options_);
  storage_ = kj::mv(rec.storage);
  if (shadowExact_) {
    const RecoveredState& want = shadow_.durable();
    const RecoveredState& got = rec.state;
    KJ_ASSERT(got.hardState == want.hardState, "recovered hard state differs from durable",
              got.hardState.term, want.hardState.term, got.hardState.vote, want.hardState.vote);
    KJ_ASSERT(got.snapshot.meta == want.snapshot.meta, "recovered snapshot differs",
              got.snapshot.meta.index, want.snapshot.meta.index);
    if (!(got.entries == want.entries)) {
      size_t i = 0;
      while (i < got.entries.size() && i < want.entries.size() &&
             got.entries[i] == want.entries[i]) {
        ++i;
      }
      auto at = [](const std::vector<Entry>& es, size_t i) {
        return i < es.size() ? kj::str(es[i].index, "/t", es[i].term) : kj::str("none");
      };
      KJ_FAIL_ASSERT("recovered log differs from durable", got.entries.size(),
                     want.entries.size(), i, at(got.entries, i), at(want.entries, i));
    }
  }
  // What recovery found is the durable baseline from here on.
  shadow_.reset(rec.state);
  shadowExact_ = true;
  return std::move(rec.state);
}

bool DiskStore::flipBitAtRest(Rng& rng) {
  std::vector<std::string> candidates;
  std::vector<std::string> segments;
  for (const auto& name : fs_.list(kDir)) {
    if (name.rfind("wal-", 0) == 0) {
      segments.push_back(name);
    } else if (name.rfind("snap-", 0) == 0) {
      candidates.push_back(name);
    }
  }
  // list() is sorted and segment names sort by first seq: the last is the newest.
  if (!segments.empty()) segments.pop_back();
  candidates.insert(candidates.end(), segments.begin(), segments.end());
  std::vector<std::pair<std::string, uint64_t>> sized;
  for (auto& name : candidates) {
    std::string path = disk::joinPath(kDir, name);
    uint64_t size = fs_.fileSize(path);
    if (size > 0) sized.emplace_back(path, size);
  }
  if (sized.empty()) return false;
  auto& [path, size] = sized[rng.below(sized.size())];
  fs_.flipBit(path, rng.below(size));
  return true;
}

}  // namespace kvr::sim
