// The KV state machine: data, exactly-once client sessions, snapshots and digests.
//
// Snapshot format (varints are shortest-form LEB128, strings are length-prefixed):
//   "KVS" u8 version=1, appliedIndex,
//   pairCount, (key, value)*            keys strictly ascending
//   sessionCount, (clientId, lastRequestId, lastActive, encodeReply(lastReply))*
//                                       client ids strictly ascending
//   u64 little-endian FNV-1a of every byte before it
// The digest is the same FNV-1a over the same body, without building the string.
#include "core/kv.h"

#include <kj/debug.h>

#include "core/limits.h"

namespace kvr {

namespace {

constexpr char kSnapshotMagic[4] = {'K', 'V', 'S', 1};
constexpr size_t kChecksumBytes = 8;

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;

struct StringSink {
  std::string out;
  void write(const char* p, size_t n) { out.append(p, n); }
};

struct HashSink {
  uint64_t hash = kFnvOffset;
  void write(const char* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      hash ^= static_cast<uint8_t>(p[i]);
      hash *= kFnvPrime;
    }
  }
};

template <typename Sink>
void writeVarint(Sink& sink, uint64_t v) {
  char buf[10];
  size_t n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  sink.write(buf, n);
}

template <typename Sink>
void writeBytes(Sink& sink, std::string_view s) {
  writeVarint(sink, s.size());
  sink.write(s.data(), s.size());
}

// Bounds-checked reader for the snapshot body (the same rules as the command codec:
// shortest-form varints only, lengths checked before any allocation).
class SnapshotReader {
 public:
  explicit SnapshotReader(std::string_view bytes) : bytes_(bytes) {}

  bool done() const { return pos_ == bytes_.size(); }

  bool expect(std::string_view prefix) {
    if (bytes_.substr(pos_, prefix.size()) != prefix) return false;
    pos_ += prefix.size();
    return true;
  }

  bool varint(uint64_t* out) {
    uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      if (pos_ >= bytes_.size()) return false;
      const uint8_t b = static_cast<uint8_t>(bytes_[pos_++]);
      if (i == 9 && b > 1) return false;
      v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if ((b & 0x80) == 0) {
        if (i > 0 && b == 0) return false;
        *out = v;
        return true;
      }
    }
    return false;
  }

  // Returns a view into the input; the caller copies only what it keeps.
  bool bytes(std::string_view* out) {
    uint64_t n;
    if (!varint(&n) || n > bytes_.size() - pos_) return false;
    *out = bytes_.substr(pos_, n);
    pos_ += n;
    return true;
  }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

uint64_t fnv1a(std::string_view bytes) {
  HashSink sink;
  sink.write(bytes.data(), bytes.size());
  return sink.hash;
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
  if (!cmd.isWrite()) {
    // Reads never enter the log; one that does is a proposer bug, answered, not applied.
    reply.status = Status::Invalid;
    return reply;
  }
  // Validated at the leader already; re-checked so a bad entry cannot corrupt state.
  const Status valid = validate(cmd, nullptr);
  if (valid != Status::Ok) {
    reply.status = valid;
    return reply;
  }
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
  if (cmd.requestId == session.lastRequestId) return session.lastReply;
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
  if (cmd.op != OpType::Get && cmd.op != OpType::Range) {
    reply.status = Status::Invalid;
    return reply;
  }
  const Status valid = validate(cmd, nullptr);
  if (valid != Status::Ok) {
    reply.status = valid;
    return reply;
  }

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

template <typename Sink>
void KvStore::writeState(Sink& sink) const {
  sink.write(kSnapshotMagic, sizeof(kSnapshotMagic));
  writeVarint(sink, applied_);
  writeVarint(sink, data_.size());
  for (const auto& [key, value] : data_) {
    writeBytes(sink, key);
    writeBytes(sink, value);
  }
  writeVarint(sink, sessions_.size());
  for (const auto& [clientId, session] : sessions_) {
    writeVarint(sink, clientId);
    writeVarint(sink, session.lastRequestId);
    writeVarint(sink, session.lastActive);
    writeBytes(sink, encodeReply(session.lastReply));
  }
}

std::string KvStore::snapshot() const {
  StringSink sink;
  writeState(sink);
  uint64_t sum = fnv1a(sink.out);
  for (size_t i = 0; i < kChecksumBytes; ++i) {
    sink.out.push_back(static_cast<char>(sum & 0xff));
    sum >>= 8;
  }
  return std::move(sink.out);
}

uint64_t KvStore::digest() const {
  HashSink sink;
  writeState(sink);
  return sink.hash;
}

bool KvStore::restore(std::string_view bytes) {
  if (bytes.size() < kChecksumBytes || bytes.size() > limits::kMaxSnapshotBytes) return false;
  const std::string_view body = bytes.substr(0, bytes.size() - kChecksumBytes);
  uint64_t sum = 0;
  for (size_t i = 0; i < kChecksumBytes; ++i) {
    sum |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[body.size() + i])) << (8 * i);
  }
  if (sum != fnv1a(body)) return false;

  // Everything is decoded into fresh containers and swapped in only when all of it
  // checks out, so a bad snapshot leaves this store as it was.
  SnapshotReader in(body);
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

}  // namespace kvr
