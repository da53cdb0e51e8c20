#include "disk/wal.h"

#include <cinttypes>
#include <cstdio>

#include <kj/debug.h>

#include "core/probe.h"
#include "disk/disk_error.h"

namespace kvr::disk {

std::string segmentName(uint64_t firstSeq) {
  char name[40];
  std::snprintf(name, sizeof(name), "wal-%016" PRIx64 ".log", firstSeq);
  return name;
}

std::optional<uint64_t> parseSegmentName(const std::string& name) {
  if (name.size() != 4 + 16 + 4 || name.compare(0, 4, "wal-") != 0 ||
      name.compare(20, 4, ".log") != 0) {
    return std::nullopt;
  }
  uint64_t seq = 0;
  for (size_t i = 4; i < 20; ++i) {
    char c = name[i];
    int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return std::nullopt;
    seq = seq * 16 + static_cast<uint64_t>(digit);
  }
  return seq;
}

namespace {

std::string readWhole(FileSystem& fs, const std::string& path) {
  auto file = fs.open(path, OpenMode::Read);
  uint64_t size = file->size();
  KJ_REQUIRE(size <= kMaxSegmentBytes + kMaxRecordPayloadBytes * 2,
             "WAL segment larger than any the writer produces", path, size);
  std::string bytes = file->pread(0, size);
  KJ_REQUIRE(bytes.size() == size, "short read", path);
  return bytes;
}

// The offset of the first frame at or after `from` that passes its checksum and
// decodes, if any: tells corruption (valid records follow) from a torn tail.
std::optional<size_t> findValidFrame(std::string_view bytes, size_t from) {
  for (size_t pos = from; pos + kRecordHeaderBytes <= bytes.size(); ++pos) {
    Frame f = readFrame(bytes.substr(pos));
    if (f.status != FrameStatus::Ok) continue;
    const char* problem = "";
    if (decodePayload(f.type, f.payload, &problem)) return pos;
  }
  return std::nullopt;
}

Index maxIndexIn(const RecordBody& body) {
  if (auto* entries = std::get_if<std::vector<Entry>>(&body)) return entries->back().index;
  return 0;
}

}  // namespace

WalReplay replayWal(FileSystem& fs, const std::string& dir) {
  std::vector<std::pair<uint64_t, std::string>> names;
  for (const std::string& name : fs.list(dir)) {
    if (auto seq = parseSegmentName(name)) names.emplace_back(*seq, name);
  }
  // list() is sorted and the seq is fixed-width hex, so names are in seq order.
  WalReplay replay;
  // After the oldest segments were deleted, replay starts mid-log.
  replay.state.allowHoles = !names.empty() && names.front().first != 1;
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& [firstSeq, name] = names[i];
    const std::string path = joinPath(dir, name);
    const bool newest = i + 1 == names.size();
    if (i > 0) {
      const SegmentInfo& prev = replay.segments.back();
      if (firstSeq != prev.firstSeq + prev.records) {
        refuseToStart(path, 0,
                      "segment starts at record seq " + std::to_string(firstSeq) +
                          " but the previous segment ends before seq " +
                          std::to_string(prev.firstSeq + prev.records) +
                          " (a WAL segment is missing or was cut short)");
      }
    }
    std::string bytes = readWhole(fs, path);
    SegmentInfo seg;
    seg.firstSeq = firstSeq;
    std::vector<RecordBody> batch;  // records of the batch being read
    size_t batchStart = 0;
    size_t pos = 0;
    const char* stopProblem = nullptr;
    while (pos < bytes.size()) {
      Frame f = readFrame(std::string_view(bytes).substr(pos));
      if (f.status != FrameStatus::Ok) {
        stopProblem = f.problem;
        break;
      }
      const char* problem = "malformed record";
      auto body = decodePayload(f.type, f.payload, &problem);
      if (!body) {
        refuseToStart(path, pos, std::string(problem) + " (the record passed its checksum)");
      }
      batch.push_back(std::move(*body));
      pos += f.frameBytes;
      if (f.continues) continue;
      // A complete batch: apply it.
      for (const RecordBody& record : batch) {
        if (const char* bad = applyRecord(replay.state, record))
          refuseToStart(path, batchStart, bad);
        seg.maxEntryIndex = std::max(seg.maxEntryIndex, maxIndexIn(record));
      }
      seg.records += batch.size();
      batch.clear();
      batchStart = pos;
    }
    seg.bytes = batchStart;
    if (batchStart < bytes.size()) {
      // The bytes from batchStart on are not a complete, valid batch.
      std::string what = stopProblem != nullptr ? std::string(stopProblem)
                                                : std::string("batch without its last record");
      if (!newest) {
        refuseToStart(path, stopProblem != nullptr ? pos : batchStart,
                      what + " in a segment that is not the newest (corruption, not a torn "
                             "write)");
      }
      if (stopProblem != nullptr) {
        if (auto valid = findValidFrame(bytes, pos + 1)) {
          refuseToStart(path, pos,
                        what + ", followed by a valid record at byte offset " +
                            std::to_string(*valid) + " (corruption, not a torn write)");
        }
      }
    }
    if (newest) replay.newestFileBytes = bytes.size();
    replay.segments.push_back(seg);
  }
  if (replay.state.hasHole()) {
    refuseToStart(joinPath(dir, names.front().second), 0,
                  "entries before index " + std::to_string(replay.state.firstKnown) +
                      " are neither in the WAL nor covered by the snapshot (index " +
                      std::to_string(replay.state.snapshotIndex()) +
                      "): older WAL segments are missing");
  }
  return replay;
}

