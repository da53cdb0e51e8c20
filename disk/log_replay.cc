#include "disk/log_replay.h"

#include <algorithm>

namespace kvr::disk {

bool markerTakesEffect(const std::optional<SnapshotMarker>& current,
                       const SnapshotMarker& next) {
  return next.resetLog || !current || next.meta.index >= current->meta.index;
}

// Forgets every entry with index >= from.
static void truncateFrom(LogState& s, Index from) {
  if (from <= s.firstKnown) {
    s.entries.clear();
    s.firstKnown = std::max(from, s.snapshotIndex() + 1);
    return;
  }
  while (!s.entries.empty() && s.entries.back().index >= from) s.entries.pop_back();
}

const char* applyRecord(LogState& s, const RecordBody& record) {
  if (auto* hs = std::get_if<HardState>(&record)) {
    s.hardState = *hs;
  } else if (auto* entries = std::get_if<std::vector<Entry>>(&record)) {
    Index first = entries->front().index;
    if (first > s.lastIndex() + 1) {
      if (!s.allowHoles) return "entries record leaves a gap after the log end";
      s.entries.clear();
      s.firstKnown = first;
    } else {
      truncateFrom(s, first);
    }
    for (const Entry& e : *entries) {
      if (e.index >= s.firstKnown) s.entries.push_back(e);
    }
  } else if (auto* t = std::get_if<TruncateSuffix>(&record)) {
    if (t->from > s.lastIndex() + 1) {
      if (!s.allowHoles) return "truncate record beyond the log end";
      s.entries.clear();  // everything below `from` is in the hole
      s.firstKnown = t->from;
    } else {
      truncateFrom(s, t->from);
    }
  } else {
    const auto& m = std::get<SnapshotMarker>(record);
    if (!markerTakesEffect(s.marker, m)) return nullptr;
    s.marker = m;
    if (m.resetLog) {
      s.entries.clear();
      s.firstKnown = m.meta.index + 1;
    } else {
      const Index newFirst = std::max(s.firstKnown, m.meta.index + 1);
      while (!s.entries.empty() && s.entries.front().index < newFirst) s.entries.pop_front();
      s.firstKnown = newFirst;
    }
  }
  return nullptr;
}

}  // namespace kvr::disk
