// Tests of the client history record (sim/history.h) and the linearizability checker
// (sim/linearizability.h): hand-made histories with known verdicts, random histories
// generated from a true sequential execution, and the JSON-lines round trip.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/rng.h"
#include "sim/history.h"
#include "sim/linearizability.h"

namespace kvr::sim {
namespace {

using std::nullopt;
using std::optional;
using std::string;

// "<prefix><n>" (appending: operator+ on a literal trips a false -Wrestrict in g++ 12 -O3).
string named(const char* prefix, uint64_t n) {
  string s = prefix;
  s += std::to_string(n);
  return s;
}

// ---- building hand-made histories ----
// Each helper appends one op. A `complete` of nullopt makes the outcome Unknown.

Operation base(uint32_t client, OpKind kind, string key, uint64_t invoke,
               optional<uint64_t> complete) {
  Operation o;
  o.client = client;
  o.op = kind;
  o.key = std::move(key);
  o.invokeNs = invoke;
  o.completeNs = complete;
  o.outcome = complete ? Outcome::Ok : Outcome::Unknown;
  return o;
}

History::OpId put(History& h, uint32_t c, string k, string v, uint64_t inv,
                  optional<uint64_t> comp) {
  Operation o = base(c, OpKind::Put, std::move(k), inv, comp);
  o.value = std::move(v);
  if (comp) o.output = "ok";
  return h.append(std::move(o));
}

// result nullopt = not found.
History::OpId get(History& h, uint32_t c, string k, uint64_t inv, uint64_t comp,
                  optional<string> result) {
  Operation o = base(c, OpKind::Get, std::move(k), inv, comp);
  o.found = result.has_value();
  o.output = result ? *result : "not_found";
  return h.append(std::move(o));
}

History::OpId del(History& h, uint32_t c, string k, uint64_t inv, optional<uint64_t> comp,
                  bool existed) {
  Operation o = base(c, OpKind::Delete, std::move(k), inv, comp);
  if (comp) {
    o.found = existed;
    o.output = existed ? "ok" : "not_found";
  }
  return h.append(std::move(o));
}

// expected nullopt = expect absent.
History::OpId cas(History& h, uint32_t c, string k, optional<string> expected, string v,
                  uint64_t inv, optional<uint64_t> comp, bool swapped) {
  Operation o = base(c, OpKind::Cas, std::move(k), inv, comp);
  o.expectAbsent = !expected;
  o.expected = expected.value_or("");
  o.value = std::move(v);
  if (comp) o.output = swapped ? "ok" : "mismatch";
  return h.append(std::move(o));
}

History::OpId failedPut(History& h, uint32_t c, string k, string v, uint64_t inv,
                        uint64_t comp) {
  Operation o = base(c, OpKind::Put, std::move(k), inv, comp);
  o.value = std::move(v);
  o.outcome = Outcome::Fail;
  o.output = "NotLeader";
  return h.append(std::move(o));
}

Verdict verdictOf(const History& h) { return checkLinearizability(h).verdict; }

// ---- hand-made histories ----

TEST(Linearizability, EmptyHistory) {
  History h;
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
}

TEST(Linearizability, SequentialOk) {
  History h;
  get(h, 1, "k", 0, 1, nullopt);
  put(h, 1, "k", "a", 2, 3);
  get(h, 2, "k", 4, 5, "a");
  put(h, 2, "k", "b", 6, 7);
  get(h, 1, "k", 8, 9, "b");
  del(h, 1, "k", 10, 11, true);
  get(h, 2, "k", 12, 13, nullopt);
  del(h, 2, "k", 14, 15, false);
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
}

TEST(Linearizability, ConcurrentPutGetEitherOrder) {
  for (bool seesNew : {false, true}) {
    History h;
    put(h, 1, "k", "a", 0, 1);
    put(h, 1, "k", "b", 10, 20);
    get(h, 2, "k", 12, 18, seesNew ? "b" : "a");
    EXPECT_EQ(verdictOf(h), Verdict::Linearizable) << "seesNew=" << seesNew;
  }
}

TEST(Linearizability, TwoOverlappingReadsMayDisagreeOnlyInOneDirection) {
  // A write overlaps two reads; the reads overlap each other, so new-then-old is fine...
  History ok;
  put(ok, 1, "k", "a", 0, 1);
  put(ok, 1, "k", "b", 10, 40);
  get(ok, 2, "k", 11, 30, "b");
  get(ok, 3, "k", 12, 31, "a");
  EXPECT_EQ(verdictOf(ok), Verdict::Linearizable);
  // ...but once the new value was read and that read completed, an old read is stale.
  History bad;
  put(bad, 1, "k", "a", 0, 1);
  put(bad, 1, "k", "b", 10, 40);
  get(bad, 2, "k", 11, 20, "b");
  get(bad, 3, "k", 21, 30, "a");
  LinearizabilityResult r = checkLinearizability(bad);
  EXPECT_EQ(r.verdict, Verdict::NotLinearizable) << r.explanation;
}

TEST(Linearizability, StaleReadAfterCompletedWriteIsNot) {
  History h;
  put(h, 1, "k", "a", 0, 1);
  auto w = put(h, 1, "k", "b", 2, 3);
  auto r = get(h, 2, "k", 4, 5, "a");
  get(h, 3, "other", 0, 9, nullopt);  // an unrelated key stays out of the explanation
  LinearizabilityResult res = checkLinearizability(h);
  EXPECT_EQ(res.verdict, Verdict::NotLinearizable);
  EXPECT_EQ(res.key, "k");
  // Minimal: all three ops are needed (dropping "a"'s write is not allowed).
  EXPECT_EQ(res.ops, (std::vector<History::OpId>{0, w, r})) << res.explanation;
  EXPECT_NE(res.explanation.find("\"k\""), string::npos) << res.explanation;
}

TEST(Linearizability, ReadOfValueNeverWrittenIsNot) {
  History h;
  put(h, 1, "k", "a", 0, 10);
  auto r = get(h, 2, "k", 5, 6, "zzz");
  LinearizabilityResult res = checkLinearizability(h);
  EXPECT_EQ(res.verdict, Verdict::NotLinearizable);
  EXPECT_EQ(res.ops, (std::vector<History::OpId>{r}));
}

TEST(Linearizability, ReadFromTheFutureIsNot) {
  History h;
  get(h, 2, "k", 0, 5, "a");
  put(h, 1, "k", "a", 6, 10);
  EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
}

TEST(Linearizability, InitiallyAbsent) {
  History h;
  get(h, 1, "k", 0, 1, "");  // empty string is a value, not absence
  EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
  History h2;
  put(h2, 1, "k", "", 0, 1);
  get(h2, 1, "k", 2, 3, "");
  EXPECT_EQ(verdictOf(h2), Verdict::Linearizable);
}

TEST(Linearizability, UnknownPutVisibleLaterIsFine) {
  History h;
  put(h, 1, "k", "a", 0, 1);
  put(h, 2, "k", "b", 2, nullopt);  // timed out
  get(h, 3, "k", 100, 101, "a");    // not yet applied...
  get(h, 3, "k", 200, 201, "b");    // ...applied much later
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
}

TEST(Linearizability, UnknownPutMayNeverApply) {
  History h;
  put(h, 1, "k", "a", 0, 1);
  put(h, 2, "k", "b", 2, nullopt);
  get(h, 3, "k", 100, 101, "a");
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
}

TEST(Linearizability, UnknownPutCannotApplyTwice) {
  History h;
  put(h, 2, "k", "x", 0, nullopt);
  get(h, 1, "k", 10, 11, "x");
  put(h, 1, "k", "y", 20, 21);
  get(h, 1, "k", 30, 31, "y");
  get(h, 3, "k", 40, 41, "x");  // x reappears: would need the unknown put twice
  LinearizabilityResult r = checkLinearizability(h);
  EXPECT_EQ(r.verdict, Verdict::NotLinearizable) << r.explanation;
}

TEST(Linearizability, UnknownGetIsIgnored) {
  History h;
  put(h, 1, "k", "a", 0, 1);
  Operation g = base(2, OpKind::Get, "k", 2, nullopt);
  h.append(g);
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
}

TEST(Linearizability, FailedOpValueVisibleIsNot) {
  History h;
  put(h, 1, "k", "a", 0, 1);
  failedPut(h, 2, "k", "b", 2, 3);
  get(h, 3, "k", 4, 5, "b");
  EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
  // The same put as Unknown instead of Fail would be fine.
  History h2;
  put(h2, 1, "k", "a", 0, 1);
  put(h2, 2, "k", "b", 2, nullopt);
  get(h2, 3, "k", 4, 5, "b");
  EXPECT_EQ(verdictOf(h2), Verdict::Linearizable);
}

TEST(Linearizability, CasSuccessAndMismatch) {
  {
    History h;  // cas-if-absent, then cas a->b, then a mismatch against a
    cas(h, 1, "k", nullopt, "a", 0, 1, true);
    cas(h, 1, "k", "a", "b", 2, 3, true);
    cas(h, 2, "k", "a", "c", 4, 5, false);
    get(h, 2, "k", 6, 7, "b");
    EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
  }
  {
    History h;  // cas claims success against a value that is no longer there
    put(h, 1, "k", "a", 0, 1);
    put(h, 1, "k", "b", 2, 3);
    cas(h, 2, "k", "a", "c", 4, 5, true);
    EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
  }
  {
    History h;  // cas claims a mismatch though the value matched all along
    put(h, 1, "k", "a", 0, 1);
    cas(h, 2, "k", "a", "c", 4, 5, false);
    EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
  }
  {
    History h;  // cas-if-absent on a present key must mismatch
    put(h, 1, "k", "a", 0, 1);
    cas(h, 2, "k", nullopt, "c", 2, 3, true);
    EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
  }
  {
    History h;  // a mismatch is fine while a concurrent write may have moved the value
    put(h, 1, "k", "a", 0, 1);
    put(h, 1, "k", "b", 2, 10);
    cas(h, 2, "k", "a", "c", 3, 9, false);
    get(h, 2, "k", 11, 12, "b");
    EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
  }
  {
    History h;  // two swaps from the same value: only one can win
    put(h, 1, "k", "a", 0, 1);
    cas(h, 2, "k", "a", "x", 2, 10, true);
    cas(h, 3, "k", "a", "y", 2, 10, true);
    EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
  }
  {
    History h;  // an unknown cas takes effect only if its expectation held
    put(h, 1, "k", "a", 0, 1);
    cas(h, 2, "k", "a", "x", 2, nullopt, false);
    get(h, 3, "k", 5, 6, "x");
    EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
    History h2;
    put(h2, 1, "k", "b", 0, 1);
    cas(h2, 2, "k", "a", "x", 2, nullopt, false);
    get(h2, 3, "k", 5, 6, "x");
    EXPECT_EQ(verdictOf(h2), Verdict::NotLinearizable);
  }
}

TEST(Linearizability, DeleteAndNotFound) {
  {
    History h;
    del(h, 1, "k", 0, 1, false);  // absent initially
    put(h, 1, "k", "a", 2, 3);
    del(h, 2, "k", 4, 5, true);
    del(h, 2, "k", 6, 7, false);
    get(h, 1, "k", 8, 9, nullopt);
    EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
  }
  {
    History h;  // delete says the key existed, but it never did
    del(h, 1, "k", 0, 1, true);
    EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
  }
  {
    History h;  // delete says not found after a completed put
    put(h, 1, "k", "a", 0, 1);
    del(h, 1, "k", 2, 3, false);
    EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
  }
  {
    History h;  // two concurrent deletes of one value cannot both find it
    put(h, 1, "k", "a", 0, 1);
    del(h, 1, "k", 2, 5, true);
    del(h, 2, "k", 2, 5, true);
    EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
  }
  {
    History h;  // a read after a completed delete must not find the value
    put(h, 1, "k", "a", 0, 1);
    del(h, 1, "k", 2, 3, true);
    get(h, 2, "k", 4, 5, "a");
    EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
  }
  {
    History h;  // an unknown delete explains a later not-found
    put(h, 1, "k", "a", 0, 1);
    del(h, 2, "k", 2, nullopt, false);
    get(h, 1, "k", 50, 51, nullopt);
    EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
  }
}

TEST(Linearizability, KeysAreIndependent) {
  History h;
  put(h, 1, "a", "1", 0, 10);
  put(h, 2, "b", "1", 0, 10);
  get(h, 3, "a", 11, 12, "1");
  get(h, 3, "b", 13, 14, nullopt);  // stale on key b only
  LinearizabilityResult r = checkLinearizability(h);
  EXPECT_EQ(r.verdict, Verdict::NotLinearizable);
  EXPECT_EQ(r.key, "b");
}

TEST(Linearizability, EqualTimestampsOverlap) {
  History h;
  put(h, 1, "k", "a", 0, 5);
  get(h, 2, "k", 5, 6, nullopt);  // invoked exactly when the put completed
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
}

TEST(Linearizability, BudgetExhaustedIsUnknownNotPass) {
  // Many mutually overlapping writes followed by a stale read: refuting it needs a
  // search far bigger than a budget of 50 steps.
  History h;
  for (uint32_t i = 0; i < 12; ++i) put(h, i, "k", named("v", i), 0, 100);
  put(h, 20, "k", "last", 101, 102);
  get(h, 21, "k", 103, 104, "v3");
  LinearizabilityOptions small;
  small.maxSteps = 50;
  LinearizabilityResult r = checkLinearizability(h, small);
  EXPECT_EQ(r.verdict, Verdict::Unknown);
  EXPECT_EQ(r.key, "k");
  EXPECT_NE(r.explanation.find("budget"), string::npos);
  EXPECT_EQ(checkLinearizability(h).verdict, Verdict::NotLinearizable);
}

TEST(Linearizability, ExplanationNamesTheStuckPoint) {
  History h;
  put(h, 1, "k", "a", 0, 1);
  put(h, 1, "k", "b", 2, 3);
  get(h, 2, "k", 4, 5, "a");
  LinearizabilityResult r = checkLinearizability(h);
  ASSERT_EQ(r.verdict, Verdict::NotLinearizable);
  EXPECT_NE(r.explanation.find("holding \"a\" (written by #0)"), string::npos) << r.explanation;
  EXPECT_NE(r.explanation.find("get(\"k\")"), string::npos) << r.explanation;
}

// ---- History recording API ----

TEST(History, RecordsOutcomes) {
  History h;
  auto p = h.invokePut(1, "k", "v", 10);
  auto g = h.invokeGet(2, "k", 11);
  auto d = h.invokeDelete(3, "k", 12);
  auto c = h.invokeCas(4, "k", nullopt, "w", 13);
  auto f = h.invokePut(5, "k", "z", 14);
  auto t = h.invokePut(6, "k", "q", 15);
  auto never = h.invokeGet(7, "k", 16);
  h.completePut(p, 20);
  h.completeGet(g, 21, string("v"));
  h.completeDelete(d, 22, true);
  h.completeCas(c, 23, true);
  h.fail(f, 24, "NotLeader");
  h.giveUp(t, "timeout");
  EXPECT_EQ(h.op(p).output, "ok");
  EXPECT_TRUE(h.op(g).found);
  EXPECT_EQ(h.op(g).output, "v");
  EXPECT_EQ(h.op(d).output, "ok");
  EXPECT_TRUE(h.op(c).expectAbsent);
  EXPECT_EQ(h.op(c).output, "ok");
  EXPECT_EQ(h.op(f).outcome, Outcome::Fail);
  EXPECT_EQ(h.op(t).outcome, Outcome::Unknown);
  EXPECT_FALSE(h.op(t).completeNs.has_value());
  EXPECT_EQ(h.op(never).outcome, Outcome::Unknown);
  EXPECT_FALSE(h.isSettled(never));
  EXPECT_ANY_THROW(h.completePut(p, 30));  // settled once only
  EXPECT_ANY_THROW(h.completeGet(t, 30, nullopt));
  for (const Operation& op : h.ops()) {
    string why;
    EXPECT_TRUE(validateOperation(op, &why)) << why;
  }
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
}

TEST(History, JsonLineFormat) {
  History h;
  auto c = h.invokeCas(3, "k\"1", nullopt, "a\nb\x01\xff", 100);
  h.completeCas(c, 250, false);
  auto g = h.invokeGet(4, "k", 5);
  EXPECT_EQ(toJsonLines(h),
            "{\"client\":3,\"op\":\"cas\",\"key\":\"k\\\"1\",\"value\":\"a\\nb\\u0001\\u00ff\","
            "\"expected\":null,\"invoke_ns\":100,\"complete_ns\":250,\"outcome\":\"ok\","
            "\"output\":\"mismatch\",\"found\":false}\n"
            "{\"client\":4,\"op\":\"get\",\"key\":\"k\",\"value\":\"\",\"expected\":\"\","
            "\"invoke_ns\":5,\"complete_ns\":null,\"outcome\":\"unknown\",\"output\":\"\","
            "\"found\":false}\n");
  (void)g;
}

TEST(History, JsonParserAcceptsHandWrittenLines) {
  History h;
  string err;
  ASSERT_TRUE(
      parseJsonLines("\n  { \"op\" : \"get\", \"client\":1, \"key\":\"k\", \"invoke_ns\":0,"
                     " \"complete_ns\":3, \"outcome\":\"ok\", \"output\":\"not_found\" }\r\n"
                     "{\"op\":\"delete\",\"client\":2,\"key\":\"k\\u0041\\/\",\"invoke_ns\":1,"
                     "\"complete_ns\":2,\"outcome\":\"ok\",\"output\":\"ok\"}",
                     &h, &err))
      << err;
  ASSERT_EQ(h.size(), 2u);
  EXPECT_FALSE(h.op(0).found);
  EXPECT_EQ(h.op(1).key, "kA/");
  EXPECT_TRUE(h.op(1).found);  // inferred from "ok"
}

TEST(History, JsonParserRejectsMalformedLines) {
  const char* bad[] = {
      "{\"client\":1}",  // missing
      "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"invoke_ns\":5,\"outcome\":\"ok\","
      "\"complete_ns\":4,\"output\":\"ok\",\"value\":\"v\"}",  // time order
      "{\"client\":1,\"op\":\"nop\",\"key\":\"k\",\"invoke_ns\":5,\"outcome\":\"ok\"}",
      "{\"client\":1,\"op\":\"get\",\"key\":\"k\",\"invoke_ns\":5,\"outcome\":\"unknown\","
      "\"bogus\":1}",  // unknown field
      "{\"client\":1,\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke_ns\":5,"
      "\"outcome\":\"unknown\"}",  // duplicate
      "{\"client\":1,\"op\":\"get\",\"key\":\"k\\u0100\",\"invoke_ns\":5,\"outcome\":"
      "\"unknown\"}",
      "{\"client\":1,\"op\":\"get\",\"key\":\"k,\"invoke_ns\":5,\"outcome\":\"unknown\"}",
      "{\"client\":1,\"op\":\"get\",\"key\":\"k\",\"invoke_ns\":99999999999999999999,"
      "\"outcome\":\"unknown\"}",  // overflow
      "{\"client\":1,\"op\":\"get\",\"key\":\"k\",\"invoke_ns\":5,\"outcome\":\"unknown\"} x",
      "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"v\",\"invoke_ns\":5,"
      "\"complete_ns\":6,\"outcome\":\"ok\",\"output\":\"done\"}",  // bad output
  };
  for (const char* line : bad) {
    History h;
    string err;
    EXPECT_FALSE(parseJsonLines(string("\n") + line + "\n", &h, &err)) << line;
    EXPECT_EQ(err.rfind("line 2: ", 0), 0u) << err;
  }
}

// ---- random histories from a true sequential execution ----

struct GenConfig {
  size_t ops = 100;
  uint32_t keys = 3;
  uint32_t clients = 4;
  uint64_t maxGap = 20;       // idle time between a client's ops
  uint64_t maxDuration = 50;  // invoke-to-complete
  double pUnknown = 0.1;      // an applied op loses its answer
  double pNotApplied = 0.05;  // an op never takes effect (recorded as fail or unknown)
};

// Each client runs ops one after another. Every applied op gets a true linearization
// point inside [invoke, complete] (for ops that lose their answer: anywhere after the
// invoke); executing the applied ops in point order on a plain map gives the results.
// All written values are unique.
History generateHistory(Rng& rng, const GenConfig& cfg) {
  struct Draft {
    Operation op;
    bool applied = false;
    uint64_t point = 0;
  };
  std::vector<Draft> drafts(cfg.ops);
  std::vector<uint64_t> clientTime(cfg.clients, 0);
  for (size_t i = 0; i < cfg.ops; ++i) {
    Draft& d = drafts[i];
    uint32_t c = static_cast<uint32_t>(rng.below(cfg.clients));
    uint64_t invoke = clientTime[c] + rng.between(0, cfg.maxGap);
    uint64_t complete = invoke + rng.between(0, cfg.maxDuration);
    clientTime[c] = complete + 1;
    d.op.client = c;
    d.op.key = named("k", rng.below(cfg.keys));
    d.op.op = static_cast<OpKind>(rng.below(4));
    d.op.invokeNs = invoke;
    if (d.op.op == OpKind::Put || d.op.op == OpKind::Cas) d.op.value = named("v", i);
    if (rng.chance(cfg.pNotApplied)) {
      d.applied = false;
      if (rng.chance(0.5)) {
        d.op.outcome = Outcome::Fail;
        d.op.completeNs = complete;
        d.op.output = "rejected";
      }
    } else {
      d.applied = true;
      if (rng.chance(cfg.pUnknown)) {
        d.point = rng.between(invoke, complete + 4 * cfg.maxDuration);
      } else {
        d.op.outcome = Outcome::Ok;
        d.op.completeNs = complete;
        d.point = rng.between(invoke, complete);
      }
    }
  }

  std::vector<size_t> order;
  for (size_t i = 0; i < cfg.ops; ++i) {
    if (drafts[i].applied) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return drafts[a].point < drafts[b].point; });
  std::map<string, optional<string>> model;
  std::map<string, std::vector<string>> written;  // per key, for cas expectations
  auto chooseExpectation = [&](Operation& op, const optional<string>& current) {
    uint64_t pick = rng.below(3);
    const auto& past = written[op.key];
    if (pick == 0 && current) {
      op.expected = *current;
    } else if (pick == 1 && !past.empty()) {
      op.expected = past[rng.below(past.size())];
    } else {
      op.expectAbsent = true;
    }
  };
  for (size_t i : order) {
    Operation& op = drafts[i].op;
    optional<string>& cur = model[op.key];
    bool definite = op.outcome == Outcome::Ok;
    switch (op.op) {
      case OpKind::Put:
        cur = op.value;
        written[op.key].push_back(op.value);
        if (definite) op.output = "ok";
        break;
      case OpKind::Get:
        if (definite) {
          op.found = cur.has_value();
          op.output = cur.value_or("not_found");
        }
        break;
      case OpKind::Delete:
        if (definite) {
          op.found = cur.has_value();
          op.output = cur ? "ok" : "not_found";
        }
        cur.reset();
        break;
      case OpKind::Cas: {
        chooseExpectation(op, cur);
        bool match = op.expectAbsent ? !cur.has_value() : cur == op.expected;
        if (match) {
          cur = op.value;
          written[op.key].push_back(op.value);
        }
        if (definite) op.output = match ? "ok" : "mismatch";
        break;
      }
    }
  }
  History h;
  for (Draft& d : drafts) {
    if (d.op.op == OpKind::Cas && !d.applied) chooseExpectation(d.op, nullopt);
    h.append(std::move(d.op));
  }
  return h;
}

GenConfig genConfig() {
  GenConfig cfg;
  cfg.ops = *rc::gen::inRange<size_t>(1, 120);
  cfg.keys = *rc::gen::inRange<uint32_t>(1, 4);
  cfg.clients = *rc::gen::inRange<uint32_t>(1, 9);
  cfg.maxGap = *rc::gen::inRange<uint64_t>(0, 40);
  cfg.maxDuration = *rc::gen::inRange<uint64_t>(0, 80);
  cfg.pUnknown = *rc::gen::element(0.0, 0.1, 0.3);
  cfg.pNotApplied = *rc::gen::element(0.0, 0.05, 0.2);
  return cfg;
}

std::vector<History::OpId> definiteGets(const History& h) {
  std::vector<History::OpId> out;
  for (History::OpId id = 0; id < h.size(); ++id) {
    if (h.op(id).op == OpKind::Get && h.op(id).outcome == Outcome::Ok) out.push_back(id);
  }
  return out;
}

History withOutput(const History& h, History::OpId target, string value) {
  History out;
  for (History::OpId id = 0; id < h.size(); ++id) {
    Operation op = h.op(id);
    if (id == target) {
      op.found = true;
      op.output = value;
    }
    out.append(std::move(op));
  }
  return out;
}

RC_GTEST_PROP(LinearizabilityProp, TrueExecutionsAreLinearizable, ()) {
  const GenConfig cfg = genConfig();
  Rng rng(*rc::gen::arbitrary<uint64_t>());
  History h = generateHistory(rng, cfg);
  LinearizabilityResult r = checkLinearizability(h);
  RC_ASSERT(r.verdict == Verdict::Linearizable);
}

RC_GTEST_PROP(LinearizabilityProp, ReadOfUnwrittenValueIsCaught, ()) {
  const GenConfig cfg = genConfig();
  Rng rng(*rc::gen::arbitrary<uint64_t>());
  History h = generateHistory(rng, cfg);
  auto gets = definiteGets(h);
  RC_PRE(!gets.empty());
  History::OpId target = gets[rng.below(gets.size())];
  History bad = withOutput(h, target, "never-written");
  LinearizabilityResult r = checkLinearizability(bad);
  RC_ASSERT(r.verdict == Verdict::NotLinearizable);
  RC_ASSERT(r.key == h.op(target).key);
  RC_ASSERT(std::find(r.ops.begin(), r.ops.end(), target) != r.ops.end());
}

// A read made to return a value that two later, definitely ordered writes replaced:
// needs the search itself (not the quick pre-check) to refute.
RC_GTEST_PROP(LinearizabilityProp, StaleReadIsCaught, ()) {
  const GenConfig cfg = genConfig();
  Rng rng(*rc::gen::arbitrary<uint64_t>());
  History h = generateHistory(rng, cfg);
  std::vector<std::pair<History::OpId, History::OpId>> candidates;  // (get, overwritten put)
  const auto& ops = h.ops();
  for (History::OpId g : definiteGets(h)) {
    for (History::OpId p1 = 0; p1 < ops.size(); ++p1) {
      if (ops[p1].op != OpKind::Put || ops[p1].outcome != Outcome::Ok ||
          ops[p1].key != ops[g].key) {
        continue;
      }
      for (History::OpId p2 = 0; p2 < ops.size(); ++p2) {
        if (ops[p2].op == OpKind::Put && ops[p2].outcome == Outcome::Ok &&
            ops[p2].key == ops[g].key && *ops[p1].completeNs < ops[p2].invokeNs &&
            *ops[p2].completeNs < ops[g].invokeNs) {
          candidates.emplace_back(g, p1);
          break;
        }
      }
    }
  }
  RC_PRE(!candidates.empty());
  auto [g, p1] = candidates[rng.below(candidates.size())];
  History bad = withOutput(h, g, ops[p1].value);
  LinearizabilityResult r = checkLinearizability(bad);
  RC_ASSERT(r.verdict == Verdict::NotLinearizable);
  RC_ASSERT(std::find(r.ops.begin(), r.ops.end(), g) != r.ops.end());
  RC_ASSERT(std::find(r.ops.begin(), r.ops.end(), p1) != r.ops.end());
}

string anyBytes(Rng& rng) {
  string s(rng.below(6), '\0');
  for (char& ch : s) ch = static_cast<char>(rng.below(256));
  return s;
}

RC_GTEST_PROP(HistoryProp, JsonRoundTrip, ()) {
  GenConfig cfg = genConfig();
  Rng rng(*rc::gen::arbitrary<uint64_t>());
  History h = generateHistory(rng, cfg);
  // Mix in arbitrary bytes in every string field.
  History mixed;
  for (Operation op : h.ops()) {
    if (rng.chance(0.3)) op.key = anyBytes(rng);
    if (!op.value.empty()) op.value = anyBytes(rng);
    if (!op.expected.empty()) op.expected = anyBytes(rng);
    if (op.outcome != Outcome::Ok || (op.op == OpKind::Get && op.found)) {
      op.output = anyBytes(rng);
    }
    op.client = static_cast<uint32_t>(rng.next());
    if (rng.chance(0.1)) {
      uint64_t big = rng.next() | 16;
      op.completeNs = op.completeNs ? std::optional<uint64_t>(big) : std::nullopt;
      op.invokeNs = op.completeNs ? big - rng.below(10) : big;
    }
    mixed.append(std::move(op));
  }
  string text = toJsonLines(mixed);
  for (char ch : text) RC_ASSERT(static_cast<unsigned char>(ch) < 0x80);
  RC_ASSERT(static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) == mixed.size());
  History back;
  string err;
  RC_ASSERT(parseJsonLines(text, &back, &err));
  RC_ASSERT(back.ops() == mixed.ops());
}

