// Property tests of KvStore over random command sequences.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/kv.h"
#include "tests/kv/kv_test_util.h"

namespace kvr {
namespace {

using test::LogEntry;

// Every read a client could make over the small key space.
std::vector<KvReply> allReads(const KvStore& store) {
  std::vector<KvReply> out;
  for (const char* k : {"a", "ab", "b", "c", "cd", "d", "e", "zz"}) {
    out.push_back(store.read(test::get(k)));
  }
  out.push_back(store.read(test::range("", "")));
  out.push_back(store.read(test::range("b", "d", 2)));
  return out;
}

// Snapshotting at any point and continuing from the restored copy gives the same
// replies, the same reads and the same digest as never having snapshotted.
RC_GTEST_PROP(KvStoreProp, SnapshotRestoreThenContinueMatches, ()) {
  const auto steps = *rc::gen::container<std::vector<test::Step>>(test::anyStep());
  const std::vector<LogEntry> log = test::materialize(steps);
  const size_t cut = *rc::gen::inRange<size_t>(0, log.size() + 1);
  const KvConfig config{.maxSessions = *rc::gen::inRange<uint32_t>(1, 5)};

  KvStore a(config);
  for (size_t i = 0; i < cut; ++i) test::applyEntry(a, log[i]);
  KvStore b(config);
  // b had some unrelated state before the restore; it must all be replaced.
  b.apply(1, test::openSession());
  b.apply(2, test::put(1, 1, "junk", "junk"));
  RC_ASSERT(b.restore(a.snapshot()));
  RC_ASSERT(b.digest() == a.digest());
  RC_ASSERT(b.snapshot() == a.snapshot());
  for (size_t i = cut; i < log.size(); ++i) {
    RC_ASSERT(test::applyEntry(a, log[i]) == test::applyEntry(b, log[i]));
  }
  RC_ASSERT(a.digest() == b.digest());
  RC_ASSERT(allReads(a) == allReads(b));
  RC_ASSERT(a.data() == b.data());
  RC_ASSERT(a.dataBytes() == b.dataBytes());
  RC_ASSERT(a.sessionCount() <= config.maxSessions);
}

// Applying the same log twice from scratch gives the same state (determinism), and
// re-applying any already applied write as a retry changes nothing.
RC_GTEST_PROP(KvStoreProp, RetriesNeverChangeState, ()) {
  const auto steps = *rc::gen::container<std::vector<test::Step>>(test::anyStep());
  std::vector<LogEntry> log = test::materialize(steps);
  KvStore store;
  std::vector<std::pair<KvCommand, KvReply>> done;
  for (const LogEntry& e : log) {
    KvReply r = test::applyEntry(store, e);
    if (!e.noop && e.cmd.op != OpType::OpenSession && r.status != Status::SessionExpired &&
        r.status != Status::StaleRequest) {
      done.emplace_back(e.cmd, r);
    }
  }
  if (done.empty()) return;
  // The latest request of some client, retried: same reply, no state change.
  const size_t pick = *rc::gen::inRange<size_t>(0, done.size());
  const KvCommand& cmd = done[pick].first;
  bool latest = true;
  for (size_t j = pick + 1; j < done.size(); ++j) {
    const KvCommand& later = done[j].first;
    if (later.clientId == cmd.clientId && later.requestId != cmd.requestId) latest = false;
  }
  const auto dataBefore = store.data();
  KvReply retry = store.apply(store.appliedIndex() + 1, cmd);
  if (latest) {
    RC_ASSERT(retry == done[pick].second);
  } else {
    RC_ASSERT(retry.status == Status::StaleRequest);
  }
  RC_ASSERT(store.data() == dataBefore);
}

// Mutated snapshots (with a recomputed checksum, so the body checks are reached) are
// either rejected with the store unchanged, or accepted and then re-snapshot to the
// exact same bytes.
RC_GTEST_PROP(KvStoreProp, RestoreOfMutatedSnapshotIsSafe, ()) {
  const auto steps = *rc::gen::container<std::vector<test::Step>>(test::anyStep());
  KvStore source(KvConfig{.maxSessions = 3});
  for (const LogEntry& e : test::materialize(steps)) test::applyEntry(source, e);
  std::string snap = source.snapshot();
  const size_t at = *rc::gen::inRange<size_t>(0, snap.size() - 8);
  switch (*rc::gen::inRange(0, 3)) {
    case 0: snap[at] = static_cast<char>(snap[at] ^ *rc::gen::inRange(1, 256)); break;
    case 1: snap.erase(at, 1); break;
    default:
      snap.insert(snap.begin() + static_cast<std::ptrdiff_t>(at), *rc::gen::arbitrary<char>());
      break;
  }
  const bool resealed = *rc::gen::arbitrary<bool>();
  if (resealed) snap = test::reseal(snap);

  KvStore target(KvConfig{.maxSessions = 3});
  target.apply(1, test::openSession());
  target.apply(2, test::put(1, 1, "k", "v"));
  const std::string before = target.snapshot();
  if (target.restore(snap)) {
    RC_ASSERT(resealed);
    RC_ASSERT(target.snapshot() == snap);
  } else {
    RC_ASSERT(target.snapshot() == before);
  }
}

// Issue 10: while fewer sessions than the cap have run a command, no number of sessions
// opened and never used (retried OpenSessions) evicts one of them, also across a
// snapshot and restore at any point.
RC_GTEST_PROP(KvStoreProp, UnusedSessionsNeverCostAUsedOne, ()) {
  const uint32_t cap = *rc::gen::inRange<uint32_t>(2, 8);
  const uint32_t used = *rc::gen::inRange<uint32_t>(1, cap);  // at most cap - 1
  // A step is a write by used client `v`, or (v == used) an OpenSession nobody uses.
  const auto steps = *rc::gen::container<std::vector<uint32_t>>(
      rc::gen::inRange<uint32_t>(0, used + 1));
  const size_t cut = *rc::gen::inRange<size_t>(0, steps.size() + 1);
  auto store = std::make_unique<KvStore>(KvConfig{.maxSessions = cap});
  Index next = 1;
  std::vector<uint64_t> ids, requests(used, 0);
  for (uint32_t c = 0; c < used; ++c) {
    ids.push_back(store->apply(next++, test::openSession()).clientId);
    RC_ASSERT(store->apply(next++, test::put(ids[c], ++requests[c], "a", "x")).status ==
              Status::Ok);
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    if (i == cut) {
      auto restored = std::make_unique<KvStore>(KvConfig{.maxSessions = cap});
      RC_ASSERT(restored->restore(store->snapshot()));
      store = std::move(restored);
    }
    const uint32_t v = steps[i];
    if (v == used) {
      RC_ASSERT(store->apply(next++, test::openSession()).status == Status::Ok);
    } else {
      KvReply r = store->apply(next++, test::put(ids[v], ++requests[v], "a", "x"));
      RC_ASSERT(r.status == Status::Ok);
    }
    RC_ASSERT(store->sessionCount() <= cap);
  }
}

// put/get/delete/cas against a std::map model, through one session.
RC_GTEST_PROP(KvStoreProp, MatchesAMapModel, ()) {
  const auto ops = *rc::gen::container<std::vector<KvCommand>>(rc::gen::build<KvCommand>(
      rc::gen::set(&KvCommand::op,
                   rc::gen::elementOf(std::vector<OpType>{
                       OpType::Put, OpType::Get, OpType::Delete, OpType::Cas, OpType::Range})),
      rc::gen::set(&KvCommand::key, test::smallKey()),
      rc::gen::set(&KvCommand::value, test::smallValue()),
      rc::gen::set(&KvCommand::expected, test::smallValue()),
      rc::gen::set(&KvCommand::expectAbsent, rc::gen::arbitrary<bool>()),
      rc::gen::set(&KvCommand::limit, rc::gen::inRange<uint32_t>(0, 4))));

  KvStore store;
  const uint64_t client = store.apply(1, test::openSession()).clientId;
  Index index = 1;
  uint64_t request = 0;
  std::map<std::string, std::string> model;

  for (KvCommand cmd : ops) {
    auto found = model.find(cmd.key);
    const bool present = found != model.end();
    KvReply expected;
    if (cmd.op == OpType::Get) {
      if (present) {
        expected.value = found->second;
      } else {
        expected.status = Status::NotFound;
      }
      expected.index = index;
      RC_ASSERT(store.read(cmd) == expected);
      continue;
    }
    if (cmd.op == OpType::Range) {
      const uint32_t limit = cmd.limit == 0 ? ~0u : cmd.limit;
      for (auto it = model.lower_bound(cmd.key); it != model.end(); ++it) {
        if (expected.kvs.size() == limit) {
          expected.more = true;
          break;
        }
        expected.kvs.emplace_back(*it);
      }
      expected.index = index;
      RC_ASSERT(store.read(cmd) == expected);
      continue;
    }
    cmd.clientId = client;
    cmd.requestId = ++request;
    expected.index = ++index;
    switch (cmd.op) {
      case OpType::Put: model[cmd.key] = cmd.value; break;
      case OpType::Delete:
        if (present) {
          model.erase(found);
        } else {
          expected.status = Status::NotFound;
        }
        break;
      case OpType::Cas:
        if (cmd.expectAbsent ? !present : present && found->second == cmd.expected) {
          model[cmd.key] = cmd.value;
        } else {
          expected.status = Status::CasMismatch;
          if (present) expected.value = found->second;
        }
        break;
      default: RC_FAIL("unexpected op");
    }
    RC_ASSERT(store.apply(index, cmd) == expected);
  }
  const auto data = store.data();  // a copy: the store keeps a KvMap
  const std::map<std::string, std::string> stored(data.begin(), data.end());
  RC_ASSERT(stored == model);
  size_t bytes = 0;
  for (const auto& [k, v] : model) bytes += k.size() + v.size();
  RC_ASSERT(store.dataBytes() == bytes);
}

}  // namespace
}  // namespace kvr
