// KvStore: data operations, exactly-once sessions, eviction, snapshots.
#include <gtest/gtest.h>

#include <string>

#include "core/kv.h"
#include "core/limits.h"
#include "tests/kv/kv_test_util.h"

namespace kvr {
namespace {

using test::cas;
using test::casAbsent;
using test::del;
using test::get;
using test::put;
using test::range;

// A store with one open session (id 1, opened at index 1). Next index: 2.
class KvStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KvReply r = store.apply(next++, test::openSession());
    ASSERT_EQ(r.status, Status::Ok);
    ASSERT_EQ(r.clientId, 1u);
  }

  KvReply write(KvCommand cmd) { return store.apply(next++, cmd); }
  // Writes as client 1 with the next request id.
  KvReply put1(std::string k, std::string v) { return write(put(1, ++req, k, v)); }

  std::string valueOf(const std::string& key) {
    KvReply r = store.read(get(key));
    return r.status == Status::Ok ? r.value : "<absent>";
  }

  KvStore store;
  Index next = 1;
  uint64_t req = 0;
};

TEST_F(KvStoreTest, PutThenGet) {
  KvReply r = put1("k", "v1");
  EXPECT_EQ(r.status, Status::Ok);
  EXPECT_EQ(r.index, 2u);
  EXPECT_EQ(valueOf("k"), "v1");
  put1("k", "v2");
  EXPECT_EQ(valueOf("k"), "v2");
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(store.dataBytes(), 3u);
  KvReply g = store.read(get("k"));
  EXPECT_EQ(g.index, 3u) << "reads report the applied index";
  EXPECT_EQ(store.read(get("missing")).status, Status::NotFound);
}

TEST_F(KvStoreTest, DeleteReportsWhetherTheKeyExisted) {
  put1("k", "v");
  EXPECT_EQ(write(del(1, ++req, "k")).status, Status::Ok);
  EXPECT_EQ(valueOf("k"), "<absent>");
  EXPECT_EQ(store.dataBytes(), 0u);
  KvReply r = write(del(1, ++req, "k"));
  EXPECT_EQ(r.status, Status::NotFound);
  // NotFound still counts as the session's applied request.
  KvReply again = write(del(1, req, "k"));
  EXPECT_EQ(again, r);
}

TEST_F(KvStoreTest, CasOnValue) {
  put1("k", "old");
  KvReply miss = write(cas(1, ++req, "k", "nope", "new"));
  EXPECT_EQ(miss.status, Status::CasMismatch);
  EXPECT_EQ(miss.value, "old") << "a mismatch reports the current value";
  EXPECT_EQ(valueOf("k"), "old");
  KvReply hit = write(cas(1, ++req, "k", "old", "new"));
  EXPECT_EQ(hit.status, Status::Ok);
  EXPECT_EQ(valueOf("k"), "new");
  // Expecting a value of an absent key fails, with no current value.
  KvReply absent = write(cas(1, ++req, "other", "", "x"));
  EXPECT_EQ(absent.status, Status::CasMismatch);
  EXPECT_EQ(absent.value, "");
  EXPECT_EQ(valueOf("other"), "<absent>");
}

TEST_F(KvStoreTest, CasOnAbsence) {
  KvReply created = write(casAbsent(1, ++req, "k", "first"));
  EXPECT_EQ(created.status, Status::Ok);
  EXPECT_EQ(valueOf("k"), "first");
  KvReply second = write(casAbsent(1, ++req, "k", "second"));
  EXPECT_EQ(second.status, Status::CasMismatch);
  EXPECT_EQ(second.value, "first");
  EXPECT_EQ(valueOf("k"), "first");
  EXPECT_EQ(store.dataBytes(), 6u);
}

