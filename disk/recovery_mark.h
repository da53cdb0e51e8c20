// The recovery mark: a small file, "recovering", that says this node lost (or may have
// lost) log entries it may have acknowledged, so it must catch up from a leader before
// it votes again (core/raft.h, "recovering"). Written durably before the damage is cut
// off, removed once the node has caught up and its hard state is durable in the WAL.
//
// Layout (little-endian): "KVRREC01" | u64 untilIndex | u64 term | u32 vote |
//   u8 wipe | u64 XXH3 of the bytes before it.
// untilIndex: the highest entry index this node may have written (and acknowledged).
// term/vote: the newest hard state a readable record of the damaged part held (the
// WAL's valid prefix may hold an older one). wipe: the snapshot in effect was damaged:
// every WAL segment and snapshot file goes before the node starts (again, after a
// crash in the middle).
#pragma once

#include <optional>
#include <string>

#include "core/types.h"
#include "disk/file_system.h"

namespace kvr::disk {

constexpr const char* kRecoveryMarkFileName = "recovering";

struct RecoveryMark {
  Index untilIndex = 0;
  HardState hardState;  // commit unused
  bool wipe = false;
  bool damaged = false;  // read back: the mark file itself did not verify

  bool operator==(const RecoveryMark&) const = default;
};

// Writes the mark durably (temp file, fdatasync, rename, directory fsync).
void writeRecoveryMark(FileSystem& fs, const std::string& dir, const RecoveryMark& mark);
// The mark, if the file exists. A mark that does not verify comes back with `damaged`
// (the node still recovers, to the index its WAL shows).
std::optional<RecoveryMark> readRecoveryMark(FileSystem& fs, const std::string& dir);
// Removes it durably.
void removeRecoveryMark(FileSystem& fs, const std::string& dir);

}  // namespace kvr::disk
