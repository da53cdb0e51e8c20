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
#include <string_view>
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

// Damage that is not a torn tail: a completely written record that is damaged or out
// of place, a bad record followed by valid ones, a record in a segment that is not the
// newest, or a missing segment. Entries this node may have acknowledged may be gone.
struct WalDamage {
  std::string file;
  uint64_t offset = 0;  // of the damaged record (or 0 for a missing segment)
  std::string what;
  size_t segment = 0;      // index in WalReplay::segments of the segment to cut
  uint64_t keepBytes = 0;  // the valid prefix of that segment (whole batches)
  // The highest entry index any readable record from the damage on (header copies
  // included) says this node wrote, and the newest hard state such a record held.
  Index wroteUpTo = 0;
  std::optional<HardState> laterHardState;
  std::vector<std::string> dropped;  // later segments, dropped whole
};

struct WalReplay {
  LogState state;                     // what the valid prefix holds
  std::vector<SegmentInfo> segments;  // oldest first (up to the damaged one)
  uint64_t newestFileBytes = 0;       // > segments.back().bytes when the tail is torn
  std::optional<WalDamage> damage;
  // The highest entry index the valid prefix's records say the WAL ever held (their
  // hwm); the writer's records carry at least this (a recovering node's target too).
  Index hwm = 0;
  // The last record kept has only one good header copy: the writer appends a record
  // after it at once, so that more damage to it shows as corruption (valid records
  // follow), never as a torn tail.
  bool lastRecordDegraded = false;
};

// Reads and verifies every segment in `dir` and replays the valid prefix. A torn tail
// of the newest segment is reported, not cut (see WalWriter). Damage (above) is
// reported in `damage`, never cut here: the caller must first record durably that the
// node is recovering (disk/recovery_mark.h), then cut it with cutDamage. Refuses to
// start (disk/disk_error.h) on a WAL in the old format and on missing older segments.
WalReplay replayWal(FileSystem& fs, const std::string& dir);

// Cuts the damage off: removes the dropped segments (newest first), truncates the
// damaged one to its valid prefix, all durably; `replay` then describes the WAL as it is.
void cutDamage(FileSystem& fs, const std::string& dir, WalReplay& replay);

// One batch ready for the WAL: complete frames, the last without kRecordContinues.
struct WalBatch {
  std::string frames;
  uint32_t records = 0;
  std::optional<HardState> hardState;
  std::optional<SnapshotMarker> marker;
  Index maxEntryIndex = 0;
};

// Appends batches to the newest segment, rolling over. Segments the durable snapshot in
// effect covers are dropped from the writer's list at once, and their files handed out
// (takeCovered) for removeSegments, which may run later and on another thread: a large
// unlink and the directory fsyncs stay out of the path of the next append's fsync.
// Any exception leaves the WAL in an unknown state: the owner must stop using it.
class WalWriter {
 public:
  // Cuts a torn tail off the newest segment (durably) and opens it, or creates the
  // first segment.
  WalWriter(FileSystem& fs, std::string dir, WalOptions options, const WalReplay& replay);

  // Makes every batch durable: one append and one fdatasync per segment touched.
  void append(std::vector<WalBatch>& batches);
  // The names of the covered segments append() dropped since the last call, oldest first
  // (at most kMaxCoveredSegments pending: a caller that never takes them is a bug).
  std::vector<std::string> takeCovered();

  const std::optional<SnapshotMarker>& marker() const { return marker_; }
  // The seq the next record appended gets.
  uint64_t nextSeq() const { return segments_.back().firstSeq + segments_.back().records; }
  size_t segmentCount() const { return segments_.size(); }

 private:
  void writeOut(std::string& buffer);
  void roll(std::string& buffer);
  void dropCoveredSegments();
  void appendAfterDegraded();

  FileSystem& fs_;
  std::string dir_;
  WalOptions options_;
  std::vector<SegmentInfo> segments_;
  kj::Own<File> file_;  // the newest segment
  bool newestHasBatches_ = false;
  HardState hardState_;
  bool haveHardState_ = false;
  std::optional<SnapshotMarker> marker_;
  Index hwm_ = 0;
  std::vector<std::string> covered_;  // dropped, not yet taken for removal; oldest first
};

// Bound on WalWriter's covered segments waiting to be taken.
constexpr size_t kMaxCoveredSegments = 4096;

// Removes the segment files `names` (from WalWriter::takeCovered) in order, each removal
// durable (directory fsync) before the next, so a crash leaves a contiguous run of
// segments. Safe beside a WalWriter appending to a newer segment of the same directory.
// Each is first renamed to <name>.removed (which replay ignores) and that made durable,
// then unlinked: the file system may take its time over the unlink (net/metered_fs.h
// cuts such a file down in steps first), and a crash leaves only a .removed file, which
// open() removes (removeLeftoverSegments).
void removeSegments(FileSystem& fs, const std::string& dir,
                    const std::vector<std::string>& names);
constexpr std::string_view kRemovedSegmentSuffix = ".removed";
// Whether `name` is a segment name followed by kRemovedSegmentSuffix.
bool isRemovedSegmentName(const std::string& name);
// Removes the .removed files a crash inside removeSegments left behind.
void removeLeftoverSegments(FileSystem& fs, const std::string& dir);

}  // namespace kvr::disk