TEST_F(KvStoreTest, RangeHonoursBoundsAndLimit) {
  for (const char* k : {"a", "b", "c", "d", "e"}) put1(k, std::string("v") + k);
  KvReply all = store.read(range("", ""));
  ASSERT_EQ(all.status, Status::Ok);
  EXPECT_EQ(all.kvs.size(), 5u);
  EXPECT_FALSE(all.more);

  KvReply mid = store.read(range("b", "d"));
  ASSERT_EQ(mid.kvs.size(), 2u);
  EXPECT_EQ(mid.kvs[0], std::make_pair(std::string("b"), std::string("vb")));
  EXPECT_EQ(mid.kvs[1].first, "c") << "the end is exclusive";
  EXPECT_FALSE(mid.more);

  KvReply limited = store.read(range("ab", "", 2));
  ASSERT_EQ(limited.kvs.size(), 2u);
  EXPECT_EQ(limited.kvs[0].first, "b") << "starts at the first key >= start";
  EXPECT_EQ(limited.kvs[1].first, "c");
  EXPECT_TRUE(limited.more);

  KvReply exact = store.read(range("c", "", 3));
  EXPECT_EQ(exact.kvs.size(), 3u);
  EXPECT_FALSE(exact.more) << "nothing left after the limit";

  EXPECT_TRUE(store.read(range("x", "")).kvs.empty());
  EXPECT_EQ(store.read(range("b", "a")).status, Status::Invalid);
  EXPECT_EQ(store.read(range("a", "", limits::kMaxRangeLimit + 1)).status, Status::Invalid);
}

TEST_F(KvStoreTest, RangeStopsAtTheReplyByteLimit) {
  const std::string big(limits::kMaxValueBytes, 'v');
  for (const char* k : {"a", "b", "c", "d", "e"}) put1(k, big);
  KvReply r = store.read(range("a", ""));
  ASSERT_EQ(r.status, Status::Ok);
  // Each pair is just over 1 MiB; four of them exceed 4 MiB.
  EXPECT_EQ(r.kvs.size(), 3u);
  EXPECT_TRUE(r.more);
}

TEST_F(KvStoreTest, RangeLimitZeroMeansTheMaximum) {
  for (uint32_t i = 0; i < limits::kMaxRangeLimit + 5; ++i) {
    store.apply(next++, put(1, ++req, "k" + std::to_string(100000 + i), ""));
  }
  KvReply r = store.read(range("", "", 0));
  EXPECT_EQ(r.kvs.size(), limits::kMaxRangeLimit);
  EXPECT_TRUE(r.more);
}

TEST_F(KvStoreTest, ReadsAreNotApplyAndWritesAreNotReads) {
  EXPECT_EQ(write(get("k")).status, Status::Invalid);
  EXPECT_EQ(write(range("a", "")).status, Status::Invalid);
  EXPECT_EQ(store.read(put(1, 1, "k", "v")).status, Status::Invalid);
  EXPECT_EQ(store.read(get("")).status, Status::Invalid);
  EXPECT_EQ(store.size(), 0u);
}

TEST_F(KvStoreTest, InvalidWritesAreAnsweredNotApplied) {
  EXPECT_EQ(write(put(1, ++req, "", "v")).status, Status::Invalid);
  EXPECT_EQ(write(put(1, 0, "k", "v")).status, Status::Invalid);
  EXPECT_EQ(write(put(1, ++req, "k", std::string(limits::kMaxValueBytes + 1, 'v'))).status,
            Status::TooLarge);
  EXPECT_EQ(store.size(), 0u);
}

TEST_F(KvStoreTest, RetriedPutReturnsTheSavedReplyAndIsNotReapplied) {
  KvReply first = write(put(1, 1, "k", "mine"));
  ASSERT_EQ(first.status, Status::Ok);
  // Another client overwrites the key.
  KvReply open2 = write(test::openSession());
  write(put(open2.clientId, 1, "k", "theirs"));
  // The first client's retry must not resurrect its value.
  KvReply retry = write(put(1, 1, "k", "mine"));
  EXPECT_EQ(retry, first) << "same reply, same index";
  EXPECT_EQ(valueOf("k"), "theirs");
}

