#include "disk/wal.h"

#include <cinttypes>
#include <cstdio>

#include <kj/debug.h>

#include "core/probe.h"
#include "core/text.h"
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
  return text::parseHex16(std::string_view(name).substr(4, 16));
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

// Whether a valid header of a later record (seq > afterSeq) starts anywhere at or after
// `from`: tells corruption (valid records follow) from a torn tail.
bool validRecordFollows(std::string_view bytes, size_t from, uint64_t afterSeq) {
  for (size_t pos = from; pos + kRecordHeaderBytes <= bytes.size(); ++pos) {
    if (bytes[pos] != 'K') continue;  // the magic's first byte, little-endian "KVW2"
    auto h = parseHeader(bytes.substr(pos));
    if (h && h->seq > afterSeq) return true;
  }
  return false;
}

// Reads every header copy at or after `from` that is valid: what the damaged part says
// this node wrote (entry indexes, hard states).
void summarizeRest(std::string_view bytes, size_t from, WalDamage& d, uint64_t& hsSeq) {
  for (size_t pos = from; pos + kRecordHeaderBytes <= bytes.size(); ++pos) {
    if (bytes[pos] != 'K') continue;
    auto h = parseHeader(bytes.substr(pos));
    if (!h) continue;
    d.wroteUpTo = std::max(d.wroteUpTo, h->hwm);
    if (h->type == RecordType::Entries || h->type == RecordType::SnapshotMarker) {
      d.wroteUpTo = std::max(d.wroteUpTo, h->type == RecordType::Entries ? h->b : h->a);
    } else if (h->type == RecordType::HardState && h->seq >= hsSeq) {
      hsSeq = h->seq;
      HardState hs;
      hs.term = h->a;
      hs.vote = static_cast<NodeId>(h->b);
      if (!d.laterHardState || hs.term >= d.laterHardState->term) d.laterHardState = hs;
    }
  }
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
  uint64_t hsSeq = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& [firstSeq, name] = names[i];
    const std::string path = joinPath(dir, name);
    const bool newest = i + 1 == names.size();
    std::string bytes = readWhole(fs, path);
    if (replay.damage) {
      // After the damage: only what the records say, for the recovery target.
      replay.damage->dropped.push_back(name);
      summarizeRest(bytes, 0, *replay.damage, hsSeq);
      continue;
    }
    if (i > 0) {
      const SegmentInfo& prev = replay.segments.back();
      if (firstSeq != prev.firstSeq + prev.records) {
        WalDamage d;
        d.file = path;
        d.what = "segment starts at record seq " + std::to_string(firstSeq) +
                 " but the previous segment ends before seq " +
                 std::to_string(prev.firstSeq + prev.records) +
                 " (a WAL segment is missing or was cut short)";
        d.segment = replay.segments.size() - 1;
        d.keepBytes = prev.bytes;
        d.wroteUpTo = replay.hwm;
        replay.damage = std::move(d);
        replay.damage->dropped.push_back(name);
        summarizeRest(bytes, 0, *replay.damage, hsSeq);
        continue;
      }
    }
    if (i == 0 && looksLikeV1Record(bytes)) {
      refuseToStart(path, 0,
                    "this WAL was written in record format v1 by an older kvraft; this "
                    "version reads only format v2 (docs/STORAGE.md)");
    }
    SegmentInfo seg;
    seg.firstSeq = firstSeq;
    std::vector<RecordBody> batch;  // records of the batch being read
    size_t batchStart = 0;
    Index batchMaxIndex = 0;
    Index batchHwm = 0;
    size_t pos = 0;
    uint64_t seq = firstSeq;
    std::optional<RecordRead> stop;
    while (pos < bytes.size()) {
      RecordRead r = readRecord(std::string_view(bytes).substr(pos), seq);
      if (r.status != RecordStatus::Ok) {
        stop = r;
        break;
      }
      std::string problem = "malformed record";
      auto body = decodePayload(r.header->type, r.payload, &problem);
      if (!body) {
        // Passed its checksum yet does not decode: no writer produces that.
        refuseToStart(path, pos, problem + " (the record passed its checksum)");
      }
      batch.push_back(std::move(*body));
      batchHwm = std::max(batchHwm, r.header->hwm);
      pos += r.header->recordBytes();
      ++seq;
      if (r.header->continues) continue;
      // A complete batch: apply it.
      for (const RecordBody& record : batch) {
        if (const char* bad = applyRecord(replay.state, record))
          refuseToStart(path, batchStart, bad);
        batchMaxIndex = std::max(batchMaxIndex, maxIndexIn(record));
      }
      seg.maxEntryIndex = std::max(seg.maxEntryIndex, batchMaxIndex);
      seg.records += batch.size();
      replay.hwm = std::max(replay.hwm, batchHwm);
      replay.lastRecordDegraded = r.degraded;
      batch.clear();
      batchStart = pos;
    }
    seg.bytes = batchStart;
    replay.segments.push_back(seg);
    if (newest) replay.newestFileBytes = bytes.size();
    if (batchStart == bytes.size()) continue;
    // The bytes from batchStart on are not a complete, valid batch. A torn tail only
    // if this is the newest segment, the record looks torn (not damaged after it was
    // completely written), and no valid record follows it.
    std::string what = stop ? std::string(stop->problem) : "batch without its last record";
    const uint64_t at = stop ? pos : batchStart;
    if (newest && (!stop || stop->status == RecordStatus::Torn) &&
        !validRecordFollows(bytes, pos + 1, seq)) {
      continue;  // torn tail: WalWriter cuts it
    }
    WalDamage d;
    d.file = path;
    d.offset = at;
    d.what = what + (newest ? "" : " in a segment that is not the newest") +
             (stop && stop->status == RecordStatus::Torn ? ", followed by valid records" : "");
    d.segment = replay.segments.size() - 1;
    d.keepBytes = batchStart;
    d.wroteUpTo = replay.hwm;
    if (stop && stop->header) {
      const RecordHeader& h = *stop->header;
      d.wroteUpTo = std::max(d.wroteUpTo, h.hwm);
      if (h.type == RecordType::Entries) d.wroteUpTo = std::max(d.wroteUpTo, h.b);
      if (h.type == RecordType::SnapshotMarker) d.wroteUpTo = std::max(d.wroteUpTo, h.a);
      if (h.type == RecordType::HardState) {
        hsSeq = h.seq;
        d.laterHardState = HardState{h.a, static_cast<NodeId>(h.b), 0};
      }
    }
    replay.damage = std::move(d);
    summarizeRest(bytes, batchStart, *replay.damage, hsSeq);
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

void cutDamage(FileSystem& fs, const std::string& dir, WalReplay& replay) {
  KJ_REQUIRE(replay.damage.has_value());
  WalDamage& d = *replay.damage;
  for (auto it = d.dropped.rbegin(); it != d.dropped.rend(); ++it) {
    fs.remove(joinPath(dir, *it));
  }
  if (!d.dropped.empty()) fs.syncDir(dir);
  KJ_ASSERT(d.segment + 1 == replay.segments.size());
  SegmentInfo& seg = replay.segments.back();
  KJ_ASSERT(seg.bytes == d.keepBytes);
  auto file = fs.open(joinPath(dir, segmentName(seg.firstSeq)), OpenMode::Append);
  if (file->size() > d.keepBytes) {
    file->truncate(d.keepBytes);
    file->datasync();
  }
  replay.newestFileBytes = d.keepBytes;
}

WalWriter::WalWriter(FileSystem& fs, std::string dir, WalOptions options,
                     const WalReplay& replay)
    : fs_(fs),
      dir_(std::move(dir)),
      options_(options),
      segments_(replay.segments),
      hardState_(replay.state.hardState),
      marker_(replay.state.marker),
      hwm_(std::max(replay.hwm, replay.state.lastIndex())) {
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
    if (replay.lastRecordDegraded) appendAfterDegraded();
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
  if (replay.lastRecordDegraded) appendAfterDegraded();
}

void WalWriter::appendAfterDegraded() {
  // Put a valid record after it (the hard state again, which changes nothing).
  std::vector<WalBatch> batches(1);
  appendFrame(batches[0].frames, RecordType::HardState, false, encodeHardState(hardState_));
  batches[0].records = 1;
  batches[0].hardState = hardState_;
  append(batches);
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
  std::string header;
  appendFrame(header, RecordType::HardState, marker_.has_value(), encodeHardState(hardState_));
  next.records = 1;
  if (marker_) {
    SnapshotMarker m = *marker_;
    m.resetLog = false;  // repeats the snapshot in effect; must not drop entries after it
    appendFrame(header, RecordType::SnapshotMarker, false, encodeSnapshotMarker(m));
    next.records = 2;
  }
  stampSeqs(header, next.firstSeq, &hwm_);
  buffer += header;
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
    KJ_ASSERT(stampSeqs(b.frames, nextSeq(), &hwm_) == b.records, "batch record count",
              b.records);
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
  dropCoveredSegments();
}

void WalWriter::dropCoveredSegments() {
  // The oldest segment can go once the durable snapshot in effect covers its entries:
  // the next segment's header repeats the hard state (and any marker) it held, and
  // replay tolerates the hole below the first entry it sees until a marker covers it.
  // The writer never touches a dropped segment again (names never repeat: they grow
  // with the seq), so its file may be removed later (removeSegments).
  while (segments_.size() >= 2 && marker_ &&
         segments_[0].maxEntryIndex <= marker_->meta.index) {
    KJ_ASSERT(covered_.size() < kMaxCoveredSegments, "covered WAL segments never taken");
    covered_.push_back(segmentName(segments_[0].firstSeq));
    segments_.erase(segments_.begin());
  }
}

std::vector<std::string> WalWriter::takeCovered() {
  std::vector<std::string> out = std::move(covered_);
  covered_.clear();
  return out;
}

void removeSegments(FileSystem& fs, const std::string& dir,
                    const std::vector<std::string>& names) {
  // Oldest first, each removal durable before the next: a crash leaves a contiguous run.
  for (const std::string& name : names) {
    KJ_REQUIRE(parseSegmentName(name).has_value(), "not a WAL segment name", name);
    const std::string path = joinPath(dir, name);
    const std::string removed = path + std::string(kRemovedSegmentSuffix);
    fs.rename(path, removed);
    fs.syncDir(dir);
    fs.remove(removed);
  }
}

bool isRemovedSegmentName(const std::string& name) {
  const size_t n = kRemovedSegmentSuffix.size();
  return name.size() > n && name.ends_with(kRemovedSegmentSuffix) &&
         parseSegmentName(name.substr(0, name.size() - n)).has_value();
}

void removeLeftoverSegments(FileSystem& fs, const std::string& dir) {
  for (const std::string& name : fs.list(dir)) {
    if (isRemovedSegmentName(name)) fs.remove(joinPath(dir, name));
  }
}

}  // namespace kvr::disk
