// rapidcheck generators of valid core values for the codec tests: every value generated
// here must be accepted by the decoder after encoding.
#pragma once

#include <rapidcheck.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/command.h"
#include "core/limits.h"
#include "core/types.h"

namespace kvr::test {

// Arbitrary bytes (all 256 values), length in [0, maxLen].
inline std::string genBytes(size_t maxLen) {
  auto len = *rc::gen::inRange<size_t>(0, maxLen + 1);
  return *rc::gen::container<std::string>(len,
                                          rc::gen::map(rc::gen::inRange(0, 256), [](int b) {
                                            return static_cast<char>(b);
                                          }));
}

inline NodeId genNode() { return *rc::gen::inRange<NodeId>(1, limits::kMaxNodes + 1); }

// Mostly small numbers (they exercise the common case), sometimes anything.
inline uint64_t genU64() {
  return *rc::gen::oneOf(rc::gen::inRange<uint64_t>(0, 1000), rc::gen::arbitrary<uint64_t>());
}

inline Message genMessage() {
  Message m;
  m.type = static_cast<MsgType>(*rc::gen::inRange<int>(0, kMsgTypeCount));
  m.from = genNode();
  m.to = genNode();
  m.term = *rc::gen::inRange<Term>(0, 1'000'000);
  m.logTerm = *rc::gen::inRange<Term>(0, m.term + 1);
  m.index = *rc::gen::inRange<Index>(0, 1'000'000'000);
  m.commit = genU64();
  m.heldByAll = *rc::gen::inRange<Index>(0, m.commit == UINT64_MAX ? m.commit : m.commit + 1);
  m.reject = *rc::gen::arbitrary<bool>();
  m.rejectHint = genU64();
  m.context = genU64();
  if (m.type == MsgType::Append) {
    auto count = *rc::gen::inRange<size_t>(0, 20);
    Term term = m.logTerm;
    for (size_t i = 0; i < count; ++i) {
      term = *rc::gen::inRange<Term>(term, m.term + 1);
      Entry e;
      e.term = term;
      e.index = m.index + 1 + i;
      e.kind = static_cast<EntryKind>(*rc::gen::inRange(0, 2));
      e.data = genBytes(64);
      m.entries.push_back(std::move(e));
    }
  }
  if (*rc::gen::arbitrary<bool>()) {
    m.snap.index = genU64();
    m.snap.term = genU64();
    for (NodeId n = 1; n <= limits::kMaxNodes; ++n) {
      if (*rc::gen::arbitrary<bool>()) m.snap.conf.voters.push_back(n);
    }
  }
  m.snapOffset = *rc::gen::inRange<uint64_t>(0, 1 << 20);
  m.snapDone = *rc::gen::arbitrary<bool>();
  if (m.type == MsgType::Snapshot) {
    m.snapChunk = genBytes(256);
    m.snapSize = m.snapOffset + m.snapChunk.size() + *rc::gen::inRange<uint64_t>(0, 1000);
  } else {
    m.snapSize = *rc::gen::inRange<uint64_t>(0, 1 << 20);
  }
  return m;
}

inline KvCommand genCommand() {
  KvCommand c;
  c.op = static_cast<OpType>(*rc::gen::inRange(0, 6));
  c.clientId = genU64();
  c.requestId = genU64();
  c.key = genBytes(32);
  c.value = genBytes(64);
  c.expected = genBytes(32);
  c.expectAbsent = *rc::gen::arbitrary<bool>();
  c.rangeEnd = genBytes(32);
  c.limit = *rc::gen::arbitrary<uint32_t>();
  return c;
}

inline KvReply genReply() {
  KvReply r;
  r.status = static_cast<Status>(*rc::gen::inRange(0, 12));
  r.value = genBytes(64);
  auto count = *rc::gen::inRange<size_t>(0, 10);
  for (size_t i = 0; i < count; ++i) r.kvs.emplace_back(genBytes(16), genBytes(32));
  r.more = *rc::gen::arbitrary<bool>();
  r.clientId = genU64();
  r.leaderHint = *rc::gen::inRange<NodeId>(0, limits::kMaxNodes + 1);
  r.index = genU64();
  return r;
}

}  // namespace kvr::test