TEST_F(KvStoreTest, RetriedCasReturnsTheSavedReply) {
  put1("k", "a");
  const uint64_t casId = ++req;
  KvReply first = write(cas(1, casId, "k", "a", "b"));
  ASSERT_EQ(first.status, Status::Ok);
  // Re-evaluated now, this cas would mismatch; the retry still reports the original Ok.
  KvReply retry = write(cas(1, casId, "k", "a", "b"));
  EXPECT_EQ(retry, first);
  EXPECT_EQ(valueOf("k"), "b");
  // A retried mismatch keeps reporting the value seen at the time, even after another
  // client made the cas able to succeed.
  const uint64_t missId = ++req;
  KvReply miss = write(cas(1, missId, "k", "zzz", "c"));
  ASSERT_EQ(miss.status, Status::CasMismatch);
  EXPECT_EQ(miss.value, "b");
  KvReply other = write(test::openSession());
  write(put(other.clientId, 1, "k", "zzz"));
  EXPECT_EQ(write(cas(1, missId, "k", "zzz", "c")), miss);
  EXPECT_EQ(valueOf("k"), "zzz");
  // Only the latest request is remembered; an older one is stale.
  EXPECT_EQ(write(cas(1, casId, "k", "a", "b")).status, Status::StaleRequest);
}

TEST_F(KvStoreTest, OlderRequestIsStale) {
  put1("k", "1");
  put1("k", "2");
  KvReply stale = write(put(1, 1, "k", "1"));
  EXPECT_EQ(stale.status, Status::StaleRequest);
  EXPECT_EQ(valueOf("k"), "2");
  // Gaps in request ids are fine: ids only need to increase.
  EXPECT_EQ(write(put(1, 100, "k", "3")).status, Status::Ok);
  EXPECT_EQ(write(put(1, 99, "k", "4")).status, Status::StaleRequest);
}

TEST_F(KvStoreTest, UnknownSessionIsExpired) {
  KvReply r = write(put(12345, 1, "k", "v"));
  EXPECT_EQ(r.status, Status::SessionExpired);
  EXPECT_EQ(valueOf("k"), "<absent>");
}

TEST_F(KvStoreTest, AppliedIndexTracksEntriesAndNoops) {
  EXPECT_EQ(store.appliedIndex(), 1u);
  store.skip(5);
  EXPECT_EQ(store.appliedIndex(), 5u);
  KvReply r = store.apply(6, put(1, 1, "k", "v"));
  EXPECT_EQ(r.index, 6u);
  EXPECT_EQ(store.appliedIndex(), 6u);
}

TEST(KvStoreEviction, LeastRecentlyActiveSessionIsEvictedAtTheCap) {
  KvStore store(KvConfig{.maxSessions = 3});
  EXPECT_EQ(store.apply(1, test::openSession()).clientId, 1u);
  EXPECT_EQ(store.apply(2, test::openSession()).clientId, 2u);
  EXPECT_EQ(store.apply(3, test::openSession()).clientId, 3u);
  // Client 1 becomes active again, so client 2 is now the least recently active.
  EXPECT_EQ(store.apply(4, put(1, 1, "k", "v")).status, Status::Ok);
  // A rejected (stale) request does not count as activity.
  EXPECT_EQ(store.apply(5, put(2, 0x7, "k", "v")).status, Status::Ok);
  EXPECT_EQ(store.apply(6, put(2, 0x6, "k", "v")).status, Status::StaleRequest);
  EXPECT_EQ(store.apply(7, put(3, 1, "k", "v")).status, Status::Ok);
  EXPECT_EQ(store.apply(8, put(1, 2, "k", "v")).status, Status::Ok);
  // Activity order now: 2 (index 5), 3 (7), 1 (8).
  EXPECT_EQ(store.sessionCount(), 3u);
  EXPECT_EQ(store.apply(9, test::openSession()).clientId, 9u);
  EXPECT_EQ(store.sessionCount(), 3u);
  EXPECT_EQ(store.apply(10, put(2, 8, "k", "v")).status, Status::SessionExpired);
  EXPECT_EQ(store.apply(11, put(3, 2, "k", "v")).status, Status::Ok);
  EXPECT_EQ(store.apply(12, put(1, 3, "k", "v")).status, Status::Ok);
  EXPECT_EQ(store.apply(13, put(9, 1, "k", "v")).status, Status::Ok);
  // Order: 3 (11), 1 (12), 9 (13): opening another evicts 3.
  store.apply(14, test::openSession());
  EXPECT_EQ(store.apply(15, put(3, 3, "k", "v")).status, Status::SessionExpired);
  EXPECT_EQ(store.apply(16, put(1, 4, "k", "v")).status, Status::Ok);
}

