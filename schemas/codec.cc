#include "schemas/codec.h"

#include <cstring>
#include <exception>
#include <utility>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/debug.h>
#include <kj/exception.h>

#include "core/limits.h"
#include "core/membership.h"

namespace kvr::codec {
namespace {

constexpr uint16_t kEntryKindCount = 3;  // EntryKind::Noop, Command, Config
constexpr uint16_t kOpTypeCount = 6;     // OpType::Put .. OpType::OpenSession
constexpr uint16_t kStatusCount = 12;    // Status::Ok .. Status::TransferInProgress

template <typename... Params>
bool fail(std::string* error, Params&&... params) {
  if (error != nullptr) *error = kj::str(kj::fwd<Params>(params)...).cStr();
  return false;
}

// Runs a decoding step, turning any exception Cap'n Proto throws on malformed input into
// an error string: decoding untrusted bytes must never throw out of this file.
template <typename Fn>
bool guarded(const char* what, std::string* error, Fn&& fn) {
  try {
    return fn();
  } catch (const kj::Exception& e) {
    return fail(error, "malformed ", what, ": ", e.getDescription());
  } catch (const std::exception& e) {
    return fail(error, "malformed ", what, ": ", e.what());
  }
}

kj::ArrayPtr<const kj::byte> bytesOf(std::string_view s) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

std::string_view viewOf(capnp::Data::Reader d) {
  return std::string_view(reinterpret_cast<const char*>(d.begin()), d.size());
}

std::string stringOf(capnp::Data::Reader d) { return std::string(viewOf(d)); }

bool validNode(uint32_t id) { return id >= 1 && id <= limits::kMaxNodes; }

std::string wordsToString(kj::ArrayPtr<const capnp::word> words) {
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

// Parses one whole message from `bytes` and hands its root to `fn`. Checks the size
// bound, alignment of the length, and that nothing trails the message.
template <typename Root, typename Fn>
bool readBytes(std::string_view bytes, const char* what, std::string* error, Fn&& fn) {
  if (bytes.size() > limits::kMaxMessageBytes) {
    return fail(error, what, " of ", bytes.size(), " bytes exceeds the limit of ",
                limits::kMaxMessageBytes, " bytes");
  }
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    return fail(error, what, " length ", bytes.size(), " is not a positive multiple of ",
                sizeof(capnp::word));
  }
  // Cap'n Proto reads words in place; copy unless the bytes are already word aligned.
  kj::Array<capnp::word> copy;
  kj::ArrayPtr<const capnp::word> words;
  if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(capnp::word) == 0) {
    words = kj::arrayPtr(reinterpret_cast<const capnp::word*>(bytes.data()),
                         bytes.size() / sizeof(capnp::word));
  } else {
    copy = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
    memcpy(copy.begin(), bytes.data(), bytes.size());
    words = copy;
  }
  return guarded(what, error, [&]() {
    capnp::FlatArrayMessageReader reader(words, readerOptions());
    if (reader.getEnd() != words.end()) {
      return fail(error, what, " has ", (words.end() - reader.getEnd()) * sizeof(capnp::word),
                  " trailing bytes after the message");
    }
    return fn(reader.getRoot<Root>());
  });
}

// The message body, unguarded: callers wrap it in guarded().
bool readMessageBody(schema::Message::Reader in, Message* out, std::string* error) {
  auto type = static_cast<uint16_t>(in.getType());
  if (type >= kMsgTypeCount) return fail(error, "unknown message type ", type);
  Message m;
  m.type = static_cast<MsgType>(type);
  m.term = in.getTerm();
  m.logTerm = in.getLogTerm();
  m.index = in.getIndex();
  m.commit = in.getCommit();
  m.heldByAll = in.getHeldByAll();
  m.reject = in.getReject();
  m.rejectHint = in.getRejectHint();
  m.context = in.getContext();

  // Each list is read exactly once: the traversal limit counts every read.
  size_t payloadBytes = 0;
  auto entries = in.getEntries();
  if (entries.size() > limits::kMaxEntriesPerAppend) {
    return fail(error, "message carries ", entries.size(), " entries, over the limit of ",
                limits::kMaxEntriesPerAppend);
  }
  if (entries.size() > 0 && m.type != MsgType::Append) {
    return fail(error, msgTypeName(m.type), " message carries ", entries.size(),
                " entries; only Append may");
  }
  m.entries.reserve(entries.size());
  Term prevTerm = m.logTerm;
  for (uint32_t i = 0; i < entries.size(); ++i) {
    auto e = entries[i];
    auto kind = static_cast<uint16_t>(e.getKind());
    if (kind >= kEntryKindCount) return fail(error, "entry ", i, " has unknown kind ", kind);
    // Entries of an Append follow the previous entry (m.index) without gaps, and a
    // valid log never goes back in term nor holds a term beyond the leader's.
    if (m.index > UINT64_MAX - 1 - i || e.getIndex() != m.index + 1 + i) {
      return fail(error, "entry ", i, " has index ", e.getIndex(), ", expected previous index ",
                  m.index, " + ", i + 1);
    }
    if (e.getTerm() < prevTerm || e.getTerm() > m.term) {
      return fail(error, "entry ", i, " has term ", e.getTerm(), ", outside [", prevTerm, ", ",
                  m.term, "]");
    }
    prevTerm = e.getTerm();
    auto data = e.getData();
    if (data.size() > limits::kMaxCommandBytes) {
      return fail(error, "entry ", i, " data of ", data.size(), " bytes exceeds the limit of ",
                  limits::kMaxCommandBytes);
    }
    payloadBytes += data.size();
    m.entries.push_back(Entry{e.getTerm(), e.getIndex(), static_cast<EntryKind>(kind),
                              SharedBytes(viewOf(data))});
  }

  auto snap = in.getSnap();
  m.snap.index = snap.getIndex();
  m.snap.term = snap.getTerm();
  auto voters = snap.getVoters();
  if (voters.size() > limits::kMaxNodes) {
    return fail(error, "snapshot configuration has ", voters.size(),
                " voters, over the limit of ", limits::kMaxNodes);
  }
  for (uint32_t i = 0; i < voters.size(); ++i) {
    NodeId v = voters[i];
    if (!validNode(v)) return fail(error, "snapshot voter ", v, " is not a valid node id");
    if (!m.snap.conf.voters.empty() && v <= m.snap.conf.voters.back()) {
      return fail(error, "snapshot voters are not sorted and unique at voter ", v);
    }
    m.snap.conf.voters.push_back(v);
  }
  if (snap.hasConf()) {
    auto confBytes = snap.getConf();
    ConfState full;
    if (confBytes.size() > limits::kMaxConfBytes || !decodeConf(stringOf(confBytes), &full) ||
        full.voters != m.snap.conf.voters) {
      return fail(error, "snapshot configuration is malformed or disagrees with its voters");
    }
    m.snap.conf = std::move(full);
  }

  m.snapOffset = in.getSnapOffset();
  m.snapSize = in.getSnapSize();
  m.snapDone = in.getSnapDone();
  if (m.snapSize > limits::kMaxSnapshotBytes || m.snapOffset > limits::kMaxSnapshotBytes) {
    return fail(error, "snapshot offset ", m.snapOffset, " or size ", m.snapSize,
                " exceeds the limit of ", limits::kMaxSnapshotBytes, " bytes");
  }
  auto chunk = in.getSnapChunk();
  if (chunk.size() > limits::kMaxSnapshotChunkBytes) {
    return fail(error, "snapshot chunk of ", chunk.size(), " bytes exceeds the limit of ",
                limits::kMaxSnapshotChunkBytes);
  }
  if (chunk.size() > 0 && m.type != MsgType::Snapshot) {
    return fail(error, msgTypeName(m.type), " message carries a snapshot chunk");
  }
  if (m.type == MsgType::Snapshot && m.snapOffset + chunk.size() > m.snapSize) {
    return fail(error, "snapshot chunk [", m.snapOffset, ", ", m.snapOffset + chunk.size(),
                ") runs past the snapshot size ", m.snapSize);
  }
  payloadBytes += chunk.size();
  if (payloadBytes > limits::kMaxMessageBytes) {
    return fail(error, "message payload of ", payloadBytes, " bytes exceeds the limit of ",
                limits::kMaxMessageBytes);
  }
  m.snapChunk = stringOf(chunk);

  m.from = out->from;
  m.to = out->to;
  *out = std::move(m);
  return true;
}

bool readEnvelope(schema::PeerEnvelope::Reader in, Message* out, std::string* error) {
  NodeId from = in.getFrom();
  NodeId to = in.getTo();
  if (!validNode(from)) return fail(error, "envelope sender ", from, " is not a valid node id");
  if (!validNode(to)) return fail(error, "envelope receiver ", to, " is not a valid node id");
  if (!readMessageBody(in.getMessage(), out, error)) return false;
  out->from = from;
  out->to = to;
  return true;
}

bool readCommand(schema::Command::Reader in, KvCommand* out, std::string* error) {
  auto op = static_cast<uint16_t>(in.getOp());
  if (op >= kOpTypeCount) return fail(error, "unknown operation ", op);
  KvCommand c;
  c.op = static_cast<OpType>(op);
  c.clientId = in.getClientId();
  c.requestId = in.getRequestId();
  c.key = stringOf(in.getKey());
  c.value = stringOf(in.getValue());
  c.expected = stringOf(in.getExpected());
  c.expectAbsent = in.getExpectAbsent();
  c.rangeEnd = stringOf(in.getRangeEnd());
  c.limit = in.getLimit();
  *out = std::move(c);
  return true;
}

bool readReply(schema::Reply::Reader in, KvReply* out, std::string* error) {
  auto status = static_cast<uint16_t>(in.getStatus());
  if (status >= kStatusCount) return fail(error, "unknown status ", status);
  if (in.getLeaderHint() > limits::kMaxNodes) {
    return fail(error, "leader hint ", in.getLeaderHint(), " is not a node id");
  }
  KvReply r;
  r.status = static_cast<Status>(status);
  r.leaderHint = in.getLeaderHint();
  r.index = in.getIndex();
  r.value = stringOf(in.getValue());
  auto kvs = in.getKvs();
  if (kvs.size() > limits::kMaxRangeLimit) {
    return fail(error, "reply carries ", kvs.size(), " pairs, over the limit of ",
                limits::kMaxRangeLimit);
  }
  r.kvs.reserve(kvs.size());
  for (auto kv : kvs) r.kvs.emplace_back(stringOf(kv.getKey()), stringOf(kv.getValue()));
  r.more = in.getMore();
  r.clientId = in.getClientId();
  *out = std::move(r);
  return true;
}

const char* roleText(Role role) {
  switch (role) {
    case Role::Follower: return "follower";
    case Role::PreCandidate: return "precandidate";
    case Role::Candidate: return "candidate";
    case Role::Leader: return "leader";
  }
  return "unknown";
}

}  // namespace

