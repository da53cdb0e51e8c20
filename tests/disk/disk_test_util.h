// Helpers shared by the disk tests.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/types.h"
#include "disk/disk_storage.h"

namespace kvr::disk::testing {

inline Entry makeEntry(Term term, Index index, std::string data) {
  Entry e;
  e.term = term;
  e.index = index;
  e.kind = data.empty() ? EntryKind::Noop : EntryKind::Command;
  e.data = std::move(data);
  return e;
}

inline PersistBatch entriesBatch(uint64_t seq, Term term, Index first, size_t count,
                                 size_t dataBytes = 16) {
  PersistBatch b;
  b.seq = seq;
  for (size_t i = 0; i < count; ++i) {
    b.entries.push_back(makeEntry(term, first + i, std::string(dataBytes, char('a' + i % 26))));
  }
  return b;
}

inline Snapshot makeSnapshot(Index index, Term term, std::string data) {
  Snapshot s;
  s.meta.index = index;
  s.meta.term = term;
  s.meta.conf.voters = {1, 2, 3};
  s.data = std::make_shared<const std::string>(std::move(data));
  return s;
}

inline const NodeIdentity kIdentity{0xc1u, 1};

}  // namespace kvr::disk::testing