TEST(KvStoreEviction, IdleSessionsAreEvictedInOpeningOrder) {
  KvStore store(KvConfig{.maxSessions = 2});
  for (Index i = 1; i <= 5; ++i) store.apply(i, test::openSession());
  EXPECT_EQ(store.sessionCount(), 2u);
  for (uint64_t gone : {1, 2, 3}) {
    EXPECT_EQ(store.apply(store.appliedIndex() + 1, put(gone, 1, "k", "v")).status,
              Status::SessionExpired);
  }
  for (uint64_t live : {4, 5}) {
    EXPECT_EQ(store.apply(store.appliedIndex() + 1, put(live, 1, "k", "v")).status, Status::Ok);
  }
}

// Issue 10: an OpenSession retried after it applied leaves a session nobody uses. Those
// go before any session that ran a command, oldest first, however long ago that was.
TEST(KvStoreEviction, SessionsThatNeverRanACommandAreEvictedFirst) {
  KvStore store(KvConfig{.maxSessions = 3});
  EXPECT_EQ(store.apply(1, test::openSession()).clientId, 1u);
  EXPECT_EQ(store.apply(2, put(1, 1, "k", "v")).status, Status::Ok);
  EXPECT_EQ(store.apply(3, test::openSession()).clientId, 3u);
  EXPECT_EQ(store.apply(4, put(3, 1, "k", "v")).status, Status::Ok);
  // Orphans: each new one pushes out the oldest unused one, never client 1 (the least
  // recently active) or client 3.
  for (Index i = 5; i <= 9; ++i) EXPECT_EQ(store.apply(i, test::openSession()).clientId, i);
  EXPECT_EQ(store.sessionCount(), 3u);
  for (uint64_t gone : {5, 6, 7, 8}) {
    EXPECT_EQ(store.apply(store.appliedIndex() + 1, put(gone, 1, "k", "v")).status,
              Status::SessionExpired);
  }
  EXPECT_EQ(store.apply(14, put(1, 2, "k", "v")).status, Status::Ok);
  EXPECT_EQ(store.apply(15, put(3, 2, "k", "v")).status, Status::Ok);
  // The newest orphan (9) is kept; once it runs a command it counts as used.
  EXPECT_EQ(store.apply(16, put(9, 1, "k", "v")).status, Status::Ok);
  // Every session is used now: the least recently active (1, at 14) goes.
  EXPECT_EQ(store.apply(17, test::openSession()).clientId, 17u);
  EXPECT_EQ(store.apply(18, put(1, 3, "k", "v")).status, Status::SessionExpired);
  // Left: 3 (active at 15), 9 (16) and 17, unused. Which sessions are unused survives a
  // snapshot: restored, the next OpenSession evicts 17, not 3, the least recently active.
  KvStore copy(KvConfig{.maxSessions = 3});
  ASSERT_TRUE(copy.restore(store.snapshot()));
  copy.apply(19, test::openSession());
  EXPECT_EQ(copy.apply(20, put(17, 1, "k", "v")).status, Status::SessionExpired);
  EXPECT_EQ(copy.apply(21, put(3, 3, "k", "v")).status, Status::Ok);
  EXPECT_EQ(copy.apply(22, put(9, 2, "k", "v")).status, Status::Ok);
}