capnp::ReaderOptions readerOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = limits::kMaxMessageBytes / sizeof(capnp::word);
  return options;
}

// ---- builders ----

void toCapnp(const Message& msg, schema::Message::Builder out) {
  KJ_REQUIRE(static_cast<uint8_t>(msg.type) < kMsgTypeCount, "unknown message type",
             static_cast<uint32_t>(msg.type));
  KJ_REQUIRE(msg.entries.size() <= limits::kMaxEntriesPerAppend,
             "too many entries in one message", msg.entries.size());
  KJ_REQUIRE(msg.snapChunk.size() <= limits::kMaxSnapshotChunkBytes,
             "snapshot chunk over its limit", msg.snapChunk.size());
  out.setType(static_cast<schema::MsgType>(msg.type));
  out.setTerm(msg.term);
  out.setLogTerm(msg.logTerm);
  out.setIndex(msg.index);
  out.setCommit(msg.commit);
  out.setHeldByAll(msg.heldByAll);
  out.setReject(msg.reject);
  out.setRejectHint(msg.rejectHint);
  out.setContext(msg.context);
  if (!msg.entries.empty()) {
    auto entries = out.initEntries(msg.entries.size());
    for (size_t i = 0; i < msg.entries.size(); ++i) {
      const Entry& e = msg.entries[i];
      auto b = entries[i];
      b.setTerm(e.term);
      b.setIndex(e.index);
      b.setKind(static_cast<schema::EntryKind>(e.kind));
      if (!e.data.empty()) b.setData(bytesOf(e.data));
    }
  }
  if (msg.snap != SnapshotMeta{}) {
    auto snap = out.initSnap();
    snap.setIndex(msg.snap.index);
    snap.setTerm(msg.snap.term);
    if (!msg.snap.conf.voters.empty()) {
      auto voters = snap.initVoters(msg.snap.conf.voters.size());
      for (size_t i = 0; i < msg.snap.conf.voters.size(); ++i) {
        voters.set(i, msg.snap.conf.voters[i]);
      }
    }
    if (!msg.snap.conf.learners.empty() || !msg.snap.conf.addrs.empty()) {
      snap.setConf(bytesOf(encodeConf(msg.snap.conf)));
    }
  }
  out.setSnapOffset(msg.snapOffset);
  out.setSnapSize(msg.snapSize);
  out.setSnapDone(msg.snapDone);
  if (!msg.snapChunk.empty()) out.setSnapChunk(bytesOf(msg.snapChunk));
}

