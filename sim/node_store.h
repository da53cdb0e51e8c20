// A simulated node's durable storage, as the simulator drives it: the core's Storage
// (persist queues), plus a two-phase flush so a crash can land between a write and its
// fsync, plus crash and recovery.
#pragma once

#include <cstdint>
#include <string>
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
  // A synced sector lost (reads as zeros), or written over another sector, anywhere
  // but the very end of a WAL segment (where a lost write cannot be told from one that
  // never happened: docs/STORAGE.md). False if there is no such place yet.
  virtual bool loseWriteAtRest(Rng&) { return false; }
  virtual bool misdirectWriteAtRest(Rng&) { return false; }
  // A lost write aimed at the newest WAL segment's newest Entries record when that
  // record lies within one sector, holds an entry at or below `committed`, and a later
  // record follows it (whose hwm alone then tells what the node held). False otherwise.
  virtual bool loseNewestEntriesAtRest(Index /*committed*/) { return false; }
  // A lost write aimed at the newest WAL segment's newest overwrite: a truncation and
  // the Entries record that replaced the suffix (the first of them at or below
  // `committed`), within one sector, with a later record after them. Recovery then
  // reads the older suffix back, and only the later record's hwm tells it that it held
  // more. False otherwise.
  virtual bool loseNewestOverwriteAtRest(Index /*committed*/) { return false; }
  // Whether a fault at rest (flip, lost or misdirected write) was injected: only then
  // may recovery find damage, refuse, or start the node recovering.
  virtual bool corrupted() const { return false; }
  virtual const std::vector<std::string>& lastRepairs() const {
    static const std::vector<std::string> kNone;
    return kNone;
  }
  // Files whose unsynced writes were partly kept at a crash.
  virtual uint64_t tornFiles() const { return 0; }
};

}  // namespace kvr::sim