// A store with data, several sessions (one with a saved mismatch reply) and a gap.
KvStore populated() {
  KvStore s(KvConfig{.maxSessions = 4});
  s.apply(1, test::openSession());
  s.apply(2, put(1, 1, "a", "1"));
  s.apply(3, test::openSession());
  s.apply(4, put(3, 1, "b", std::string(1000, 'b')));
  s.apply(5, cas(3, 2, "a", "x", "2"));
  s.skip(7);
  s.apply(8, del(1, 2, "nothing"));
  s.apply(9, test::openSession());
  return s;
}

TEST(KvStoreSnapshot, RestoreReproducesTheWholeState) {
  KvStore a = populated();
  KvStore b(KvConfig{.maxSessions = 4});
  ASSERT_TRUE(b.restore(a.snapshot()));
  EXPECT_EQ(b.digest(), a.digest());
  EXPECT_EQ(b.snapshot(), a.snapshot());
  EXPECT_EQ(b.appliedIndex(), 9u);
  EXPECT_EQ(b.data(), a.data());
  EXPECT_EQ(b.dataBytes(), a.dataBytes());
  EXPECT_EQ(b.sessionCount(), 3u);
  EXPECT_EQ(b.read(range("", "")), a.read(range("", "")));
  // Sessions came across with their saved replies.
  KvReply retryA = a.apply(10, cas(3, 2, "a", "x", "2"));
  KvReply retryB = b.apply(10, cas(3, 2, "a", "x", "2"));
  EXPECT_EQ(retryA.status, Status::CasMismatch);
  EXPECT_EQ(retryA.value, "1");
  EXPECT_EQ(retryA.index, 5u);
  EXPECT_EQ(retryB, retryA);
  EXPECT_EQ(b.apply(11, put(1, 1, "z", "z")).status, Status::StaleRequest);
  EXPECT_EQ(a.apply(11, put(1, 1, "z", "z")).status, Status::StaleRequest);
  // The activity order came across too: the next open evicts the same session.
  a.apply(12, test::openSession());
  b.apply(12, test::openSession());
  EXPECT_EQ(a.digest(), b.digest());
}

TEST(KvStoreSnapshot, DigestChangesWithState) {
  KvStore a = populated();
  KvStore b = populated();
  EXPECT_EQ(a.digest(), b.digest());
  a.apply(10, put(1, 3, "a", "1"));
  b.apply(10, put(1, 3, "a", "other"));
  EXPECT_NE(a.digest(), b.digest());
  // Same data and applied index; only a session's saved request differs.
  KvStore c1 = populated();
  KvStore c2 = populated();
  c1.apply(10, put(1, 3, "a", "1"));
  c2.apply(10, put(1, 4, "a", "1"));
  EXPECT_EQ(c1.data(), c2.data());
  EXPECT_NE(c1.digest(), c2.digest());
  KvStore c = populated();
  c.skip(10);
  EXPECT_NE(c.digest(), populated().digest()) << "the applied index is part of the state";
  EXPECT_NE(KvStore().digest(), populated().digest());
}

