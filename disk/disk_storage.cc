#include "disk/disk_storage.h"

#include <algorithm>

#include <kj/debug.h>

#include "core/probe.h"
#include "disk/disk_error.h"
#include "disk/recovery_mark.h"

namespace kvr::disk {

DiskStorage::DiskStorage(FileSystem& fs, const std::string& dir, WalOptions options,
                         const WalReplay& replay)
    : encodedSnapshotIndex_(replay.state.snapshotIndex()),
      encodedLastIndex_(replay.state.lastIndex()),
      encodedMarker_(replay.state.marker),
      fs_(fs),
      dir_(dir),
      snapshots_(fs, dir),
      wal_(fs, dir, options, replay) {}

DiskStorage::~DiskStorage() noexcept = default;

namespace {

// Removes every WAL segment (newest first) and snapshot file, durably.
void wipeLogAndSnapshots(FileSystem& fs, const std::string& dir) {
  std::vector<std::string> names = fs.list(dir);
  for (auto it = names.rbegin(); it != names.rend(); ++it) {
    if (parseSegmentName(*it) || SnapshotStore::isSnapshotFileName(*it)) {
      fs.remove(joinPath(dir, *it));
    }
  }
  fs.syncDir(dir);
}

// The newer of two hard states by term (term and vote only matter here).
HardState newer(const HardState& a, const HardState& b) {
  if (b.term > a.term) return HardState{b.term, b.vote, a.commit};
  return a;
}

}  // namespace

DiskStorage::Recovered DiskStorage::open(FileSystem& fs, const std::string& dir,
                                         const NodeIdentity& id, const WalOptions& options) {
  fs.createDir(dir);
  bool fresh = true;
  for (const std::string& name : fs.list(dir)) {
    if (parseSegmentName(name) || SnapshotStore::isSnapshotFileName(name)) fresh = false;
  }
  const NodeIdentity identity = checkOrWriteIdentity(fs, dir, id,
                                                     fresh && !readRecoveryMark(fs, dir));

  Recovered out;
  out.identity = identity;
  std::optional<RecoveryMark> mark = readRecoveryMark(fs, dir);
  if (mark && mark->damaged) {
    out.repairs.push_back(joinPath(dir, kRecoveryMarkFileName) +
                          " at byte offset 0: the recovery mark does not verify; recovering "
                          "to the highest index the WAL holds");
  }
  if (mark && mark->wipe) {
    // A crash interrupted the wipe below: finish it.
    wipeLogAndSnapshots(fs, dir);
    mark->wipe = false;
    writeRecoveryMark(fs, dir, *mark);
  }
  removeLeftoverSegments(fs, dir);  // a crash inside removeSegments; replay ignores them
  WalReplay replay = replayWal(fs, dir);
  if (replay.damage) {
    hitProbe(Probe::WalCorruptionFound);
    const WalDamage& d = *replay.damage;
    RecoveryMark m = mark && !mark->damaged ? *mark : RecoveryMark{};
    m.untilIndex = std::max({m.untilIndex, d.wroteUpTo, replay.state.lastIndex()});
    m.hardState = newer(newer(m.hardState, replay.state.hardState),
                        d.laterHardState.value_or(HardState{}));
    m.hardState.commit = 0;
    // Durable before anything is cut: a crash from here on still restarts recovering.
    writeRecoveryMark(fs, dir, m);
    cutDamage(fs, dir, replay);
    std::string dropped;
    for (const auto& name : d.dropped) dropped += (dropped.empty() ? "" : ", ") + name;
    out.repairs.push_back(
        d.file + " at byte offset " + std::to_string(d.offset) + ": " + d.what +
        ". Not a torn write: entries this node may have acknowledged (up to index " +
        std::to_string(d.wroteUpTo) + ") may be lost. Cut the WAL there (kept " +
        std::to_string(d.keepBytes) + " bytes, entries up to index " +
        std::to_string(replay.state.lastIndex()) + ")" +
        (dropped.empty() ? std::string() : "; dropped later segments " + dropped) +
        "; recovering: no votes until the log matches a leader's up to index " +
        std::to_string(m.untilIndex));
    mark = m;
  }
  std::optional<Snapshot> snapshot;
  if (replay.state.marker) {
    const SnapshotMarker marker = *replay.state.marker;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions(
                       [&]() { snapshot = SnapshotStore(fs, dir).load(marker); })) {
      // The snapshot in effect is damaged (or gone): the log after it is useless without
      // it. Keep the term and vote, drop log and snapshot, catch up from a leader.
      hitProbe(Probe::SnapshotDamageFound);
      RecoveryMark m = mark && !mark->damaged ? *mark : RecoveryMark{};
      m.untilIndex = std::max({m.untilIndex, replay.state.lastIndex(), marker.meta.index});
      m.hardState = newer(m.hardState, replay.state.hardState);
      m.hardState.commit = 0;
      m.wipe = true;
      writeRecoveryMark(fs, dir, m);
      wipeLogAndSnapshots(fs, dir);
      m.wipe = false;
      writeRecoveryMark(fs, dir, m);
      out.repairs.push_back(std::string(e->getDescription().cStr()) +
                            " Dropped the snapshot and the whole WAL (term " +
                            std::to_string(m.hardState.term) +
                            " and vote kept); recovering: no votes until the log matches a "
                            "leader's up to index " +
                            std::to_string(m.untilIndex));
      mark = m;
      snapshot.reset();
      replay = replayWal(fs, dir);
      KJ_ASSERT(!replay.damage && !replay.state.marker && replay.state.entries.empty());
    }
  }
  out.state.hardState = replay.state.hardState;
  if (snapshot) out.state.snapshot = std::move(*snapshot);
  out.state.entries.assign(replay.state.entries.begin(), replay.state.entries.end());
  if (mark) {
    out.state.recovering = true;
    out.state.hardState = newer(out.state.hardState, mark->hardState);
    out.state.recoverUntil = mark->damaged ? std::max(replay.hwm, replay.state.lastIndex())
                                           : mark->untilIndex;
    out.state.hardState.commit = std::min(out.state.hardState.commit, replay.state.lastIndex());
    // New records keep saying how far this node may have acknowledged.
    replay.hwm = std::max(replay.hwm, out.state.recoverUntil);
  }
  out.storage = kj::heap<DiskStorage>(fs, dir, options, replay);
  // Snapshot files other than the one in effect are leftovers of crashed writes.
  SnapshotStore(fs, dir).removeAllExcept(
      replay.state.marker ? std::optional<SnapshotMeta>(replay.state.marker->meta)
                          : std::nullopt);
  return out;
}

