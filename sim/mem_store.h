// NodeStore kept in memory, with the same durability semantics as a disk: what was not
// fsynced is lost at a crash, and of the batches being written, a prefix may survive.
// Used by property tests that exercise the core without the WAL code.
#pragma once

#include <deque>

#include "sim/node_store.h"

namespace kvr::sim {

class MemStore final : public NodeStore {
 public:
  void persist(PersistBatch&& batch) override { queued_.push_back(std::move(batch)); }
  std::vector<uint64_t> beginFlush() override;
  void finishFlush() override;
  bool hasQueued() const override { return !queued_.empty(); }
  void crash(Rng& rng, bool tornWrites) override;
  RecoveredState recover() override;

  const RecoveredState& durable() const { return durable_; }
  const RecoveredState& durableState() const override { return durable_; }
  // Replaces the durable state (after a crash whose outcome another store decided).
  void reset(const RecoveredState& state) {
    durable_ = state;
    queued_.clear();
    writing_.clear();
  }

 private:
  void apply(PersistBatch& batch);

  RecoveredState durable_;
  std::deque<PersistBatch> queued_;
  std::deque<PersistBatch> writing_;
};

}  // namespace kvr::sim
