// A simulated node's durable storage, as the simulator drives it: the core's Storage
// (persist queues), plus a two-phase flush so a crash can land between a write and its
// fsync, plus crash and recovery.
#pragma once

#include <cstdint>
#include <vector>

#include "core/env.h"
#include "core/rng.h"

namespace kvr::sim {

class NodeStore : public Storage {
 public:
  // Writes every queued batch (not yet durable) and returns their seqs.
  virtual std::vector<uint64_t> beginFlush() = 0;
  // fsync: what beginFlush wrote is durable on return. Throws on an (injected) fsync
  // error; the node must then fail-stop.
  virtual void finishFlush() = 0;
  virtual bool hasQueued() const = 0;
  // Power loss: queued batches vanish; written-but-unsynced ones are lost or torn.
  virtual void crash(Rng& rng, bool tornWrites) = 0;
  // Reads everything back as a restarting node would. Throws (refuses to start) on
  // corruption it detects.
  virtual RecoveredState recover() = 0;
  // What is durable right now: what recover() would return after a crash that lost
  // every write not yet fsynced.
  virtual const RecoveredState& durableState() const = 0;

  // Storage faults at rest, for stores that model a disk (the in-memory one has none).
  // Flips a bit where a checksum must catch it; false if there is no such place yet.
  virtual bool flipBitAtRest(Rng&) { return false; }
  // Whether a fault that recovery may rightly refuse (a flip at rest) was injected.
  virtual bool corrupted() const { return false; }
  // Files whose unsynced writes were partly kept at a crash.
  virtual uint64_t tornFiles() const { return 0; }
};

}  // namespace kvr::sim