WalWriter::WalWriter(FileSystem& fs, std::string dir, WalOptions options,
                     const WalReplay& replay)
    : fs_(fs),
      dir_(std::move(dir)),
      options_(options),
      segments_(replay.segments),
      hardState_(replay.state.hardState),
      marker_(replay.state.marker) {
  if (options_.segmentBytes < kMinSegmentBytes || options_.segmentBytes > kMaxSegmentBytes) {
    throwDiskError("disk: WAL segment size " + std::to_string(options_.segmentBytes) +
                   " is outside the allowed range [" + std::to_string(kMinSegmentBytes) + ", " +
                   std::to_string(kMaxSegmentBytes) + "]");
  }
  if (segments_.empty()) {
    SegmentInfo first;
    first.firstSeq = 1;
    file_ = fs_.open(joinPath(dir_, segmentName(1)), OpenMode::Create);
    fs_.syncDir(dir_);
    segments_.push_back(first);
    return;
  }
  if (segments_.size() > 1 && segments_.back().records == 0) {
    // A roll that crashed before its header batch was durable: drop the empty segment
    // and keep appending to the previous one (every later segment must start with a
    // header, or the ones before it could never be deleted).
    fs_.remove(joinPath(dir_, segmentName(segments_.back().firstSeq)));
    fs_.syncDir(dir_);
    segments_.pop_back();
    SegmentInfo& newest = segments_.back();
    file_ = fs_.open(joinPath(dir_, segmentName(newest.firstSeq)), OpenMode::Append);
    newestHasBatches_ = true;
    return;
  }
  SegmentInfo& newest = segments_.back();
  file_ = fs_.open(joinPath(dir_, segmentName(newest.firstSeq)), OpenMode::Append);
  if (replay.newestFileBytes > newest.bytes) {
    // Torn tail: never reported durable, so cutting it loses nothing acknowledged.
    hitProbe(Probe::WalTornTailTruncated);
    file_->truncate(newest.bytes);
    file_->datasync();
  }
  newestHasBatches_ = newest.records > 0;
}

void WalWriter::writeOut(std::string& buffer) {
  if (buffer.empty()) return;
  file_->append(buffer);
  file_->datasync();
  segments_.back().bytes += buffer.size();
  buffer.clear();
}

void WalWriter::roll(std::string& buffer) {
  writeOut(buffer);  // the old segment is durable before the new one holds anything
  const SegmentInfo& old = segments_.back();
  SegmentInfo next;
  next.firstSeq = old.firstSeq + old.records;
  file_ = fs_.open(joinPath(dir_, segmentName(next.firstSeq)), OpenMode::Create);
  // Header batch: the hard state, then the snapshot marker in effect.
  appendFrame(buffer, RecordType::HardState, marker_.has_value(), encodeHardState(hardState_));
  next.records = 1;
  if (marker_) {
    SnapshotMarker header = *marker_;
    header.resetLog = false;  // repeats the snapshot in effect; must not drop entries after it
    appendFrame(buffer, RecordType::SnapshotMarker, false, encodeSnapshotMarker(header));
    next.records = 2;
  }
  segments_.push_back(next);
  newestHasBatches_ = false;
}

void WalWriter::append(std::vector<WalBatch>& batches) {
  std::string buffer;
  bool created = false;
  for (WalBatch& b : batches) {
    const SegmentInfo& cur = segments_.back();
    if (newestHasBatches_ &&
        cur.bytes + buffer.size() + b.frames.size() > options_.segmentBytes) {
      roll(buffer);
      created = true;
    }
    buffer += b.frames;
    SegmentInfo& seg = segments_.back();
    seg.records += b.records;
    seg.maxEntryIndex = std::max(seg.maxEntryIndex, b.maxEntryIndex);
    newestHasBatches_ = true;
    if (b.hardState) hardState_ = *b.hardState;
    if (b.marker && markerTakesEffect(marker_, *b.marker)) marker_ = *b.marker;
  }
  writeOut(buffer);
  if (created) fs_.syncDir(dir_);
  deleteCoveredSegments();
}

void WalWriter::deleteCoveredSegments() {
  // The oldest segment can go once the durable snapshot in effect covers its entries:
  // the next segment's header repeats the hard state (and any marker) it held, and
  // replay tolerates the hole below the first entry it sees until a marker covers it.
  // Oldest first, each deletion durable before the next, so a crash leaves a
  // contiguous run of segments.
  while (segments_.size() >= 2 && marker_ &&
         segments_[0].maxEntryIndex <= marker_->meta.index) {
    fs_.remove(joinPath(dir_, segmentName(segments_[0].firstSeq)));
    fs_.syncDir(dir_);
    segments_.erase(segments_.begin());
  }
}

}  // namespace kvr::disk
