// Shedding by queue age (issue 10): while the oldest pending write (or linearizable read)
// has waited more than ReplicaConfig::shedAfterTicks, a new one is answered Busy at once
// and is not proposed; once the queue drains, requests are admitted again.
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "core/replica.h"
#include "tests/raft/raft_harness.h"
#include "tests/raft/replica_harness.h"

namespace kvr {
namespace {
using test::votersUpTo;

constexpr uint64_t kTimeout = 100;
constexpr uint64_t kShedAfter = 25;

ReplicaConfig config(NodeId id, size_t voters) {
  ReplicaConfig c;
  c.raft.id = id;
  c.raft.electionTicks = 1000;  // no election while the test ticks
  c.initialConf = votersUpTo(voters);
  c.requestTimeoutTicks = kTimeout;
  c.shedAfterTicks = kShedAfter;
  return c;
}

class Host {
 public:
  Host(NodeId id, size_t voters)
      : replica(config(id, voters), Rng(7), transport, storage, {}) {}

  // Makes every batch handed so far durable, as a disk that catches up would.
  void drain() {
    while (!storage.seqs.empty()) {
      auto seqs = std::move(storage.seqs);
      storage.seqs.clear();
      for (uint64_t s : seqs) replica.onPersisted(s);
    }
  }
  void ticks(uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) replica.tick();
  }
  void submit(const KvCommand& cmd, std::optional<KvReply>* out) {
    replica.submit(cmd, ReadMode::Linearizable, [out](KvReply r) {
      ASSERT_FALSE(out->has_value()) << "answered twice";
      *out = std::move(r);
    });
  }

  test::CapturingTransport transport;
  test::HeldStorage storage;  // a stalled disk until drain()
  Replica replica;
};

KvCommand put(uint64_t client, uint64_t request) {
  KvCommand c;
  c.op = OpType::Put;
  c.clientId = client;
  c.requestId = request;
  c.key = "k";
  c.value = "v" + std::to_string(request);
  return c;
}

KvCommand openSession() {
  KvCommand c;
  c.op = OpType::OpenSession;
  return c;
}

KvCommand get() {
  KvCommand c;
  c.op = OpType::Get;
  c.key = "k";
  return c;
}

// A single voter that leads, with one open session; its disk then stalls.
class SingleLeader : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3000 && host.replica.status().role != Role::Leader; ++i) {
      host.ticks(1);
      host.drain();
    }
    ASSERT_EQ(host.replica.status().role, Role::Leader);
    std::optional<KvReply> open;
    host.submit(openSession(), &open);
    host.drain();
    ASSERT_TRUE(open.has_value());
    ASSERT_EQ(open->status, Status::Ok);
    client = open->clientId;
  }

  Host host{1, 1};
  uint64_t client = 0;
};

TEST_F(SingleLeader, NewWritesAreAnsweredBusyOnceTheOldestWaitedTooLong) {
  const Index last = host.replica.status().lastIndex;
  std::optional<KvReply> first, second;
  host.submit(put(client, 1), &first);  // its batch stays on the stalled disk
  EXPECT_FALSE(first.has_value());
  host.ticks(kShedAfter);
  // The oldest has waited exactly the threshold: still admitted (and proposed).
  host.submit(put(client, 2), &second);
  EXPECT_FALSE(second.has_value());
  EXPECT_EQ(host.replica.status().lastIndex, last + 2);
  EXPECT_EQ(host.replica.pendingRequests(), 2u);

  host.ticks(1);
  // Past it: a write and an OpenSession are answered Busy at once, and not proposed.
  std::optional<KvReply> shedPut, shedOpen;
  host.submit(put(client, 3), &shedPut);
  host.submit(openSession(), &shedOpen);
  ASSERT_TRUE(shedPut.has_value());
  EXPECT_EQ(shedPut->status, Status::Busy);
  ASSERT_TRUE(shedOpen.has_value());
  EXPECT_EQ(shedOpen->status, Status::Busy);
  EXPECT_EQ(host.replica.status().lastIndex, last + 2);
  EXPECT_EQ(host.replica.pendingRequests(), 2u);
  // Reads have their own queue, which is empty: a read is still served.
  std::optional<KvReply> read;
  host.submit(get(), &read);
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->status, Status::NotFound);

  // The disk catches up: the two admitted writes apply, and writes are admitted again.
  host.drain();
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_EQ(first->status, Status::Ok);
  EXPECT_EQ(second->status, Status::Ok);
  std::optional<KvReply> again;
  host.submit(put(client, 3), &again);
  EXPECT_FALSE(again.has_value());
  host.drain();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->status, Status::Ok);
}

