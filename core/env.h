// The interfaces through which a host drives the core: storage and transport.
// Time enters as Replica::tick(), called by the host every tick interval of its clock
// (the simulator's virtual clock with per-node drift, or the loop's timer in a node).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/types.h"

namespace kvr {

// One unit of durable work. The storage applies it atomically with respect to
// recovery order: after a crash, recovery sees a prefix of batches (the last one
// possibly torn, which recovery must detect and cut off).
struct PersistBatch {
  uint64_t seq = 0;                     // 1, 2, 3, ... per Replica lifetime
  std::optional<HardState> hardState;   // when changed
  // A snapshot to store. With resetLog, it was received from a leader and replaces the
  // whole log; otherwise it is a local snapshot and only entries <= meta.index become
  // redundant (the storage may delete WAL segments they alone occupy).
  std::optional<Snapshot> snapshot;
  bool resetLog = false;
  // New entries. When non-empty, every stored entry with index >= entries[0].index is
  // discarded first (a follower overwriting a conflicting suffix).
  std::vector<Entry> entries;

  bool empty() const { return !hardState && !snapshot && entries.empty(); }
};

class Storage {
 public:
  virtual ~Storage() = default;
  // Starts making `batch` durable and returns at once. Batches become durable in seq
  // order; the host reports each by calling Replica::onPersisted(seq). A write or fsync
  // error must stop the node (fail-stop): such a batch is never reported durable.
  virtual void persist(PersistBatch&& batch) = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Best effort: the message may be lost, delayed, duplicated or reordered.
  virtual void send(Message&& msg) = 0;
};

}  // namespace kvr
