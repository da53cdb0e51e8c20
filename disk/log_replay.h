// The meaning of WAL records: how a record changes the durable log state. Shared by
// recovery (replaying records) and by the writers that must agree with it (the loop-side
// encoder's view of the last index, the WAL writer's effective snapshot marker).
#pragma once

#include <deque>
#include <optional>

#include "core/types.h"
#include "disk/wal_record.h"

namespace kvr::disk {

struct LogState {
  HardState hardState;
  std::optional<SnapshotMarker> marker;  // the snapshot in effect
  // Consecutive entries from firstKnown on. Normally firstKnown == snapshotIndex() + 1;
  // above it the entries in between are unknown (a hole), which is legal only while
  // replaying from a segment after deleted ones, and only until a snapshot covers it.
  Index firstKnown = 1;
  std::deque<Entry> entries;
  bool allowHoles = false;

  Index snapshotIndex() const { return marker ? marker->meta.index : 0; }
  Index lastIndex() const { return firstKnown - 1 + entries.size(); }
  bool hasHole() const { return firstKnown > snapshotIndex() + 1; }
};

// Whether `next` replaces `current` as the snapshot in effect: a snapshot from a leader
// (resetLog) always does; a local one only if it is not older.
bool markerTakesEffect(const std::optional<SnapshotMarker>& current,
                       const SnapshotMarker& next);

// Applies one record. Returns nullptr, or what is wrong (a record the writer never
// produces, e.g. entries leaving a gap).
const char* applyRecord(LogState& state, const RecordBody& record);

}  // namespace kvr::disk
