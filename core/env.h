// The interfaces through which a host drives the core: storage and transport.
// Time enters as Replica::tick(), called by the host every tick interval of its clock
// (the simulator's virtual clock with per-node drift, or the loop's timer in a node).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/types.h"

namespace kvr {

class SnapshotSource;

// One unit of durable work. The storage applies it atomically with respect to
// recovery order: after a crash, recovery sees a prefix of batches (the last one
// possibly torn, which recovery must detect and cut off).
struct PersistBatch {
  uint64_t seq = 0;                    // 1, 2, 3, ... per Replica lifetime
  std::optional<HardState> hardState;  // when changed
  // A snapshot to store. With resetLog, it was received from a leader and replaces the
  // whole log; otherwise it is a local snapshot and only entries <= meta.index become
  // redundant (the storage may delete WAL segments they alone occupy).
  std::optional<Snapshot> snapshot;
  // A local snapshot whose bytes are not in memory (snapshot->data null): the storage
  // wrote its file from this source in prepareSnapshot, and streams it again should that
  // file be gone.
  std::shared_ptr<SnapshotSource> snapshotSource;
  bool resetLog = false;
  // New entries. When non-empty, every stored entry with index >= entries[0].index is
  // discarded first (a follower overwriting a conflicting suffix).
  std::vector<Entry> entries;
  // The node left its recovering state: once this batch (with its hard state) is
  // durable, the storage forgets that it was recovering.
  bool endRecovery = false;

  bool empty() const { return !hardState && !snapshot && entries.empty() && !endRecovery; }
};

// The bytes of a local snapshot, made when the storage wants them: a frozen view of the
// state machine (KvFrozen) that stays valid while the state machine moves on.
class SnapshotSource {
 public:
  virtual ~SnapshotSource() = default;
  // Serializes the first time (on any one thread), then returns the same bytes. A
  // second caller must be ordered after the first (e.g. the loop after the pool job).
  virtual std::shared_ptr<const std::string> materialize() = 0;
  // The same bytes, given to `sink` in order a piece (at most about 1 MiB) at a time
  // without being held whole; returns how many. May be called again (the same bytes
  // again); the same ordering rule as materialize. The default materializes.
  virtual uint64_t stream(const std::function<void(std::string_view)>& sink) {
    std::shared_ptr<const std::string> bytes = materialize();
    sink(*bytes);
    return bytes->size();
  }
};

// Reads back pieces of a snapshot the storage holds durably, so that the core need not
// keep a snapshot's bytes in memory to send it to a follower (Storage::snapshotReader).
class SnapshotReader {
 public:
  virtual ~SnapshotReader() = default;
  // Bytes [offset, offset + len) of the data of the stored snapshot `meta`, whose data is
  // `size` bytes (offset < size): exactly min(len, size - offset) of them into *out.
  // False (and *out untouched) when the storage no longer holds that snapshot (a newer
  // one replaced it) or its file does not have that size: the core sends nothing then.
  virtual bool readSnapshot(const SnapshotMeta& meta, uint64_t size, uint64_t offset,
                            size_t len, std::string* out) = 0;
};

class Storage {
 public:
  virtual ~Storage() = default;
  // Optional. With a reader, the core drops a snapshot's bytes from memory once the
  // snapshot is durable (or was recovered and restored) and reads the chunks it sends to
  // followers back through it. Null: the core keeps the bytes of its snapshot.
  virtual SnapshotReader* snapshotReader() { return nullptr; }
  // Optional. Starts serializing a local snapshot and writing its file while batches
  // keep becoming durable (SnapshotSource::stream: the bytes are never held whole), and
  // returns true; the host then calls Replica::onSnapshotPrepared(meta.index) on its loop
  // once the file is written (or fails the node). The replica then persists a batch with
  // that snapshot, which only has to point the WAL at the file: without its bytes
  // (snapshotSource set) if the storage streamed the source, else with the bytes the
  // storage materialized. False: not supported; the replica serializes at once and
  // persists the snapshot in a batch.
  virtual bool prepareSnapshot(const SnapshotMeta& meta,
                               std::shared_ptr<SnapshotSource> source) {
    (void)meta;
    (void)source;
    return false;
  }
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
