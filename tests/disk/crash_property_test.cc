// Property: whatever crashes (with torn writes) and fsync errors do, recovery yields
// exactly the state after some batch boundary: at or after the last batch reported
// durable, and at or before the last batch persisted.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <optional>

#include "disk/disk_storage.h"
#include "sim/sim_fs.h"
#include "tests/disk/disk_test_util.h"

namespace kvr::disk {
namespace {

using namespace kvr::disk::testing;
using sim::SimFileSystem;

const std::string kCrashDir = "/data";

// The durable state the storage must recover, computed independently of disk/.
struct ModelState {
  HardState hardState;
  SnapshotMeta snapMeta;
  std::string snapData;
  std::vector<Entry> log;  // after the snapshot

  Index lastIndex() const { return log.empty() ? snapMeta.index : log.back().index; }

  void apply(const PersistBatch& b) {
    if (b.snapshot) {
      if (b.resetLog) {
        log.clear();
      } else {
        std::erase_if(log, [&](const Entry& e) { return e.index <= b.snapshot->meta.index; });
      }
      snapMeta = b.snapshot->meta;
      snapData = *b.snapshot->data;
    }
    if (b.hardState) hardState = *b.hardState;
    if (!b.entries.empty()) {
      std::erase_if(log, [&](const Entry& e) { return e.index >= b.entries[0].index; });
      for (const Entry& e : b.entries) {
        if (e.index > snapMeta.index) log.push_back(e);
      }
    }
  }

  bool matches(const RecoveredState& r) const {
    std::string data = r.snapshot.data ? *r.snapshot.data : std::string();
    return r.hardState == hardState && r.snapshot.meta == snapMeta && data == snapData &&
           r.entries == log;
  }

  static ModelState from(const RecoveredState& r) {
    ModelState m;
    m.hardState = r.hardState;
    m.snapMeta = r.snapshot.meta;
    m.snapData = r.snapshot.data ? *r.snapshot.data : std::string();
    m.log = r.entries;
    return m;
  }
};

// Random batches that respect what a Raft replica persists.
PersistBatch makeBatch(uint8_t op, uint64_t seq, const ModelState& m, Term& term, Rng& rng) {
  PersistBatch b;
  b.seq = seq;
  const Index snap = m.snapMeta.index;
  const Index last = m.lastIndex();
  auto data = [&](size_t maxBytes) {
    std::string s(rng.below(maxBytes + 1), '\0');
    for (char& c : s) c = static_cast<char>('a' + rng.below(26));
    return s;
  };
  switch (op % 8) {
    case 0:
    case 1:
    case 2:
    case 3: {
      if (rng.chance(0.2)) ++term;
      // Usually append; sometimes overwrite a suffix.
      Index first = rng.chance(0.7) ? last + 1 : rng.between(snap + 1, last + 1);
      for (uint64_t n = rng.between(1, 6); n > 0; --n) {
        b.entries.push_back(makeEntry(term, first + b.entries.size(), data(300)));
      }
      if (rng.chance(0.5)) b.hardState = HardState{term, NodeId(rng.below(4)), first};
      break;
    }
    case 4: b.hardState = HardState{term, NodeId(rng.below(4)), rng.below(last + 1)}; break;
    case 5:
      if (last > snap) {
        Index at = rng.between(snap + 1, last);
        b.snapshot = makeSnapshot(at, m.log[at - snap - 1].term, data(3000));
      }
      break;
    case 6: {
      ++term;
      b.snapshot = makeSnapshot(last + rng.below(5), term, data(3000));
      b.resetLog = true;
      if (rng.chance(0.5)) {
        b.entries.push_back(makeEntry(term, b.snapshot->meta.index + 1, data(50)));
      }
      break;
    }
    default: break;  // an empty batch: still reported durable in order
  }
  return b;
}

RC_GTEST_PROP(DiskCrashProp, RecoversABatchBoundary, ()) {
  const uint64_t seed = *rc::gen::arbitrary<uint64_t>();
  const bool torn = *rc::gen::arbitrary<bool>();
  const uint64_t segmentBytes = *rc::gen::element<uint64_t>(1024, 4096, 64u * 1024 * 1024);
  // Per round: the operations (0-7 persist, 8-11 flush, 12 inject an fsync error) and
  // the mutating-op count at which the file system crashes.
  const size_t roundCount = *rc::gen::inRange<size_t>(1, 5);
  const auto rounds =
      *rc::gen::container<std::vector<std::pair<std::vector<uint8_t>, uint32_t>>>(
          roundCount, rc::gen::pair(rc::gen::container<std::vector<uint8_t>>(
                                        rc::gen::inRange<uint8_t>(0, 13)),
                                    rc::gen::inRange<uint32_t>(1, 300)));

  Rng rng(seed);
  Rng fsRng = rng.fork();
  SimFileSystem fs(fsRng);
  const WalOptions options{segmentBytes};

  // States after each batch of the current lifetime; states[0] is what it recovered.
  std::vector<ModelState> states{ModelState{}};
  size_t minOk = 0;  // the last batch reported durable
  Term term = 1;

  auto crashed = [&](uint64_t before) { return fs.faults().crashes > before; };
  for (const auto& [ops, crashAt] : rounds) {
    const uint64_t crashesBefore = fs.faults().crashes;
    fs.armCrash(crashAt, torn);
    std::optional<DiskStorage::Recovered> rec;
    try {
      rec.emplace(DiskStorage::open(fs, kCrashDir, kIdentity, options));
    } catch (const kj::Exception& e) {
      RC_ASSERT(crashed(crashesBefore));  // only the injected crash may stop recovery
      continue;                           // the same states are still acceptable
    }
    bool found = false;
    for (size_t i = minOk; i < states.size() && !found; ++i)
      found = states[i].matches(rec->state);
    RC_ASSERT(found);

    states = {ModelState::from(rec->state)};
    minOk = 0;
    uint64_t nextSeq = 1;
    try {
      for (uint8_t op : ops) {
        if (op < 8) {
          PersistBatch b = makeBatch(op, nextSeq++, states.back(), term, rng);
          ModelState next = states.back();
          next.apply(b);
          rec->storage->persist(std::move(b));
          states.push_back(std::move(next));
        } else if (op < 12) {
          for (uint64_t seq : rec->storage->flush()) {
            RC_ASSERT(seq == minOk + 1);
            minOk = seq;
          }
        } else {
          fs.failNextSync();
        }
      }
      for (uint64_t seq : rec->storage->flush()) {
        RC_ASSERT(seq == minOk + 1);
        minOk = seq;
      }
    } catch (const kj::Exception& e) {
      // A crash, or fail-stop after an injected fsync error; nothing else.
      RC_ASSERT(crashed(crashesBefore) || rec->storage->dead());
    }
    fs.disarmCrash();
    fs.clearInjectedErrors();
    rec.reset();
    if (!crashed(crashesBefore)) fs.crash(torn);
  }
  // Final recovery with no crash armed.
  auto rec = DiskStorage::open(fs, kCrashDir, kIdentity, options);
  bool found = false;
  for (size_t i = minOk; i < states.size() && !found; ++i) found = states[i].matches(rec.state);
  RC_ASSERT(found);
}

}  // namespace
}  // namespace kvr::disk