void DiskStorage::persist(PersistBatch&& batch) {
  QueuedBatch q;
  q.seq = batch.seq;
  // Records in the order recovery applies them: snapshot, hard state, truncation, entries.
  std::vector<std::pair<RecordType, std::string>> records;
  Index snapIndex = encodedSnapshotIndex_;
  Index lastIndex = encodedLastIndex_;
  std::optional<SnapshotMarker> marker = encodedMarker_;
  if (batch.snapshot) {
    KJ_REQUIRE(batch.snapshot->data != nullptr || batch.snapshotSource != nullptr,
               "persisting a snapshot without data");
    SnapshotMarker m;
    m.meta = batch.snapshot->meta;
    m.resetLog = batch.resetLog;
    if (markerTakesEffect(marker, m)) {
      marker = m;
      snapIndex = m.meta.index;
      lastIndex = m.resetLog ? m.meta.index : std::max(lastIndex, m.meta.index);
    }
  }
  if (batch.hardState) {
    records.emplace_back(RecordType::HardState, encodeHardState(*batch.hardState));
  }
  if (!batch.entries.empty()) {
    const Index first = batch.entries.front().index;
    KJ_REQUIRE(first > 0 && first <= lastIndex + 1, "persisted entries leave a gap", first,
               lastIndex);
    if (first <= lastIndex) {
      records.emplace_back(RecordType::TruncateSuffix, encodeTruncateSuffix(first));
    }
    std::string payload = encodeEntries(batch.entries);
    if (payload.size() > kMaxRecordPayloadBytes) {
      throwDiskError("disk: a persist batch's " + std::to_string(batch.entries.size()) +
                     " entries encode to " + std::to_string(payload.size()) +
                     " bytes, over the WAL record limit of " +
                     std::to_string(kMaxRecordPayloadBytes) + " bytes");
    }
    records.emplace_back(RecordType::Entries, std::move(payload));
    lastIndex = batch.entries.back().index;
    q.wal.maxEntryIndex = lastIndex;
  }
  for (size_t i = 0; i < records.size(); ++i) {
    appendFrame(q.wal.frames, records[i].first, i + 1 < records.size(), records[i].second);
  }
  q.wal.records = static_cast<uint32_t>(records.size());
  q.wal.hardState = batch.hardState;
  if (batch.snapshot && prepared_ && prepared_->meta == batch.snapshot->meta &&
      (batch.snapshot->data == nullptr ||
       prepared_->dataBytes == batch.snapshot->data->size())) {
    q.prepared = prepared_;
    prepared_.reset();
  }
  q.snapshot = std::move(batch.snapshot);
  q.snapshotSource = std::move(batch.snapshotSource);
  q.resetLog = batch.resetLog;
  q.endRecovery = batch.endRecovery;
  // Commit the new shape only now that nothing can throw.
  encodedSnapshotIndex_ = snapIndex;
  encodedLastIndex_ = lastIndex;
  encodedMarker_ = marker;
  queue_.push_back(std::move(q));
}

