// Helpers shared by the KV tests: command builders and rapidcheck generators.
#pragma once

#include <rapidcheck.h>

#include <ostream>
#include <string>
#include <vector>

#include "core/command.h"
#include "core/hash.h"
#include "core/kv.h"
#include "core/wire.h"

namespace kvr {

// Readable gtest output for failed comparisons.
inline void PrintTo(const KvReply& r, std::ostream* os) {
  *os << "{" << statusName(r.status) << " value=\"" << r.value << "\" kvs=" << r.kvs.size()
      << (r.more ? " more" : "") << " clientId=" << r.clientId << " index=" << r.index << "}";
}

}  // namespace kvr

namespace kvr::test {

inline KvCommand put(uint64_t client, uint64_t request, std::string key, std::string value) {
  KvCommand c;
  c.op = OpType::Put;
  c.clientId = client;
  c.requestId = request;
  c.key = std::move(key);
  c.value = std::move(value);
  return c;
}

inline KvCommand del(uint64_t client, uint64_t request, std::string key) {
  KvCommand c;
  c.op = OpType::Delete;
  c.clientId = client;
  c.requestId = request;
  c.key = std::move(key);
  return c;
}

inline KvCommand cas(uint64_t client, uint64_t request, std::string key, std::string expected,
                     std::string value) {
  KvCommand c;
  c.op = OpType::Cas;
  c.clientId = client;
  c.requestId = request;
  c.key = std::move(key);
  c.expected = std::move(expected);
  c.value = std::move(value);
  return c;
}

inline KvCommand casAbsent(uint64_t client, uint64_t request, std::string key,
                           std::string value) {
  KvCommand c = cas(client, request, std::move(key), "", std::move(value));
  c.expectAbsent = true;
  return c;
}

inline KvCommand get(std::string key) {
  KvCommand c;
  c.op = OpType::Get;
  c.key = std::move(key);
  return c;
}

inline KvCommand range(std::string start, std::string end, uint32_t limit = 0) {
  KvCommand c;
  c.op = OpType::Range;
  c.key = std::move(start);
  c.rangeEnd = std::move(end);
  c.limit = limit;
  return c;
}

inline KvCommand openSession() {
  KvCommand c;
  c.op = OpType::OpenSession;
  return c;
}

// The snapshot trailer is the little-endian hash64 of the body. Tests that want to reach
// the body's validation (not just the checksum) recompute it after a mutation.
inline std::string reseal(std::string snapshot) {
  if (snapshot.size() < 8) return snapshot;
  snapshot.resize(snapshot.size() - 8);
  wire::putFixed64(snapshot, hash64(snapshot));
  return snapshot;
}

// Any command at all, including invalid ones: for the codec.
inline rc::Gen<KvCommand> anyCommand() {
  return rc::gen::build<KvCommand>(
      rc::gen::set(&KvCommand::op, rc::gen::cast<OpType>(rc::gen::inRange<uint8_t>(0, 6))),
      rc::gen::set(&KvCommand::clientId, rc::gen::arbitrary<uint64_t>()),
      rc::gen::set(&KvCommand::requestId, rc::gen::arbitrary<uint64_t>()),
      rc::gen::set(&KvCommand::key, rc::gen::arbitrary<std::string>()),
      rc::gen::set(&KvCommand::value, rc::gen::arbitrary<std::string>()),
      rc::gen::set(&KvCommand::expected, rc::gen::arbitrary<std::string>()),
      rc::gen::set(&KvCommand::expectAbsent, rc::gen::arbitrary<bool>()),
      rc::gen::set(&KvCommand::rangeEnd, rc::gen::arbitrary<std::string>()),
      rc::gen::set(&KvCommand::limit, rc::gen::arbitrary<uint32_t>()));
}

inline rc::Gen<KvReply> anyReply() {
  return rc::gen::build<KvReply>(
      rc::gen::set(&KvReply::status, rc::gen::cast<Status>(rc::gen::inRange<uint8_t>(0, 12))),
      rc::gen::set(&KvReply::value, rc::gen::arbitrary<std::string>()),
      rc::gen::set(&KvReply::kvs,
                   rc::gen::container<std::vector<std::pair<std::string, std::string>>>(
                       rc::gen::pair(rc::gen::arbitrary<std::string>(),
                                     rc::gen::arbitrary<std::string>()))),
      rc::gen::set(&KvReply::more, rc::gen::arbitrary<bool>()),
      rc::gen::set(&KvReply::clientId, rc::gen::arbitrary<uint64_t>()),
      rc::gen::set(&KvReply::leaderHint, rc::gen::arbitrary<uint32_t>()),
      rc::gen::set(&KvReply::index, rc::gen::arbitrary<uint64_t>()));
}

// A small key space so that operations collide.
inline rc::Gen<std::string> smallKey() {
  return rc::gen::elementOf(std::vector<std::string>{"a", "ab", "b", "c", "cd", "d", "e"});
}

inline rc::Gen<std::string> smallValue() {
  return rc::gen::elementOf(std::vector<std::string>{"", "1", "2", "33", "x"});
}

// One step of a client workload, written in terms of "the n-th opened session" and
// "the client's next request id, offset by delta" so that the same steps make sense
// whatever the log indexes turn out to be. materialize() turns steps into commands.
struct Step {
  enum Kind : uint8_t { Open, Noop, Write } kind = Write;
  uint8_t session = 0;  // which opened session (mod count); 7 = a bogus client id
  int8_t delta = 1;     // request id = last + delta: 1 new, 0 retry, -1 stale
  KvCommand cmd;        // op, key, value, expected, expectAbsent
};

inline rc::Gen<Step> anyStep() {
  return rc::gen::build<Step>(
      rc::gen::set(&Step::kind, rc::gen::weightedElement<Step::Kind>(
                                    {{2, Step::Open}, {1, Step::Noop}, {12, Step::Write}})),
      rc::gen::set(&Step::session, rc::gen::inRange<uint8_t>(0, 8)),
      rc::gen::set(&Step::delta, rc::gen::weightedElement<int8_t>({{6, 1}, {2, 0}, {1, -1}})),
      rc::gen::set(&Step::cmd,
                   rc::gen::build<KvCommand>(
                       rc::gen::set(&KvCommand::op,
                                    rc::gen::elementOf(std::vector<OpType>{
                                        OpType::Put, OpType::Delete, OpType::Cas})),
                       rc::gen::set(&KvCommand::key, smallKey()),
                       rc::gen::set(&KvCommand::value, smallValue()),
                       rc::gen::set(&KvCommand::expected, smallValue()),
                       rc::gen::set(&KvCommand::expectAbsent, rc::gen::arbitrary<bool>()))));
}

// A log entry: a command at an index, or a no-op (skip).
struct LogEntry {
  Index index = 0;
  bool noop = false;
  KvCommand cmd;
};

inline std::vector<LogEntry> materialize(const std::vector<Step>& steps) {
  std::vector<LogEntry> log;
  std::vector<uint64_t> opened;      // session ids in opening order
  std::vector<uint64_t> lastIssued;  // per opened session
  Index index = 0;
  for (const Step& step : steps) {
    LogEntry e;
    e.index = ++index;
    if (step.kind == Step::Noop) {
      e.noop = true;
    } else if (step.kind == Step::Open || opened.empty()) {
      e.cmd = openSession();
      opened.push_back(e.index);
      lastIssued.push_back(0);
    } else {
      e.cmd = step.cmd;
      if (step.session == 7) {
        e.cmd.clientId = 1'000'000 + index;  // never opened
        e.cmd.requestId = 1;
      } else {
        size_t which = step.session % opened.size();
        e.cmd.clientId = opened[which];
        uint64_t next = lastIssued[which] + static_cast<uint64_t>(int64_t{step.delta});
        if (next == 0) next = 1;
        e.cmd.requestId = next;
        if (next > lastIssued[which]) lastIssued[which] = next;
      }
    }
    log.push_back(std::move(e));
  }
  return log;
}

inline KvReply applyEntry(KvStore& store, const LogEntry& e) {
  if (e.noop) {
    store.skip(e.index);
    return KvReply{};
  }
  return store.apply(e.index, e.cmd);
}

}  // namespace kvr::test
