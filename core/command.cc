// Validation and the byte encoding of KV commands and replies.
//
// Wire format (all integers are LEB128 varints in their shortest form, strings are a
// varint length followed by the bytes):
//   command: u8 version=1, u8 op, clientId, requestId, key, value, expected,
//            u8 flags (bit 0 = expectAbsent), rangeEnd, limit
//   reply:   u8 version=1, u8 status, value, pairCount, (key, value)*, u8 flags
//            (bit 0 = more), clientId, leaderHint, index
// Every field is always present, so there is exactly one encoding per value: decode
// rejects overlong varints, unknown flag bits and trailing bytes, which makes
// encode(decode(bytes)) == bytes for every accepted input.
#include "core/command.h"

#include "core/limits.h"
#include "core/wire.h"

namespace kvr {

using wire::putBytes;
using wire::putVarint;

namespace {

constexpr uint8_t kCommandVersion = 1;
constexpr uint8_t kReplyVersion = 1;
constexpr uint8_t kLastOp = static_cast<uint8_t>(OpType::OpenSession);
constexpr uint8_t kLastStatus = static_cast<uint8_t>(Status::TransferInProgress);

// A range reply holds at most kMaxRangeReplyBytes of keys and values in at most
// kMaxRangeLimit pairs; each pair adds two length prefixes (at most 5 bytes each).
// A get or cas reply holds one value. Add room for the fixed fields.
constexpr size_t kMaxReplyBytes = limits::kMaxRangeReplyBytes + limits::kMaxValueBytes +
                                  limits::kMaxRangeLimit * 10 + 256;

std::string sizeReason(const char* what, size_t size, size_t limit) {
  return std::string(what) + " is " + std::to_string(size) + " bytes; the limit is " +
         std::to_string(limit);
}

Status fail(Status status, std::string reason, std::string* why) {
  if (why != nullptr) *why = std::move(reason);
  return status;
}

}  // namespace

const char* statusName(Status s) {
  switch (s) {
    case Status::Ok: return "ok";
    case Status::NotFound: return "not_found";
    case Status::CasMismatch: return "cas_mismatch";
    case Status::NotLeader: return "not_leader";
    case Status::Timeout: return "timeout";
    case Status::TooLarge: return "too_large";
    case Status::SessionExpired: return "session_expired";
    case Status::Busy: return "busy";
    case Status::Invalid: return "invalid";
    case Status::StaleRequest: return "stale_request";
    case Status::ShuttingDown: return "shutting_down";
    case Status::TransferInProgress: return "transfer_in_progress";
  }
  return "unknown_status";
}

Status validate(const KvCommand& cmd, std::string* why) {
  if (static_cast<uint8_t>(cmd.op) > kLastOp) {
    return fail(Status::Invalid,
                "unknown operation " + std::to_string(static_cast<unsigned>(cmd.op)), why);
  }
  // Sizes first: every string is bounded whatever the operation, so that any command
  // that passes here also fits in kMaxCommandBytes once encoded.
  if (cmd.key.size() > limits::kMaxKeyBytes) {
    return fail(Status::TooLarge, sizeReason("key", cmd.key.size(), limits::kMaxKeyBytes), why);
  }
  if (cmd.rangeEnd.size() > limits::kMaxKeyBytes) {
    return fail(Status::TooLarge,
                sizeReason("range end", cmd.rangeEnd.size(), limits::kMaxKeyBytes), why);
  }
  if (cmd.value.size() > limits::kMaxValueBytes) {
    return fail(Status::TooLarge, sizeReason("value", cmd.value.size(), limits::kMaxValueBytes),
                why);
  }
  if (cmd.expected.size() > limits::kMaxValueBytes) {
    return fail(Status::TooLarge,
                sizeReason("expected value", cmd.expected.size(), limits::kMaxValueBytes), why);
  }
  if (cmd.op == OpType::OpenSession) return Status::Ok;

  // A range may start at the very first key; every other operation names one key.
  if (cmd.key.empty() && cmd.op != OpType::Range) {
    return fail(Status::Invalid, "key is empty", why);
  }
  if (cmd.op == OpType::Range) {
    if (cmd.limit > limits::kMaxRangeLimit) {
      return fail(Status::Invalid,
                  "range limit is " + std::to_string(cmd.limit) + "; the maximum is " +
                      std::to_string(limits::kMaxRangeLimit),
                  why);
    }
    if (!cmd.rangeEnd.empty() && cmd.rangeEnd <= cmd.key) {
      return fail(Status::Invalid, "range end must be greater than the start key", why);
    }
  }
  if (cmd.isWrite()) {
    if (cmd.clientId == 0) {
      return fail(Status::Invalid, "a write needs a client id (open a session first)", why);
    }
    if (cmd.requestId == 0) {
      return fail(Status::Invalid, "a write needs a request id (they start at 1)", why);
    }
  }
  return Status::Ok;
}

std::string encodeCommand(const KvCommand& cmd) {
  std::string out;
  encodeCommand(cmd, &out);
  return out;
}

void encodeCommand(const KvCommand& cmd, std::string* into) {
  std::string& out = *into;
  out.clear();
  out.reserve(32 + cmd.key.size() + cmd.value.size() + cmd.expected.size() +
              cmd.rangeEnd.size());
  wire::putU8(out, kCommandVersion);
  wire::putU8(out, static_cast<uint8_t>(cmd.op));
  putVarint(out, cmd.clientId);
  putVarint(out, cmd.requestId);
  putBytes(out, cmd.key);
  putBytes(out, cmd.value);
  putBytes(out, cmd.expected);
  wire::putU8(out, cmd.expectAbsent ? 1 : 0);
  putBytes(out, cmd.rangeEnd);
  putVarint(out, cmd.limit);
}

bool decodeCommand(std::string_view bytes, KvCommand* out) {
  if (bytes.size() > limits::kMaxCommandBytes) return false;
  wire::Reader in(bytes);
  uint8_t version, op;
  if (!in.u8(&version) || version != kCommandVersion) return false;
  if (!in.u8(&op) || op > kLastOp) return false;
  out->op = static_cast<OpType>(op);
  return in.varint(&out->clientId) && in.varint(&out->requestId) && in.bytes(&out->key) &&
         in.bytes(&out->value) && in.bytes(&out->expected) && in.flag(&out->expectAbsent) &&
         in.bytes(&out->rangeEnd) && in.varint32(&out->limit) && in.done();
}

std::string encodeReply(const KvReply& reply) {
  std::string out;
  wire::putU8(out, kReplyVersion);
  wire::putU8(out, static_cast<uint8_t>(reply.status));
  putBytes(out, reply.value);
  putVarint(out, reply.kvs.size());
  for (const auto& [key, value] : reply.kvs) {
    putBytes(out, key);
    putBytes(out, value);
  }
  wire::putU8(out, reply.more ? 1 : 0);
  putVarint(out, reply.clientId);
  putVarint(out, reply.leaderHint);
  putVarint(out, reply.index);
  return out;
}

bool decodeReply(std::string_view bytes, KvReply* out) {
  if (bytes.size() > kMaxReplyBytes) return false;
  wire::Reader in(bytes);
  uint8_t version, status;
  if (!in.u8(&version) || version != kReplyVersion) return false;
  if (!in.u8(&status) || status > kLastStatus) return false;
  out->status = static_cast<Status>(status);
  uint64_t pairs;
  if (!in.bytes(&out->value) || !in.varint(&pairs) || pairs > limits::kMaxRangeLimit) {
    return false;
  }
  out->kvs.clear();
  for (uint64_t i = 0; i < pairs; ++i) {
    std::string key, value;
    if (!in.bytes(&key) || !in.bytes(&value)) return false;
    out->kvs.emplace_back(std::move(key), std::move(value));
  }
  return in.flag(&out->more) && in.varint(&out->clientId) && in.varint32(&out->leaderHint) &&
         in.varint(&out->index) && in.done();
}

}  // namespace kvr