QueuedWrites DiskStorage::takeQueued() {
  QueuedWrites out = std::move(queue_);
  queue_.clear();
  return out;
}

SnapshotMarker DiskStorage::prepareSnapshot(const SnapshotMeta& meta, SnapshotSource& source) {
  return SnapshotStore(fs_, dir_).write(meta, source, false);
}

std::vector<uint64_t> DiskStorage::write(QueuedWrites&& work) {
  Written written = writeDeferringCleanup(std::move(work));
  try {
    cleanup(std::move(written.cleanup));
  } catch (const kj::Exception&) {
    dead_ = true;  // fail-stop, as for a failed write
    throw;
  }
  return std::move(written.durable);
}

void DiskStorage::cleanup(Cleanup&& work) {
  try {
    // The WAL first: its segments are covered by the snapshot whose marker made the
    // older snapshot files obsolete, the same order as when both ran inside the write.
    removeSegments(fs_, dir_, work.walSegments);
    if (work.snapshot) SnapshotStore(fs_, dir_).removeReplacedBy(*work.snapshot);
  } catch (kj::Exception& e) {
    throwDiskError("disk: fail-stop: removing obsolete WAL segments or snapshot files "
                   "failed: " +
                   std::string(e.getDescription().cStr()));
  }
}

Written DiskStorage::writeDeferringCleanup(QueuedWrites&& work) {
  if (dead_) throwDiskError("disk: storage is dead after an earlier write or fsync failure");
  Written out;
  std::vector<uint64_t>& durable = out.durable;
  durable.reserve(work.size());
  try {
    std::vector<WalBatch> batches;
    batches.reserve(work.size());
    bool newSnapshot = false;
    bool endRecovery = false;
    for (QueuedBatch& q : work) {
      endRecovery = endRecovery || q.endRecovery;
      if (q.snapshot) {
        // The snapshot file is durable before the WAL marker that points at it.
        SnapshotMarker marker;
        if (q.prepared && snapshots_.exists(q.prepared->meta)) {
          marker = *q.prepared;
          marker.resetLog = q.resetLog;
        } else {
          // Not prepared, or its file was removed meanwhile (a leader's snapshot
          // replaced it): write it now.
          marker = q.snapshot->data != nullptr
                       ? snapshots_.write(*q.snapshot, q.resetLog)
                       : snapshots_.write(q.snapshot->meta, *q.snapshotSource, q.resetLog);
        }
        std::string frames;
        appendFrame(frames, RecordType::SnapshotMarker, q.wal.records > 0,
                    encodeSnapshotMarker(marker));
        q.wal.frames.insert(0, frames);
        q.wal.records += 1;
        q.wal.marker = marker;
        newSnapshot = true;
      }
      batches.push_back(std::move(q.wal));
      durable.push_back(q.seq);
    }
    wal_.append(batches);
    // The hard state and the log that ended the recovery are durable in the WAL.
    if (endRecovery) removeRecoveryMark(fs_, dir_);
    out.cleanup.walSegments = wal_.takeCovered();
    if (newSnapshot) {
      // The new marker is durable: older snapshot files are no longer needed.
      KJ_ASSERT(wal_.marker().has_value());
      out.cleanup.snapshot = wal_.marker()->meta;
    }
  } catch (kj::Exception& e) {
    dead_ = true;
    throwDiskError("disk: fail-stop: a write or fsync failed, nothing more will be made "
                   "durable: " +
                   std::string(e.getDescription().cStr()));
  }
  return out;
}

}  // namespace kvr::disk
