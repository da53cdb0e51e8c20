// Client commands and replies of the KV state machine, and their byte encoding inside
// log entries. The encoding is ours (not Cap'n Proto) because core/ may not depend on
// capnp; it is versioned, bounded and fully checked on decode.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <kj/common.h>

#include "core/types.h"

namespace kvr {

enum class OpType : uint8_t {
  Put = 0,
  Get = 1,
  Delete = 2,
  Cas = 3,          // compare-and-swap: expected value, or expected absence
  Range = 4,        // ordered scan [key, rangeEnd) with a limit; rangeEnd "" = to the end
  OpenSession = 5,  // registers a client; the reply's clientId is the entry's log index
};

enum class ReadMode : uint8_t {
  Linearizable = 0,  // ReadIndex
  Stale = 1,         // local state, only when the client asks for it
};

enum class Status : uint8_t {
  Ok = 0,
  NotFound = 1,        // get/delete of an absent key
  CasMismatch = 2,     // cas: current value differs from the expectation
  NotLeader = 3,       // retry at Reply::leaderHint (0 = unknown)
  Timeout = 4,         // the outcome is unknown; retry with the same request id
  TooLarge = 5,        // key, value, batch or reply over its limit
  SessionExpired = 6,  // the client's session was evicted or never opened
  Busy = 7,            // back-pressure: queue full, or its oldest waited too long
  Invalid = 8,         // malformed request
  StaleRequest = 9,    // a request id older than the session's last one
  ShuttingDown = 10,
  TransferInProgress = 11,  // leadership transfer under way; retry shortly
};

const char* statusName(Status s);

struct KvCommand {
  OpType op = OpType::Get;
  uint64_t clientId = 0;   // writes: session id from OpenSession
  uint64_t requestId = 0;  // writes: strictly increasing per client, from 1
  std::string key;
  std::string value;          // put / cas new value
  std::string expected;       // cas expected value
  bool expectAbsent = false;  // cas: succeed only if key is absent
  std::string rangeEnd;       // range: exclusive end; empty = unbounded
  uint32_t limit = 0;         // range: max pairs (0 = kMaxRangeLimit)

  bool isWrite() const { return op != OpType::Get && op != OpType::Range; }
  bool operator==(const KvCommand&) const = default;
};

struct KvReply {
  Status status = Status::Ok;
  std::string value;  // get: the value; cas mismatch: the current value (if any)
  std::vector<std::pair<std::string, std::string>> kvs;  // range
  bool more = false;                                     // range: stopped at the limit
  uint64_t clientId = 0;                                 // OpenSession: the new session id
  NodeId leaderHint = kNoNode;
  Index index = 0;  // log index at which a write applied / a read was served

  bool operator==(const KvReply&) const = default;
};

// Checks sizes and shape where a request enters. Returns Ok or TooLarge/Invalid with a
// human-readable reason in *why.
Status validate(const KvCommand& cmd, std::string* why);

// Entry payload encoding. decode returns false (and leaves *out unspecified) on any
// malformed, truncated, oversized or trailing input; it never reads out of bounds.
std::string encodeCommand(const KvCommand& cmd);
// The same into *into (cleared first): a caller that encodes many commands reuses one
// buffer's capacity instead of allocating a string per command.
void encodeCommand(const KvCommand& cmd, std::string* into);
bool decodeCommand(std::string_view bytes, KvCommand* out);

// The same for replies (sessions save the last reply in snapshots).
std::string encodeReply(const KvReply& reply);
bool decodeReply(std::string_view bytes, KvReply* out);

}  // namespace kvr
