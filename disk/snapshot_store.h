// Snapshot files snap-<index hex>-<term hex>.snap in the data directory.
//
// File layout (little-endian):
//   "KVRSNAP1"  u32 header length  header  u64 XXH3 of everything before it   data
//   header = u64 index, u64 term, u32 voter count, u32 voters..., u64 data length,
//            u64 XXH3 of the data, [conf extension (disk/wal_record.h), only when the
//            configuration has learners or addresses]
// A snapshot is written to <name>.tmp, fdatasynced, renamed into place and the
// directory fsynced; only then may a WAL marker point at it, and only once that marker
// is durable is the previous snapshot file removed.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "core/env.h"
#include "core/types.h"
#include "disk/file_system.h"
#include "disk/wal_record.h"

namespace kvr::disk {

class SnapshotStore {
 public:
  SnapshotStore(FileSystem& fs, std::string dir) : fs_(fs), dir_(std::move(dir)) {}

  static std::string fileName(const SnapshotMeta& meta);
  static bool isSnapshotFileName(const std::string& name);

  // Whether the file for `meta` exists.
  bool exists(const SnapshotMeta& meta) { return fs_.exists(joinPath(dir_, fileName(meta))); }
  // Writes `snap` durably and returns the WAL marker describing it.
  SnapshotMarker write(const Snapshot& snap, bool resetLog);
  // The same from a source streamed twice (SnapshotSource::stream), never held whole: a
  // first pass for the size and checksum the header carries, a second into the file
  // (which must give the same bytes).
  SnapshotMarker write(const SnapshotMeta& meta, SnapshotSource& source, bool resetLog);
  // Loads the file `marker` names and verifies it against the marker. Refuses to start
  // (disk/disk_error.h) if it is missing or does not verify.
  Snapshot load(const SnapshotMarker& marker);
  // Bytes [offset, offset + len) of the data of the snapshot file for `meta`, whose data
  // is `size` bytes (offset < size): min(len, size - offset) of them into *out. False if
  // the file is gone (or going: any error opening or reading it) or its header or size
  // do not match. Only reads; safe beside the writer (the node calls it on its loop).
  bool readData(const SnapshotMeta& meta, uint64_t size, uint64_t offset, size_t len,
                std::string* out);
  // Removes every snapshot file (and leftover temp file) except the one for `keep`.
  void removeAllExcept(const std::optional<SnapshotMeta>& keep);
  // Removes the snapshot files (and temp files) at or below `keep`'s index other than
  // `keep`'s: the ones a durable marker for `keep` replaced. Leaves those above it (a
  // newer snapshot being prepared meanwhile), so it may run beside the snapshot writer.
  void removeReplacedBy(const SnapshotMeta& keep);
  // The index in a snapshot file's name (isSnapshotFileName), if it parses.
  static std::optional<Index> indexOfFileName(const std::string& name);

 private:
  // Removes the files in the directory `doomed` names, then syncs it (if any went).
  void removeWhere(const std::function<bool(const std::string&)>& doomed);
  // Writes the temp file (header, then `data` appends the data), syncs, renames it into
  // place and syncs the directory.
  void writeFile(const SnapshotMarker& marker, const std::function<void(File&)>& data);

  FileSystem& fs_;
  std::string dir_;
};

}  // namespace kvr::disk