TEST_F(SingleLeader, WritesThatTimeOutEmptyTheQueueAndAdmissionResumes) {
  std::optional<KvReply> stuck, shed;
  host.submit(put(client, 1), &stuck);
  host.ticks(kShedAfter + 1);
  host.submit(put(client, 2), &shed);
  ASSERT_TRUE(shed.has_value());
  EXPECT_EQ(shed->status, Status::Busy);
  // The disk stays stalled; the stuck write reaches its deadline (outcome unknown).
  host.ticks(kTimeout - kShedAfter - 1);
  ASSERT_TRUE(stuck.has_value());
  EXPECT_EQ(stuck->status, Status::Timeout);
  EXPECT_EQ(host.replica.pendingRequests(), 0u);
  std::optional<KvReply> admitted;
  host.submit(put(client, 2), &admitted);
  EXPECT_FALSE(admitted.has_value());
  EXPECT_EQ(host.replica.pendingRequests(), 1u);
}

// Node 2 follows node 1; its linearizable reads wait for the leader's read index, which
// the test holds back.
class Follower : public ::testing::Test {
 protected:
  void SetUp() override {
    Message hb;
    hb.type = MsgType::Heartbeat;
    hb.from = 1;
    hb.to = 2;
    hb.term = 1;
    host.replica.receive(std::move(hb));
    host.drain();
    ASSERT_EQ(host.replica.status().leader, 1u);
  }

  // The context of the newest ReadIndex node 2 asked the leader for.
  uint64_t lastReadContext() {
    for (auto it = host.transport.sent.rbegin(); it != host.transport.sent.rend(); ++it) {
      if (it->type == MsgType::ReadIndex) return it->context;
    }
    ADD_FAILURE() << "no ReadIndex sent";
    return 0;
  }

  void readIndexResp(uint64_t context) {
    host.replica.receive(test::readIndexResp(1, 2, 1, context, 0));
    host.drain();
  }

  Host host{2, 3};
};

TEST_F(Follower, NewReadsAreAnsweredBusyOnceTheOldestWaitedTooLong) {
  std::optional<KvReply> first, second, shed;
  host.submit(get(), &first);
  const uint64_t firstContext = lastReadContext();
  host.ticks(kShedAfter);
  host.submit(get(), &second);
  EXPECT_FALSE(second.has_value());
  const uint64_t secondContext = lastReadContext();
  EXPECT_NE(firstContext, secondContext);
  host.ticks(1);
  const size_t sent = host.transport.sent.size();
  host.submit(get(), &shed);
  ASSERT_TRUE(shed.has_value());
  EXPECT_EQ(shed->status, Status::Busy);
  EXPECT_EQ(host.transport.sent.size(), sent) << "a shed read asked the leader anyway";
  // Writes have their own queue: one at a follower still learns where the leader is.
  std::optional<KvReply> write;
  host.submit(put(1, 1), &write);
  ASSERT_TRUE(write.has_value());
  EXPECT_EQ(write->status, Status::NotLeader);
  EXPECT_EQ(write->leaderHint, 1u);

  // The oldest read is answered; the second is now the oldest and has waited only 1 tick.
  readIndexResp(firstContext);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->status, Status::NotFound);
  std::optional<KvReply> admitted;
  host.submit(get(), &admitted);
  EXPECT_FALSE(admitted.has_value());
  readIndexResp(secondContext);
  readIndexResp(lastReadContext());
  ASSERT_TRUE(second.has_value() && admitted.has_value());
  EXPECT_EQ(admitted->status, Status::NotFound);
}

}  // namespace
}  // namespace kvr