// ---- scale ----

TEST(Linearizability, ScaleTwoThousandOpsSixteenClients) {
  GenConfig cfg;
  cfg.ops = 2000;
  cfg.keys = 10;
  cfg.clients = 16;
  cfg.maxGap = 30;
  cfg.maxDuration = 200;
  cfg.pUnknown = 0.05;
  cfg.pNotApplied = 0.05;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    Rng rng(seed);
    History h = generateHistory(rng, cfg);
    auto start = std::chrono::steady_clock::now();
    LinearizabilityResult r = checkLinearizability(h);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    EXPECT_EQ(r.verdict, Verdict::Linearizable) << r.explanation;
    EXPECT_LT(r.steps, 200'000u) << "seed " << seed;
    std::printf("seed %lu: %zu ops, %lu steps, %ld ms\n", static_cast<unsigned long>(seed),
                h.size(), static_cast<unsigned long>(r.steps), static_cast<long>(ms));

    // The same history with one stale read is refuted, also quickly.
    auto gets = definiteGets(h);
    History::OpId target = gets[gets.size() / 2];
    History bad = withOutput(h, target, "never-written");
    EXPECT_EQ(checkLinearizability(bad).verdict, Verdict::NotLinearizable);
  }
}

TEST(Linearizability, ScaleOneHotKey) {
  GenConfig cfg;
  cfg.ops = 2000;
  cfg.keys = 1;
  cfg.clients = 16;
  cfg.maxGap = 30;
  cfg.maxDuration = 200;
  cfg.pUnknown = 0.05;
  cfg.pNotApplied = 0.05;
  Rng rng(42);
  History h = generateHistory(rng, cfg);
  auto start = std::chrono::steady_clock::now();
  LinearizabilityResult r = checkLinearizability(h);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - start)
                .count();
  EXPECT_EQ(r.verdict, Verdict::Linearizable) << r.explanation;
  std::printf("hot key: %zu ops, %lu steps, %ld ms\n", h.size(),
              static_cast<unsigned long>(r.steps), static_cast<long>(ms));
}

}  // namespace
}  // namespace kvr::sim
