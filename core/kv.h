// The replicated KV state machine with exactly-once client sessions.
// Deterministic: ordered containers only, no clock; state is a pure function of the
// sequence of applied entries (or of a restored snapshot followed by entries).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "core/command.h"
#include "core/env.h"
#include "core/kv_map.h"
#include "core/types.h"

namespace kvr {

// The whole KV state frozen at one applied index: serializing it gives exactly the bytes
// KvStore::snapshot() gave at that moment. Immutable; safe to serialize on another
// thread while the store it came from keeps applying (core/kv_map.h).
class KvFrozen final : public SnapshotSource {
 public:
  KvFrozen(Index applied, size_t dataBytes, KvMapView data, std::string sessions)
      : applied_(applied),
        dataBytes_(dataBytes),
        data_(std::move(data)),
        sessions_(std::move(sessions)) {}
  Index appliedIndex() const { return applied_; }
  // The snapshot bytes (KvStore::snapshot's format), made now.
  std::string serialize() const;
  // SnapshotSource: serializes once, then drops the frozen view; later calls return the
  // same bytes.
  std::shared_ptr<const std::string> materialize() override;
  // SnapshotSource: the serialize() bytes in pieces of about kStreamPieceBytes, made from
  // the frozen view (kept: a second pass gives the same bytes); records their number.
  uint64_t stream(const std::function<void(std::string_view)>& sink) override;
  static constexpr size_t kStreamPieceBytes = 1024 * 1024;
  // The bytes materialize() made (null if it was not called), and how many bytes the
  // last complete stream() gave (0 if none): read on the thread that ordered itself
  // after those calls.
  std::shared_ptr<const std::string> materialized() const { return bytes_; }
  uint64_t streamedBytes() const { return streamedBytes_; }

 private:
  Index applied_;
  size_t dataBytes_;
  KvMapView data_;
  std::string sessions_;  // the encoded sessions section
  std::shared_ptr<const std::string> bytes_;
  uint64_t streamedBytes_ = 0;
};

struct KvConfig {
  // Count cap; beyond it an unused session is evicted first, else the least recently
  // active one (KvStore::apply).
  uint32_t maxSessions = 4096;
};

class KvStore {
 public:
  explicit KvStore(KvConfig config = {});

  // Applies one committed write (or OpenSession) at log index `index`.
  // Session rules:
  //   OpenSession: creates session clientId = index; beyond maxSessions evicts one:
  //                the oldest session that never ran a command (lastRequestId 0: an
  //                OpenSession retried after it applied leaves such an orphan), else the
  //                least recently active (smallest last-active index, ties by id).
  //   other writes: unknown clientId -> SessionExpired (nothing applied);
  //                 requestId == session.lastRequestId -> the saved reply, not applied again;
  //                 requestId <  session.lastRequestId -> StaleRequest;
  //                 otherwise apply, save (requestId, reply), mark active at `index`.
  // Read ops (Get/Range) are rejected with Invalid here; they use read().
  KvReply apply(Index index, const KvCommand& cmd);

  // Serves Get/Range from current state (no session needed).
  KvReply read(const KvCommand& cmd) const;

  Index appliedIndex() const { return applied_; }
  // Notes a no-op (or any non-command) entry so appliedIndex tracks the log.
  void skip(Index index);

  // Snapshot of all state (data, sessions, applied index), and restore from it.
  // restore returns false on malformed bytes and then leaves the store unchanged.
  std::string snapshot() const;
  bool restore(std::string_view bytes);
  // The state as it is now, frozen: O(leaves of the map + sessions). Later applies do
  // not change it (they copy what they share with it).
  std::shared_ptr<KvFrozen> freeze();

  // Forgets every client session; data and applied index stay. A cluster restored from
  // a backup is a new cluster: its clients open new sessions (disk/restore.h).
  void dropSessions();

  // Order-independent-of-memory digest of the whole state, for checkers.
  uint64_t digest() const;

  size_t size() const { return data_.size(); }
  size_t sessionCount() const { return sessions_.size(); }
  // Approximate bytes held (keys + values), for reporting.
  size_t dataBytes() const { return dataBytes_; }

  // A copy of the data as a std::map (tests).
  std::map<std::string, std::string, std::less<>> data() const;
  const KvMap& map() const { return data_; }

  // Writes this process has executed against the data (not counting deduplicated
  // retries). Not part of the replicated state: checkers use it to see re-execution.
  uint64_t effects() const { return effects_; }

 private:
  struct Session {
    uint64_t lastRequestId = 0;
    Index lastActive = 0;
    KvReply lastReply;
  };

  // Runs a validated write (not OpenSession) against the data; no session handling.
  KvReply applyToData(Index index, const KvCommand& cmd);
  void openSession(Index index);
  void touchSession(uint64_t clientId, Session& session, Index index);
  // Appends the sessions section of the snapshot body.
  void writeSessions(std::string& out) const;

  KvConfig config_;
  Index applied_ = 0;
  size_t dataBytes_ = 0;
  uint64_t effects_ = 0;
  KvMap data_;
  std::map<uint64_t, Session> sessions_;
  std::set<std::pair<Index, uint64_t>> byActivity_;  // (lastActive, clientId), oldest first
  std::set<uint64_t> unused_;  // sessions that never ran a command (lastRequestId 0), by id
};

}  // namespace kvr
