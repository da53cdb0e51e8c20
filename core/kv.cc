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
  if (session.lastRequestId == 0) unused_.erase(cmd.clientId);  // its first command
  session.lastRequestId = cmd.requestId;
  session.lastReply = reply;
  touchSession(cmd.clientId, session, index);
  return reply;
}

KvReply KvStore::applyToData(Index index, const KvCommand& cmd) {
  KvReply reply;
  reply.index = index;
  switch (cmd.op) {
    case OpType::Put: {
      const int64_t old = data_.put(cmd.key, cmd.value);
      if (old < 0) {
        dataBytes_ += cmd.key.size() + cmd.value.size();
      } else {
        dataBytes_ = dataBytes_ - size_t(old) + cmd.value.size();
      }
      return reply;
    }
    case OpType::Delete: {
      const int64_t removed = data_.erase(cmd.key);
      if (removed < 0) {
        reply.status = Status::NotFound;
      } else {
        dataBytes_ -= size_t(removed);
      }
      return reply;
    }
    case OpType::Cas: {
      const KvItem* it = data_.find(cmd.key);
      const bool present = it != nullptr;
      const bool matches = cmd.expectAbsent ? !present : present && it->value() == cmd.expected;
      if (!matches) {
        reply.status = Status::CasMismatch;
        if (present) reply.value = std::string(it->value());
      } else if (present) {
        dataBytes_ = dataBytes_ - it->value().size() + cmd.value.size();
        data_.put(cmd.key, cmd.value);
      } else {
        dataBytes_ += cmd.key.size() + cmd.value.size();
        data_.put(cmd.key, cmd.value);
      }
      return reply;
    }
    case OpType::Get:
    case OpType::Range:
    case OpType::OpenSession: break;
  }
  KJ_FAIL_ASSERT("applyToData called with a non-data operation", static_cast<unsigned>(cmd.op));
}

void KvStore::openSession(Index index) {
  // Log indexes are unique and increasing, so the new id cannot exist yet.
  auto [it, inserted] = sessions_.emplace(index, Session{});
  KJ_ASSERT(inserted, "session id reused", index);
  it->second.lastActive = index;
  byActivity_.emplace(index, index);
  unused_.insert(index);
  while (sessions_.size() > config_.maxSessions) {
    // A session that never ran a command goes first, the oldest of them: an OpenSession
    // retried after it applied leaves one nobody will use (issue 10), and evicting
    // by activity alone let a storm of those push out the sessions clients use. Then the
    // least recently active. The new session is the newest of both orders, so it is
    // never the one evicted.
    uint64_t victim = 0;
    auto orphan = unused_.begin();
    if (orphan != unused_.end() && *orphan != index) {
      victim = *orphan;
    } else {
      victim = byActivity_.begin()->second;
    }
    KJ_ASSERT(victim != index);
    hitProbe(Probe::SessionEvicted);
    auto gone = sessions_.find(victim);
    KJ_ASSERT(gone != sessions_.end());
    KJ_ASSERT(byActivity_.erase({gone->second.lastActive, victim}) == 1);
    unused_.erase(victim);
    sessions_.erase(gone);
  }
  KJ_ASSERT(byActivity_.size() == sessions_.size() && unused_.size() <= sessions_.size());
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
    const KvItem* it = data_.find(cmd.key);
    if (it == nullptr) {
      reply.status = Status::NotFound;
    } else {
      reply.value = std::string(it->value());
    }
    return reply;
  }

  const uint32_t limit = cmd.limit == 0 ? limits::kMaxRangeLimit : cmd.limit;
  size_t bytes = 0;
  data_.forEachFrom(cmd.key, [&](const KvItem& item) {
    if (!cmd.rangeEnd.empty() && item.key() >= cmd.rangeEnd) return false;
    const size_t pairBytes = item.key().size() + item.value().size();
    if (reply.kvs.size() == limit || bytes + pairBytes > limits::kMaxRangeReplyBytes) {
      reply.more = true;
      return false;
    }
    bytes += pairBytes;
    reply.kvs.emplace_back(std::string(item.key()), std::string(item.value()));
    return true;
  });
  return reply;
}

void KvStore::skip(Index index) {
  KJ_REQUIRE(index > applied_, "entries must be applied in increasing index order", index,
             applied_);
  applied_ = index;
}

namespace {

// The snapshot body (the snapshot and the digest share this one definition of "the
// state"): header, the pairs in key order, the sessions section.
// `afterPair(out)` runs after each pair (a streaming writer empties `out` there).
template <typename Pairs, typename AfterPair>
void writeBody(std::string& out, Index applied, size_t pairCount, const Pairs& pairs,
               std::string_view sessions, AfterPair&& afterPair) {
  out.append(kSnapshotMagic, sizeof(kSnapshotMagic));
  wire::putVarint(out, applied);
  wire::putVarint(out, pairCount);
  pairs.forEach([&](const KvItem& item) {
    wire::putBytes(out, item.key());
    wire::putBytes(out, item.value());
    afterPair(out);
  });
  out.append(sessions);
}

}  // namespace

void KvStore::writeSessions(std::string& out) const {
  wire::putVarint(out, sessions_.size());
  for (const auto& [clientId, session] : sessions_) {
    wire::putVarint(out, clientId);
    wire::putVarint(out, session.lastRequestId);
    wire::putVarint(out, session.lastActive);
    wire::putBytes(out, encodeReply(session.lastReply));
  }
}