TEST(KvStoreSnapshot, RestoreRejectsGarbageAndLeavesTheStoreUnchanged) {
  KvStore target = populated();
  const uint64_t before = target.digest();
  const std::string good = KvStore().snapshot();
  std::string snap = populated().snapshot();

  EXPECT_FALSE(target.restore(""));
  EXPECT_FALSE(target.restore("garbage bytes that are not a snapshot"));
  EXPECT_FALSE(target.restore(snap.substr(0, snap.size() - 1)));
  EXPECT_FALSE(target.restore(snap + "x"));
  for (size_t i = 0; i < snap.size(); i += 7) {
    std::string flipped = snap;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x10);
    EXPECT_FALSE(target.restore(flipped)) << "byte " << i;
  }
  // Past the checksum, the body is validated too.
  std::string badMagic = snap;
  badMagic[0] = 'X';
  EXPECT_FALSE(target.restore(test::reseal(badMagic)));
  ASSERT_GT(snap.size(), 8u);
  // The body plus one stray byte, then the checksum (recomputed by reseal).
  std::string trailing = snap.substr(0, snap.size() - 8) + '\0' + std::string(8, '\0');
  EXPECT_FALSE(target.restore(test::reseal(trailing)));
  EXPECT_EQ(target.digest(), before);
  EXPECT_EQ(target.appliedIndex(), 9u);

  // An empty store's snapshot is valid and does replace the state.
  EXPECT_TRUE(target.restore(good));
  EXPECT_EQ(target.size(), 0u);
  EXPECT_EQ(target.sessionCount(), 0u);
}

TEST(KvStoreSnapshot, RestoreRejectsInconsistentBodies) {
  KvStore target;
  // Hand-built bodies: "KVS\1", applied, pairs..., sessions...
  auto body = [](std::string rest) {
    return test::reseal(std::string("KVS\x01", 4) + rest + std::string(8, '\0'));
  };
  EXPECT_TRUE(target.restore(body(std::string("\x05\x01\x01k\x01v\x00", 7))));
  EXPECT_EQ(target.read(get("k")).value, "v");
  // Keys out of order / duplicated / empty.
  EXPECT_FALSE(target.restore(body(std::string("\x05\x02\x01k\x00\x01j\x00\x00", 9))));
  EXPECT_FALSE(target.restore(body(std::string("\x05\x02\x01k\x00\x01k\x00\x00", 9))));
  EXPECT_FALSE(target.restore(body(std::string("\x05\x01\x00\x00\x00", 5))));
  // Session id 0; session active after the applied index; active before it opened.
  const std::string reply = encodeReply(KvReply{});
  const std::string r = std::string(1, static_cast<char>(reply.size())) + reply;
  EXPECT_TRUE(target.restore(body(std::string("\x05\x00\x01\x02\x01\x03", 6) + r)));
  EXPECT_EQ(target.sessionCount(), 1u);
  EXPECT_FALSE(target.restore(body(std::string("\x05\x00\x01\x00\x01\x03", 6) + r)));
  EXPECT_FALSE(target.restore(body(std::string("\x05\x00\x01\x02\x01\x06", 6) + r)));
  EXPECT_FALSE(target.restore(body(std::string("\x05\x00\x01\x03\x01\x02", 6) + r)));
  // Two sessions last active at the same index; sessions out of order.
  EXPECT_FALSE(target.restore(body(std::string("\x05\x00\x02\x01\x01\x03", 6) + r +
                                   std::string("\x02\x01\x03", 3) + r)));
  EXPECT_FALSE(target.restore(body(std::string("\x05\x00\x02\x02\x01\x03", 6) + r +
                                   std::string("\x01\x01\x04", 3) + r)));
  EXPECT_TRUE(target.restore(body(std::string("\x05\x00\x02\x01\x01\x03", 6) + r +
                                  std::string("\x02\x01\x04", 3) + r)));
  EXPECT_EQ(target.sessionCount(), 2u);
  // A saved reply that does not decode.
  EXPECT_FALSE(target.restore(body(std::string("\x05\x00\x01\x02\x01\x03\x01\x07", 8))));
  // More sessions than this store allows.
  KvStore small(KvConfig{.maxSessions = 1});
  EXPECT_FALSE(small.restore(body(std::string("\x05\x00\x02\x01\x01\x03", 6) + r +
                                  std::string("\x02\x01\x04", 3) + r)));
}

}  // namespace
}  // namespace kvr
