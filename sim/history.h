// The client history: every operation a client invoked, when, and what came back.
// The simulator (and the real-cluster tests) record it; the linearizability checker
// (sim/linearizability.h) judges it. It can be written as JSON lines and read back, so a
// failing run's history can be replayed through the checker on its own.
//
// Every operation touches exactly one key. Result conventions, by op and outcome:
//
//   outcome Ok (completed with a definite result):
//     put(k, v)                 output "ok"                          found = false
//     get(k)                    output = the value read              found = true
//                               output "not_found"                   found = false
//     delete(k)                 output "ok"        (the key existed) found = true
//                               output "not_found" (it did not)      found = false
//     cas(k, expected|absent, v) output "ok"       (swapped)         found = false
//                               output "mismatch" (left unchanged)   found = false
//   outcome Fail: definitely not applied (e.g. rejected: not leader, too large, busy).
//     output = a free-text reason, found = false. The checker ignores the op.
//   outcome Unknown: no definite answer (timed out, connection lost, run ended first).
//     complete_ns is absent; output = a free-text reason (may be empty), found = false.
//     The op may have taken effect at any time after its invoke, or never.
//
// For get, `found` (not the output text) says whether a value was read, so a stored
// value that happens to be the text "not_found" is still recorded faithfully.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvr::sim {

// Far above any run we make; keeps a runaway recorder from eating all memory.
constexpr size_t kMaxHistoryOps = size_t(1) << 24;

enum class OpKind : uint8_t { Put = 0, Get = 1, Delete = 2, Cas = 3 };
enum class Outcome : uint8_t { Ok = 0, Fail = 1, Unknown = 2 };

const char* opKindName(OpKind k);    // "put" | "get" | "delete" | "cas"
const char* outcomeName(Outcome o);  // "ok" | "fail" | "unknown"

// Output texts of definite results (see the table above).
inline constexpr std::string_view kOutputOk = "ok";
inline constexpr std::string_view kOutputNotFound = "not_found";
inline constexpr std::string_view kOutputMismatch = "mismatch";

struct Operation {
  uint32_t client = 0;
  OpKind op = OpKind::Get;
  std::string key;
  std::string value;          // put / cas: the new value; empty otherwise
  std::string expected;       // cas: the expected value when !expectAbsent; empty otherwise
  bool expectAbsent = false;  // cas: succeed only if the key is absent
  uint64_t invokeNs = 0;
  std::optional<uint64_t> completeNs;  // set for Ok and Fail, absent for Unknown
  Outcome outcome = Outcome::Unknown;
  std::string output;
  bool found = false;

  bool operator==(const Operation&) const = default;
};

// Checks that an operation follows the conventions above (times ordered, outputs of
// the right shape for its op and outcome). On failure, says why in *why.
bool validateOperation(const Operation& op, std::string* why);

// One-line human-readable form, e.g. `c3 cas(k, "a"->"b") [100, 250] ok: mismatch`.
std::string describeOperation(const Operation& op);

class History {
 public:
  using OpId = uint64_t;  // index into ops()

  // Records an invocation; the op stays Unknown until completed or failed.
  OpId invoke(uint32_t client, OpKind op, std::string key, std::string value,
              std::string expected, bool expectAbsent, uint64_t nowNs);
  OpId invokePut(uint32_t client, std::string key, std::string value, uint64_t nowNs);
  OpId invokeGet(uint32_t client, std::string key, uint64_t nowNs);
  OpId invokeDelete(uint32_t client, std::string key, uint64_t nowNs);
  // expected = nullopt means "succeed only if absent".
  OpId invokeCas(uint32_t client, std::string key, std::optional<std::string> expected,
                 std::string newValue, uint64_t nowNs);

  // Definite results. Each op is settled at most once (complete, fail or giveUp).
  void completePut(OpId id, uint64_t nowNs);
  void completeGet(OpId id, uint64_t nowNs, std::optional<std::string> value);
  void completeDelete(OpId id, uint64_t nowNs, bool existed);
  void completeCas(OpId id, uint64_t nowNs, bool swapped);
  // Definitely not applied.
  void fail(OpId id, uint64_t nowNs, std::string reason);
  // The client stopped waiting: the outcome stays Unknown, with the reason recorded.
  // Ops never settled at all are Unknown too.
  void giveUp(OpId id, std::string reason);

  // Appends an already-settled operation (used by the parser and by tests).
  // Requires validateOperation to pass.
  OpId append(Operation op);

  const std::vector<Operation>& ops() const { return ops_; }
  const Operation& op(OpId id) const;
  size_t size() const { return ops_.size(); }
  bool isSettled(OpId id) const;

 private:
  Operation& settle(OpId id, uint64_t nowNs, Outcome outcome, std::string output, bool found);

  std::vector<Operation> ops_;
  std::vector<bool> settled_;
};

// JSON lines: exactly one object per operation, in id order, each ending in '\n':
//   {"client":N,"op":"put|get|delete|cas","key":"…","value":"…","expected":"…"|null,
//    "invoke_ns":N,"complete_ns":N|null,"outcome":"ok|fail|unknown","output":"…",
//    "found":true|false}
// "expected" is null for a cas that expects absence. Strings are byte strings: '"', '\\'
// and common controls use their short escapes; every other byte below 0x20 or above
// 0x7e is written as \u00XX (the code point equal to the byte), so any bytes round-trip
// and the file is plain ASCII.
std::string toJsonLine(const Operation& op);  // includes the trailing '\n'
std::string toJsonLines(const History& history);

// Parses the format above (keys in any order; "value", "expected", "complete_ns",
// "output" and "found" may be omitted; blank lines are skipped). \uXXXX escapes must
// stay within 0..0xFF (bytes, as written above). On error returns false and sets *error
// to "line N: what is wrong"; *out is then unspecified.
bool parseJsonLines(std::string_view text, History* out, std::string* error);

}  // namespace kvr::sim
