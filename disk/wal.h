// The write-ahead log: segment files wal-<16 hex digits of the first record's seq>.log
// in the data directory, each a sequence of framed records (disk/wal_record.h).
//
// Record seqs count every record ever written to this WAL, from 1; segment names chain:
// a segment's first seq is the previous segment's first seq plus its record count, so
// a missing segment is detected. A batch never spans two segments. Each segment after
// the first begins with a header batch repeating the hard state and the snapshot marker
// in effect. The oldest segments are deleted once the durable snapshot in effect covers
// every entry they hold; replay then starts mid-log, where entries may follow a hole
// below them until the replay reaches a snapshot marker covering it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "disk/file_system.h"
#include "disk/log_replay.h"

namespace kvr::disk {

struct WalOptions {
  uint64_t segmentBytes = 64u * 1024 * 1024;  // roll to a new segment beyond this
};
constexpr uint64_t kMinSegmentBytes = 1024;
constexpr uint64_t kMaxSegmentBytes = uint64_t(1) << 30;

std::string segmentName(uint64_t firstSeq);
std::optional<uint64_t> parseSegmentName(const std::string& name);

struct SegmentInfo {
  uint64_t firstSeq = 0;
  uint64_t records = 0;     // records in complete batches
  uint64_t bytes = 0;       // bytes of complete batches (the valid length)
  Index maxEntryIndex = 0;  // highest entry index any of its records wrote
};

struct WalReplay {
  LogState state;
  std::vector<SegmentInfo> segments;  // oldest first
  uint64_t newestFileBytes = 0;       // > segments.back().bytes when the tail is torn
};

// Reads and verifies every segment in `dir` and replays it. Refuses to start
// (disk/disk_error.h) on corruption, a bad record followed by valid ones, or a missing
// segment. A torn tail of the newest segment is reported, not cut (see WalWriter).
WalReplay replayWal(FileSystem& fs, const std::string& dir);

// One batch ready for the WAL: complete frames, the last without kRecordContinues.
struct WalBatch {
  std::string frames;
  uint32_t records = 0;
  std::optional<HardState> hardState;
  std::optional<SnapshotMarker> marker;
  Index maxEntryIndex = 0;
};

// Appends batches to the newest segment, rolling over and deleting covered segments.
// Any exception leaves the WAL in an unknown state: the owner must stop using it.
class WalWriter {
 public:
  // Cuts a torn tail off the newest segment (durably) and opens it, or creates the
  // first segment.
  WalWriter(FileSystem& fs, std::string dir, WalOptions options, const WalReplay& replay);

  // Makes every batch durable: one append and one fdatasync per segment touched.
  void append(std::vector<WalBatch>& batches);

  const std::optional<SnapshotMarker>& marker() const { return marker_; }
  size_t segmentCount() const { return segments_.size(); }

 private:
  void writeOut(std::string& buffer);
  void roll(std::string& buffer);
  void deleteCoveredSegments();

  FileSystem& fs_;
  std::string dir_;
  WalOptions options_;
  std::vector<SegmentInfo> segments_;
  kj::Own<File> file_;  // the newest segment
  bool newestHasBatches_ = false;
  HardState hardState_;
  bool haveHardState_ = false;
  std::optional<SnapshotMarker> marker_;
};

}  // namespace kvr::disk