void toCapnp(uint64_t clusterId, const Message& msg, schema::PeerEnvelope::Builder out) {
  out.setClusterId(clusterId);
  out.setFrom(msg.from);
  out.setTo(msg.to);
  toCapnp(msg, out.initMessage());
}

void toCapnp(const KvCommand& cmd, schema::Command::Builder out) {
  out.setOp(static_cast<schema::OpType>(cmd.op));
  out.setClientId(cmd.clientId);
  out.setRequestId(cmd.requestId);
  if (!cmd.key.empty()) out.setKey(bytesOf(cmd.key));
  if (!cmd.value.empty()) out.setValue(bytesOf(cmd.value));
  if (!cmd.expected.empty()) out.setExpected(bytesOf(cmd.expected));
  out.setExpectAbsent(cmd.expectAbsent);
  if (!cmd.rangeEnd.empty()) out.setRangeEnd(bytesOf(cmd.rangeEnd));
  out.setLimit(cmd.limit);
}

void toCapnp(const KvReply& reply, schema::Reply::Builder out) {
  out.setStatus(static_cast<schema::Status>(reply.status));
  out.setLeaderHint(reply.leaderHint);
  out.setIndex(reply.index);
  if (!reply.value.empty()) out.setValue(bytesOf(reply.value));
  if (!reply.kvs.empty()) {
    auto kvs = out.initKvs(reply.kvs.size());
    for (size_t i = 0; i < reply.kvs.size(); ++i) {
      if (!reply.kvs[i].first.empty()) kvs[i].setKey(bytesOf(reply.kvs[i].first));
      if (!reply.kvs[i].second.empty()) kvs[i].setValue(bytesOf(reply.kvs[i].second));
    }
  }
  out.setMore(reply.more);
  out.setClientId(reply.clientId);
}

