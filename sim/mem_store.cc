#include "sim/mem_store.h"

#include <kj/debug.h>

namespace kvr::sim {

std::vector<uint64_t> MemStore::beginFlush() {
  KJ_REQUIRE(writing_.empty(), "flush already in progress");
  std::vector<uint64_t> seqs;
  while (!queued_.empty()) {
    seqs.push_back(queued_.front().seq);
    writing_.push_back(std::move(queued_.front()));
    queued_.pop_front();
  }
  return seqs;
}

void MemStore::finishFlush() {
  for (auto& b : writing_) apply(b);
  writing_.clear();
}

void MemStore::crash(Rng& rng, bool tornWrites) {
  queued_.clear();
  if (tornWrites && !writing_.empty()) {
    // A prefix of the in-flight batches reached the platter.
    size_t survive = rng.below(writing_.size() + 1);
    for (size_t i = 0; i < survive; ++i) apply(writing_[i]);
  }
  writing_.clear();
}

RecoveredState MemStore::recover() {
  KJ_REQUIRE(queued_.empty() && writing_.empty(), "recover() only after a crash");
  return durable_;
}

void MemStore::apply(PersistBatch& b) {
  if (b.hardState) durable_.hardState = *b.hardState;
  if (b.snapshot) {
    if (b.resetLog) {
      durable_.snapshot = *b.snapshot;
      durable_.entries.clear();
    } else if (b.snapshot->meta.index > durable_.snapshot.meta.index) {
      Index idx = b.snapshot->meta.index;
      durable_.snapshot = *b.snapshot;
      auto& es = durable_.entries;
      size_t drop = 0;
      while (drop < es.size() && es[drop].index <= idx) ++drop;
      es.erase(es.begin(), es.begin() + static_cast<long>(drop));
    }
  }
  if (!b.entries.empty()) {
    auto& es = durable_.entries;
    Index first = b.entries.front().index;
    while (!es.empty() && es.back().index >= first) es.pop_back();
    Index expect = es.empty() ? durable_.snapshot.meta.index + 1 : es.back().index + 1;
    KJ_REQUIRE(first <= expect, "gap in persisted log", first, expect);
    for (auto& e : b.entries) {
      if (e.index <= durable_.snapshot.meta.index) continue;
      es.push_back(e);
    }
  }
}

}  // namespace kvr::sim
