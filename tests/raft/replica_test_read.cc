// The replica's read path across a restart: a read answer addressed to an earlier
// incarnation of the node must never answer a read of the current one (kvsim seed
// 5142214: a ReadIndexResp delayed past a restart served a stale value).
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "core/replica.h"
#include "tests/raft/raft_harness.h"
#include "tests/raft/replica_harness.h"

namespace kvr {
namespace {
using test::CapturingTransport;
using test::votersUpTo;

// One incarnation of node 2, a follower of node 1 in term 3 with a committed log.
class Incarnation {
 public:
  explicit Incarnation(uint64_t seed)
      : replica_(config(), Rng(seed), transport_, storage_, recovered()) {
    drain();
    Message hb;
    hb.type = MsgType::Heartbeat;
    hb.from = 1;
    hb.to = 2;
    hb.term = 3;
    hb.commit = 3;
    replica_.receive(std::move(hb));
    drain();
  }

  // Three no-op entries of terms 1..3, all committed.
  static RecoveredState recovered() {
    RecoveredState r;
    r.hardState.term = 3;
    r.hardState.commit = 3;
    for (Index i = 1; i <= 3; ++i) {
      Entry e;
      e.term = i;
      e.index = i;
      r.entries.push_back(e);
    }
    return r;
  }

  static ReplicaConfig config() {
    ReplicaConfig c;
    c.raft.id = 2;
    c.initialConf = votersUpTo(3);
    return c;
  }

  // Persists whatever is queued, as a host would, so messages may leave.
  void drain() {
    while (!storage_.seqs.empty()) {
      auto seqs = std::move(storage_.seqs);
      storage_.seqs.clear();
      for (uint64_t s : seqs) replica_.onPersisted(s);
    }
  }

  // Submits a linearizable get; returns the context of the ReadIndex it sent.
  uint64_t get(std::optional<KvReply>* out) {
    transport_.sent.clear();
    KvCommand cmd;
    cmd.op = OpType::Get;
    cmd.key = "k";
    replica_.submit(cmd, ReadMode::Linearizable, [out](KvReply r) { *out = std::move(r); });
    drain();
    for (auto& m : transport_.sent) {
      if (m.type == MsgType::ReadIndex) return m.context;
    }
    ADD_FAILURE() << "the follower sent no ReadIndex to its leader";
    return 0;
  }

  void readIndexResp(uint64_t context, Index index) {
    replica_.receive(test::readIndexResp(1, 2, 3, context, index));
    drain();
  }

 private:
  CapturingTransport transport_;
  test::HeldStorage storage_;
  Replica replica_;
};

TEST(ReplicaRead, AnswerToAnEarlierIncarnationDoesNotServeANewRead) {
  // Many host seeds: the property must hold for every restart, not a lucky one.
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    uint64_t oldContext;
    {
      Incarnation before(seed * 7919);
      std::optional<KvReply> unused;
      oldContext = before.get(&unused);
    }  // crash: the answer to oldContext is still on the wire
    Incarnation after(seed * 7919 + 1);
    std::optional<KvReply> reply;
    uint64_t context = after.get(&reply);
    ASSERT_FALSE(reply.has_value());
    after.readIndexResp(oldContext, 1);  // late: names a read index from before
    if (context != oldContext) {
      EXPECT_FALSE(reply.has_value()) << "seed " << seed << ": served by a stale answer";
    } else {
      ADD_FAILURE() << "seed " << seed << ": a restarted node reused read context " << context;
    }
    after.readIndexResp(context, 3);
    ASSERT_TRUE(reply.has_value()) << "seed " << seed;
    EXPECT_EQ(reply->status, Status::NotFound);
  }
}

}  // namespace
}  // namespace kvr