void toCapnp(const ReplicaStatus& status, schema::NodeStatus::Builder out) {
  out.setId(status.id);
  out.setRole(roleText(status.role));
  out.setTerm(status.term);
  out.setLeader(status.leader);
  out.setCommit(status.commit);
  out.setApplied(status.applied);
  out.setLastIndex(status.lastIndex);
  out.setSnapshotIndex(status.snapshotIndex);
  out.setRecovering(status.recovering);
  out.setRecoverUntil(status.recoverUntil);
}

// ---- validating readers ----

bool fromCapnp(schema::Message::Reader in, Message* out, std::string* error) {
  return guarded("message", error, [&]() { return readMessageBody(in, out, error); });
}

bool fromCapnp(schema::PeerEnvelope::Reader in, uint64_t expectedClusterId, Message* out,
               std::string* error) {
  return guarded("envelope", error, [&]() {
    if (in.getClusterId() != expectedClusterId) {
      return fail(error, "envelope from cluster ", in.getClusterId(),
                  " rejected: this node belongs to cluster ", expectedClusterId);
    }
    return readEnvelope(in, out, error);
  });
}

bool fromCapnp(schema::Command::Reader in, KvCommand* out, std::string* error) {
  return guarded("command", error, [&]() { return readCommand(in, out, error); });
}

bool fromCapnp(schema::Reply::Reader in, KvReply* out, std::string* error) {
  return guarded("reply", error, [&]() { return readReply(in, out, error); });
}

// ---- throwing reader ----

KvCommand fromCapnp(schema::Command::Reader in) {
  KvCommand c;
  std::string error;
  KJ_REQUIRE(fromCapnp(in, &c, &error), "invalid KV command", error.c_str());
  return c;
}

// ---- envelopes and bytes ----

kj::Array<capnp::word> encodeEnvelope(uint64_t clusterId, const Message& msg) {
  capnp::MallocMessageBuilder builder;
  toCapnp(clusterId, msg, builder.initRoot<schema::PeerEnvelope>());
  auto words = capnp::messageToFlatArray(builder);
  KJ_REQUIRE(words.size() * sizeof(capnp::word) <= limits::kMaxMessageBytes,
             "encoded Raft message over the size limit", words.size() * sizeof(capnp::word),
             msgTypeName(msg.type));
  return words;
}

bool decodeEnvelope(kj::ArrayPtr<const capnp::word> words, uint64_t* clusterId, Message* out,
                    std::string* error) {
  auto bytes = words.asBytes();
  return readBytes<schema::PeerEnvelope>(
      std::string_view(reinterpret_cast<const char*>(bytes.begin()), bytes.size()), "envelope",
      error, [&](schema::PeerEnvelope::Reader in) {
        if (!readEnvelope(in, out, error)) return false;
        *clusterId = in.getClusterId();
        return true;
      });
}

std::string encodeMessageBytes(uint64_t clusterId, const Message& msg) {
  return wordsToString(encodeEnvelope(clusterId, msg));
}

bool decodeMessageBytes(std::string_view bytes, uint64_t expectedClusterId, Message* out,
                        std::string* error) {
  return readBytes<schema::PeerEnvelope>(
      bytes, "envelope", error, [&](schema::PeerEnvelope::Reader in) {
        if (in.getClusterId() != expectedClusterId) {
          return fail(error, "envelope from cluster ", in.getClusterId(),
                      " rejected: this node belongs to cluster ", expectedClusterId);
        }
        return readEnvelope(in, out, error);
      });
}

}  // namespace kvr::codec
