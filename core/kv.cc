// The KV state machine: data, exactly-once client sessions, snapshots and digests.
//
// Snapshot format (varints are shortest-form LEB128, strings are length-prefixed):
//   "KVS" u8 version=1, appliedIndex,
//   pairCount, (key, value)*            keys strictly ascending
//   sessionCount, (clientId, lastRequestId, lastActive, encodeReply(lastReply))*
//                                       client ids strictly ascending
//   u64 little-endian XXH3-64 (core/hash.h) of every byte before it
// The digest is the same hash of the same body.
#include "core/kv.h"

#include <kj/debug.h>

#include "core/hash.h"
#include "core/limits.h"
#include "core/probe.h"
#include "core/wire.h"

namespace kvr {

namespace {

constexpr char kSnapshotMagic[4] = {'K', 'V', 'S', 1};
constexpr size_t kChecksumBytes = 8;

// What a command gets before it may touch the state: Invalid for a write where a read
// belongs or the other way round, else what validate() says (Ok to go on).
Status admit(const KvCommand& cmd, bool write) {
  if (cmd.isWrite() != write) return Status::Invalid;
  return validate(cmd, nullptr);
}

}  // namespace

KvStore::KvStore(KvConfig config) : config_(config) {
  KJ_REQUIRE(config_.maxSessions >= 1 && config_.maxSessions <= limits::kMaxSessions,
             "maxSessions out of range", config_.maxSessions);
}

KvReply KvStore::apply(Index index, const KvCommand& cmd) {
  KJ_REQUIRE(index > applied_, "entries must be applied in increasing index order", index,
             applied_);
  applied_ = index;

  KvReply reply;
  reply.index = index;
  // Reads never enter the log; one that does is a proposer bug, answered, not applied.
  // Writes were validated at the leader already; re-checked so a bad entry cannot
  // corrupt state.
  reply.status = admit(cmd, true);
  if (reply.status != Status::Ok) return reply;
  if (cmd.op == OpType::OpenSession) {
    openSession(index);
    reply.clientId = index;
    return reply;
  }

  auto it = sessions_.find(cmd.clientId);
  if (it == sessions_.end()) {
    reply.status = Status::SessionExpired;
    return reply;
  }
  Session& session = it->second;
  if (cmd.requestId == session.lastRequestId) {
    hitProbe(Probe::SessionRetryAnswered);
    return session.lastReply;
  }
  if (cmd.requestId < session.lastRequestId) {
    reply.status = Status::StaleRequest;
    return reply;
  }
  reply = applyToData(index, cmd);
  ++effects_;
  session.lastRequestId = cmd.requestId;
  session.lastReply = reply;
  touchSession(cmd.clientId, session, index);
  return reply;
}

KvReply KvStore::applyToData(Index index, const KvCommand& cmd) {
  KvReply reply;
  reply.index = index;
  auto it = data_.find(cmd.key);
  switch (cmd.op) {
    case OpType::Put:
      if (it == data_.end()) {
        dataBytes_ += cmd.key.size() + cmd.value.size();
        data_.emplace(cmd.key, cmd.value);
      } else {
        dataBytes_ = dataBytes_ - it->second.size() + cmd.value.size();
        it->second = cmd.value;
      }
      return reply;
    case OpType::Delete:
      if (it == data_.end()) {
        reply.status = Status::NotFound;
      } else {
        dataBytes_ -= it->first.size() + it->second.size();
        data_.erase(it);
      }
      return reply;
    case OpType::Cas: {
      const bool present = it != data_.end();
      const bool matches = cmd.expectAbsent ? !present : present && it->second == cmd.expected;
      if (!matches) {
        reply.status = Status::CasMismatch;
        if (present) reply.value = it->second;
      } else if (present) {
        dataBytes_ = dataBytes_ - it->second.size() + cmd.value.size();
        it->second = cmd.value;
      } else {
        dataBytes_ += cmd.key.size() + cmd.value.size();
        data_.emplace(cmd.key, cmd.value);
      }
      return reply;
    }
    case OpType::Get:
    case OpType::Range:
    case OpType::OpenSession:
      break;
  }
  KJ_FAIL_ASSERT("applyToData called with a non-data operation",
                 static_cast<unsigned>(cmd.op));
}

void KvStore::openSession(Index index) {
  // Log indexes are unique and increasing, so the new id cannot exist yet.
  auto [it, inserted] = sessions_.emplace(index, Session{});
  KJ_ASSERT(inserted, "session id reused", index);
  it->second.lastActive = index;
  byActivity_.emplace(index, index);
  while (sessions_.size() > config_.maxSessions) {
    // The new session is the most recently active, so it is never the one evicted.
    auto oldest = byActivity_.begin();
    KJ_ASSERT(oldest->second != index);
    hitProbe(Probe::SessionEvicted);
    sessions_.erase(oldest->second);
    byActivity_.erase(oldest);
  }
  KJ_ASSERT(byActivity_.size() == sessions_.size());
}

void KvStore::touchSession(uint64_t clientId, Session& session, Index index) {
  KJ_ASSERT(byActivity_.erase({session.lastActive, clientId}) == 1);
  session.lastActive = index;
  byActivity_.emplace(index, clientId);
}

KvReply KvStore::read(const KvCommand& cmd) const {
  KvReply reply;
  reply.index = applied_;
  reply.status = admit(cmd, false);
  if (reply.status != Status::Ok) return reply;

  if (cmd.op == OpType::Get) {
    auto it = data_.find(cmd.key);
    if (it == data_.end()) {
      reply.status = Status::NotFound;
    } else {
      reply.value = it->second;
    }
    return reply;
  }

  const uint32_t limit = cmd.limit == 0 ? limits::kMaxRangeLimit : cmd.limit;
  size_t bytes = 0;
  for (auto it = data_.lower_bound(cmd.key); it != data_.end(); ++it) {
    if (!cmd.rangeEnd.empty() && it->first >= cmd.rangeEnd) break;
    const size_t pairBytes = it->first.size() + it->second.size();
    if (reply.kvs.size() == limit || bytes + pairBytes > limits::kMaxRangeReplyBytes) {
      reply.more = true;
      break;
    }
    bytes += pairBytes;
    reply.kvs.emplace_back(it->first, it->second);
  }
  return reply;
}

void KvStore::skip(Index index) {
  KJ_REQUIRE(index > applied_, "entries must be applied in increasing index order", index,
             applied_);
  applied_ = index;
}

void KvStore::writeState(std::string& out) const {
  out.append(kSnapshotMagic, sizeof(kSnapshotMagic));
  wire::putVarint(out, applied_);
  wire::putVarint(out, data_.size());
  for (const auto& [key, value] : data_) {
    wire::putBytes(out, key);
    wire::putBytes(out, value);
  }
  wire::putVarint(out, sessions_.size());
  for (const auto& [clientId, session] : sessions_) {
    wire::putVarint(out, clientId);
    wire::putVarint(out, session.lastRequestId);
    wire::putVarint(out, session.lastActive);
    wire::putBytes(out, encodeReply(session.lastReply));
  }
}

std::string KvStore::snapshot() const {
  std::string out;
  writeState(out);
  wire::putFixed64(out, hash64(out));
  return out;
}

uint64_t KvStore::digest() const {
  std::string body;
  writeState(body);
  return hash64(body);
}

bool KvStore::restore(std::string_view bytes) {
  if (bytes.size() < kChecksumBytes || bytes.size() > limits::kMaxSnapshotBytes) return false;
  const std::string_view body = bytes.substr(0, bytes.size() - kChecksumBytes);
  uint64_t sum = 0;
  if (!wire::Reader(bytes.substr(body.size())).fixed64(&sum) || sum != hash64(body)) {
    return false;
  }

  // Everything is decoded into fresh containers and swapped in only when all of it
  // checks out, so a bad snapshot leaves this store as it was.
  wire::Reader in(body);
  uint64_t applied, pairCount, sessionCount;
  if (!in.expect(std::string_view(kSnapshotMagic, sizeof(kSnapshotMagic))) ||
      !in.varint(&applied) || !in.varint(&pairCount)) {
    return false;
  }
  std::map<std::string, std::string, std::less<>> data;
  size_t dataBytes = 0;
  for (uint64_t i = 0; i < pairCount; ++i) {
    std::string_view key, value;
    if (!in.bytes(&key) || !in.bytes(&value)) return false;
    if (key.empty() || key.size() > limits::kMaxKeyBytes) return false;
    if (value.size() > limits::kMaxValueBytes) return false;
    if (!data.empty() && key <= data.rbegin()->first) return false;  // sorted, unique
    data.emplace_hint(data.end(), key, value);
    dataBytes += key.size() + value.size();
  }

  if (!in.varint(&sessionCount) || sessionCount > config_.maxSessions) return false;
  std::map<uint64_t, Session> sessions;
  std::set<std::pair<Index, uint64_t>> byActivity;
  for (uint64_t i = 0; i < sessionCount; ++i) {
    uint64_t clientId;
    Session session;
    std::string_view reply;
    if (!in.varint(&clientId) || !in.varint(&session.lastRequestId) ||
        !in.varint(&session.lastActive) || !in.bytes(&reply)) {
      return false;
    }
    // A session id is the index of its OpenSession entry, and every later activity is
    // at a later index, at most the applied one; one entry touches one session.
    if (clientId == 0 || clientId > session.lastActive || session.lastActive > applied) {
      return false;
    }
    if (!sessions.empty() && clientId <= sessions.rbegin()->first) return false;
    auto sameIndex = byActivity.lower_bound({session.lastActive, 0});
    if (sameIndex != byActivity.end() && sameIndex->first == session.lastActive) return false;
    if (!decodeReply(reply, &session.lastReply)) return false;
    byActivity.emplace(session.lastActive, clientId);
    sessions.emplace_hint(sessions.end(), clientId, std::move(session));
  }
  if (!in.done()) return false;

  applied_ = applied;
  dataBytes_ = dataBytes;
  data_ = std::move(data);
  sessions_ = std::move(sessions);
  byActivity_ = std::move(byActivity);
  return true;
}

void KvStore::dropSessions() {
  sessions_.clear();
  byActivity_.clear();
}

}  // namespace kvr