std::string KvFrozen::serialize() const {
  std::string out;
  // Each pair costs at most two 5-byte length varints besides its bytes.
  out.reserve(64 + dataBytes_ + 10 * data_.size() + sessions_.size() + kChecksumBytes);
  writeBody(out, applied_, data_.size(), data_, sessions_, [](std::string&) {});
  wire::putFixed64(out, hash64(out));
  return out;
}

uint64_t KvFrozen::stream(const std::function<void(std::string_view)>& sink) {
  if (bytes_ != nullptr) {
    sink(*bytes_);  // materialized already: the view is gone
    streamedBytes_ = bytes_->size();
    return streamedBytes_;
  }
  Hasher body;
  uint64_t total = 0;
  std::string piece;
  piece.reserve(kStreamPieceBytes + 2 * 5 + limits::kMaxKeyBytes + limits::kMaxValueBytes);
  auto give = [&](std::string& out) {
    body.update(out);
    total += out.size();
    sink(out);
    out.clear();
  };
  writeBody(piece, applied_, data_.size(), data_, sessions_, [&](std::string& out) {
    if (out.size() >= kStreamPieceBytes) give(out);
  });
  give(piece);
  wire::putFixed64(piece, body.digest());  // the trailer: the body's checksum
  total += piece.size();
  sink(piece);
  streamedBytes_ = total;
  return total;
}

std::shared_ptr<const std::string> KvFrozen::materialize() {
  if (bytes_ == nullptr) {
    bytes_ = std::make_shared<const std::string>(serialize());
    data_ = KvMapView();  // releases the leaves it shared with the store
  }
  return bytes_;
}

std::shared_ptr<KvFrozen> KvStore::freeze() {
  std::string sessions;
  writeSessions(sessions);
  return std::make_shared<KvFrozen>(applied_, dataBytes_, data_.freeze(), std::move(sessions));
}

std::string KvStore::snapshot() const {
  std::string sessions;
  writeSessions(sessions);
  std::string out;
  out.reserve(64 + dataBytes_ + 10 * data_.size() + sessions.size() + kChecksumBytes);
  writeBody(out, applied_, data_.size(), data_, sessions, [](std::string&) {});
  wire::putFixed64(out, hash64(out));
  return out;
}

uint64_t KvStore::digest() const {
  std::string sessions;
  writeSessions(sessions);
  std::string body;
  writeBody(body, applied_, data_.size(), data_, sessions, [](std::string&) {});
  return hash64(body);
}

std::map<std::string, std::string, std::less<>> KvStore::data() const {
  std::map<std::string, std::string, std::less<>> out;
  data_.forEach(
      [&](const KvItem& item) { out.emplace_hint(out.end(), item.key(), item.value()); });
  return out;
}

bool KvStore::restore(std::string_view bytes) {
  if (bytes.size() < kChecksumBytes || bytes.size() > limits::kMaxSnapshotBytes) return false;
  const std::string_view body = bytes.substr(0, bytes.size() - kChecksumBytes);
  uint64_t sum = 0;
  if (!wire::Reader(bytes.substr(body.size())).fixed64(&sum) || sum != hash64(body)) {
    return false;
  }

  // Nothing changes until all of it checks out, so a bad snapshot leaves this store as
  // it was: the sessions are decoded into fresh containers, the pairs checked (below).
  wire::Reader in(body);
  uint64_t applied, pairCount, sessionCount;
  if (!in.expect(std::string_view(kSnapshotMagic, sizeof(kSnapshotMagic))) ||
      !in.varint(&applied) || !in.varint(&pairCount)) {
    return false;
  }
  // The pairs are checked in a first pass and built in a second, once everything
  // checked out and the old pairs are gone: a store restored over a large one (a
  // follower installing a snapshot) never holds both.
  auto readPairs = [pairCount](wire::Reader& r, KvMap* build, size_t* bytes) {
    std::string_view lastKey;
    *bytes = 0;
    for (uint64_t i = 0; i < pairCount; ++i) {
      std::string_view key, value;
      if (!r.bytes(&key) || !r.bytes(&value)) return false;
      if (key.empty() || key.size() > limits::kMaxKeyBytes) return false;
      if (value.size() > limits::kMaxValueBytes) return false;
      if (i > 0 && key <= lastKey) return false;  // sorted, unique
      lastKey = key;
      if (build != nullptr) build->pushBack(key, value);
      *bytes += key.size() + value.size();
    }
    return true;
  };
  const wire::Reader pairsAt = in;
  size_t dataBytes = 0;
  if (!readPairs(in, nullptr, &dataBytes)) return false;

  if (!in.varint(&sessionCount) || sessionCount > config_.maxSessions) return false;
  std::map<uint64_t, Session> sessions;
  std::set<std::pair<Index, uint64_t>> byActivity;
  std::set<uint64_t> unused;
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
    // A session that never ran a command was last active when it opened.
    if (session.lastRequestId == 0 && session.lastActive != clientId) return false;
    byActivity.emplace(session.lastActive, clientId);
    if (session.lastRequestId == 0) unused.insert(unused.end(), clientId);
    sessions.emplace_hint(sessions.end(), clientId, std::move(session));
  }
  if (!in.done()) return false;

  data_.clear();
  wire::Reader again = pairsAt;
  KJ_ASSERT(readPairs(again, &data_, &dataBytes), "checked snapshot pairs no longer decode");
  applied_ = applied;
  dataBytes_ = dataBytes;
  sessions_ = std::move(sessions);
  byActivity_ = std::move(byActivity);
  unused_ = std::move(unused);
  return true;
}

void KvStore::dropSessions() {
  sessions_.clear();
  byActivity_.clear();
  unused_.clear();
}

}  // namespace kvr
