#include "sim/disk_store.h"

#include <map>

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
  lastRepairs_ = std::move(rec.repairs);
  // Only damage injected at rest may make a node recover: a torn write is never
  // mistaken for corruption (or a power outage could leave no node able to vote).
  KJ_ASSERT(!rec.state.recovering || corrupted(), "recovering without damage at rest",
            lastRepairs_.empty() ? kj::str("(mark left from before)")
                                 : kj::str(lastRepairs_[0].c_str()));
  if (shadowExact_ && !rec.state.recovering) {
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

std::vector<std::pair<std::string, uint64_t>> DiskStore::filesAtRest() {
  // Every WAL segment and snapshot file, with its size. list() is sorted and segment
  // names sort by first seq: the last segment listed is the newest.
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& name : fs_.list(kDir)) {
    if (name.rfind("wal-", 0) != 0 && name.rfind("snap-", 0) != 0) continue;
    std::string path = disk::joinPath(kDir, name);
    uint64_t size = fs_.fileSize(path);
    if (size > 0) out.emplace_back(path, size);
  }
  return out;
}

bool DiskStore::flipBitAtRest(Rng& rng) {
  // Anywhere: every record keeps one header copy through a single flip, so recovery
  // can always tell what a damaged record was, the newest included.
  auto files = filesAtRest();
  if (files.empty()) return false;
  if (rng.chance(0.4)) {
    // Aimed at the newest records (the last bytes of the newest segment): the ones a
    // node acknowledged last, which a torn-tail cut would silently lose.
    std::string newest;
    for (auto& [path, size] : files) {
      if (path.rfind(disk::joinPath(kDir, "wal-"), 0) == 0) newest = path;
    }
    if (!newest.empty()) {
      const uint64_t size = fs_.fileSize(newest);
      const uint64_t span = std::min<uint64_t>(size, 512);
      fs_.flipBit(newest, size - 1 - rng.below(span));
      return true;
    }
  }
  auto& [path, size] = files[rng.below(files.size())];
  fs_.flipBit(path, rng.below(size));
  return true;
}

std::vector<std::pair<std::string, uint64_t>> DiskStore::sectorsAtRest() {
  // Sectors a lost or misdirected write may hit: all but those holding the newest WAL
  // segment's last record trailer (a lost final write looks like one never made).
  std::string newest;
  for (const auto& name : fs_.list(kDir)) {
    if (name.rfind("wal-", 0) == 0) newest = disk::joinPath(kDir, name);
  }
  std::vector<std::pair<std::string, uint64_t>> out;
  for (auto& [path, size] : filesAtRest()) {
    uint64_t sectors = (size + SimFileSystem::kSectorBytes - 1) / SimFileSystem::kSectorBytes;
    if (path == newest) {
      sectors = size < disk::kRecordHeaderBytes
                    ? 0
                    : (size - disk::kRecordHeaderBytes) / SimFileSystem::kSectorBytes;
    }
    if (sectors > 0) out.emplace_back(path, sectors);
  }
  return out;
}

bool DiskStore::loseWriteAtRest(Rng& rng) {
  auto sectors = sectorsAtRest();
  if (sectors.empty()) return false;
  auto& [path, count] = sectors[rng.below(sectors.size())];
  fs_.loseSector(path, rng.below(count));
  return true;
}

bool DiskStore::misdirectWriteAtRest(Rng& rng) {
  auto sectors = sectorsAtRest();
  if (sectors.empty()) return false;
  auto& [from, fromCount] = sectors[rng.below(sectors.size())];
  auto& [to, toCount] = sectors[rng.below(sectors.size())];
  uint64_t fromSector = rng.below(fromCount);
  uint64_t toSector = rng.below(toCount);
  if (from == to && fromSector == toSector) return false;
  fs_.misdirectSector(from, fromSector, to, toSector);
  return true;
}

namespace {

// Every record of a WAL segment by seq: where its first valid header copy starts.
struct RecordAt {
  size_t at;
  disk::RecordHeader header;
};

std::map<uint64_t, RecordAt> recordsBySeq(const std::string& bytes) {
  std::map<uint64_t, RecordAt> records;
  for (size_t pos = 0; pos + disk::kRecordHeaderBytes <= bytes.size(); ++pos) {
    if (bytes[pos] != 'K') continue;
    auto h = disk::parseHeader(std::string_view(bytes).substr(pos));
    if (h) records.emplace(h->seq, RecordAt{pos, *h});  // keeps the first copy
  }
  return records;
}

}  // namespace

std::string DiskStore::newestSegment() {
  std::string newest;
  for (const auto& name : fs_.list(kDir)) {
    if (name.rfind("wal-", 0) == 0) newest = disk::joinPath(kDir, name);
  }
  return newest;
}

bool DiskStore::loseWholeRecords(const std::string& path, const std::string& bytes, size_t from,
                                 size_t end) {
  const uint64_t sector = from / SimFileSystem::kSectorBytes;
  if ((end - 1) / SimFileSystem::kSectorBytes != sector) return false;  // a copy survives
  // Never the sector of the segment's last trailer (a lost final write looks unwritten).
  if (bytes.size() < disk::kRecordHeaderBytes ||
      sector >= (bytes.size() - disk::kRecordHeaderBytes) / SimFileSystem::kSectorBytes) {
    return false;
  }
  fs_.loseSector(path, sector);
  return true;
}

bool DiskStore::loseNewestEntriesAtRest(Index committed) {
  const std::string newest = newestSegment();
  if (newest.empty()) return false;
  const std::string bytes = fs_.contents(newest);
  const auto records = recordsBySeq(bytes);
  const RecordAt* found = nullptr;
  for (const auto& [seq, r] : records) {
    if (r.header.type == disk::RecordType::Entries) found = &r;
  }
  if (found == nullptr || records.rbegin()->first <= found->header.seq ||
      found->header.a > committed) {
    return false;
  }
  return loseWholeRecords(newest, bytes, found->at, found->at + found->header.recordBytes());
}

bool DiskStore::loseNewestOverwriteAtRest(Index committed) {
  const std::string newest = newestSegment();
  if (newest.empty()) return false;
  const std::string bytes = fs_.contents(newest);
  const auto records = recordsBySeq(bytes);
  // The newest truncation and the entries that replaced the suffix (same batch, next seq).
  const RecordAt* cut = nullptr;
  for (const auto& [seq, r] : records) {
    if (r.header.type == disk::RecordType::TruncateSuffix) cut = &r;
  }
  if (cut == nullptr) return false;
  auto next = records.find(cut->header.seq + 1);
  if (next == records.end() || next->second.header.type != disk::RecordType::Entries) {
    return false;
  }
  const RecordAt& fresh = next->second;
  if (records.rbegin()->first <= fresh.header.seq || fresh.header.a > committed ||
      fresh.at < cut->at) {
    return false;
  }
  return loseWholeRecords(newest, bytes, cut->at, fresh.at + fresh.header.recordBytes());
}

}  // namespace kvr::sim
