// The client library against fake KvService nodes on loopback, all on one kj event loop:
// leader discovery through hints, advertised leader addresses and status(), lazy
// sessions, request ids kept across retries, write ordering per session, deadlines and
// what they say (not applied / outcome unknown), local checks, disconnects.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/vector.h>

#include "net/kv_client.h"
#include "schemas/codec.h"
#include "schemas/kv.capnp.h"

namespace kvr::client {
namespace {

// What the whole fake cluster shares: who leads, the data and the sessions.
struct FakeCluster {
  NodeId leader = 3;
  std::map<std::string, std::string> data;
  std::map<uint64_t, uint64_t> lastRequest;  // session -> last applied request id
  uint64_t nextSession = 100;
  int applied = 0;                          // writes applied (not deduplicated replays)
  int timeoutsToInject = 0;                 // answer Timeout after applying, this many times
  bool loseLeaderOnTimeout = false;         // after an injected Timeout, no node leads
  std::vector<KvCommand> received;          // every command any node received
  std::map<NodeId, std::string> addresses;  // each node's endpoint
  bool advertise = true;    // NotLeader replies and status name the leader's address
  int batches = 0;          // callBatch calls received
  size_t largestBatch = 0;  // most commands in one of them
  int moveLeaderAfter = 0;  // > 0: after this many more commands, nextLeader leads
  NodeId nextLeader = kNoNode;
  bool holdBatches = false;    // answer batches only when released (held)
  uint32_t answerDelayMs = 0;  // > 0: call() and callBatch() answer after this long
  int busyToInject = 0;        // the leader answers Busy (applying nothing) this many times
  std::vector<kj::TimePoint> busyAt;  // when each Busy was answered
  std::vector<kj::Own<kj::PromiseFulfiller<void>>> held;
  kj::Timer* timer = nullptr;
};

class FakeNode final : public schema::KvService::Server {
 public:
  FakeNode(NodeId id, FakeCluster& cluster) : id_(id), cluster_(cluster) {}

  kj::Promise<void> call(CallContext context) override {
    KvCommand cmd = codec::fromCapnp(context.getParams().getCommand());
    cluster_.received.push_back(cmd);
    KvReply reply = handle(cmd, context.getParams().getStale());
    auto out = context.getResults().initReply();
    codec::toCapnp(reply, out);
    if (reply.status == Status::NotLeader) out.setLeaderAddr(leaderAddr());
    if (cluster_.answerDelayMs > 0) {
      return cluster_.timer->afterDelay(cluster_.answerDelayMs * kj::MILLISECONDS);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> callBatch(CallBatchContext context) override {
    auto items = context.getParams().getItems();
    ++cluster_.batches;
    cluster_.largestBatch = std::max<size_t>(cluster_.largestBatch, items.size());
    auto out = context.getResults().initReplies(items.size());
    for (uint i = 0; i < items.size(); ++i) {
      KvCommand cmd = codec::fromCapnp(items[i].getCommand());
      cluster_.received.push_back(cmd);
      KvReply reply = handle(cmd, items[i].getStale());
      codec::toCapnp(reply, out[i]);
      if (reply.status == Status::NotLeader) out[i].setLeaderAddr(leaderAddr());
      if (cluster_.moveLeaderAfter > 0 && --cluster_.moveLeaderAfter == 0) {
        cluster_.leader = cluster_.nextLeader;
      }
    }
    if (cluster_.holdBatches) {
      // Answer later (a slow node): the client gathers what it queues meanwhile.
      auto paf = kj::newPromiseAndFulfiller<void>();
      cluster_.held.push_back(kj::mv(paf.fulfiller));
      return kj::mv(paf.promise);
    }
    if (cluster_.answerDelayMs > 0) {
      return cluster_.timer->afterDelay(cluster_.answerDelayMs * kj::MILLISECONDS);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> status(StatusContext context) override {
    auto s = context.getResults().initStatus();
    s.setId(id_);
    s.setRole(cluster_.leader == id_ ? "leader" : "follower");
    s.setTerm(7);
    s.setLeader(cluster_.leader);
    s.setLeaderAddr(leaderAddr());
    return kj::READY_NOW;
  }

 private:
  std::string leaderAddr() const {
    if (!cluster_.advertise || cluster_.leader == kNoNode) return "";
    return cluster_.addresses[cluster_.leader];
  }

  KvReply handle(const KvCommand& cmd, bool stale) {
    KvReply r;
    r.leaderHint = cluster_.leader;
    if (cluster_.leader != id_ && !(stale && !cmd.isWrite())) {
      r.status = Status::NotLeader;
      return r;
    }
    if (cluster_.busyToInject > 0) {
      --cluster_.busyToInject;
      cluster_.busyAt.push_back(cluster_.timer->now());
      r.status = Status::Busy;  // shed: nothing applied
      return r;
    }
    switch (cmd.op) {
      case OpType::OpenSession:
        r.clientId = cluster_.nextSession++;
        cluster_.lastRequest[r.clientId] = 0;
        return r;
      case OpType::Get: {
        auto it = cluster_.data.find(cmd.key);
        if (it == cluster_.data.end()) {
          r.status = Status::NotFound;
        } else {
          r.value = it->second;
        }
        return r;
      }
      case OpType::Put: {
        auto s = cluster_.lastRequest.find(cmd.clientId);
        if (s == cluster_.lastRequest.end()) {
          r.status = Status::SessionExpired;
          return r;
        }
        if (cmd.requestId > s->second) {
          s->second = cmd.requestId;
          cluster_.data[cmd.key] = cmd.value;
          ++cluster_.applied;
        } else if (cmd.requestId < s->second) {
          r.status = Status::StaleRequest;
          return r;
        }
        if (cluster_.timeoutsToInject > 0) {
          --cluster_.timeoutsToInject;
          r.status = Status::Timeout;  // applied, but the client is not told so
          if (cluster_.loseLeaderOnTimeout) cluster_.leader = kNoNode;
        }
        return r;
      }
      default: r.status = Status::Invalid; return r;
    }
  }

  NodeId id_;
  FakeCluster& cluster_;
};

// Everything on the kj loop; kj destructors may throw, which gtest fixtures may not.
struct Loop {
  struct Ignore : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  };
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Vector<kj::Own<capnp::TwoPartyServer>> servers;
  Ignore ignore;
  kj::TaskSet serving{ignore};
};

class ClientTest : public testing::Test {
 protected:
  ClientTest() : loop_(std::make_unique<Loop>()), io_(loop_->io) {
    cluster_.timer = &io_.provider->getTimer();
  }

  // Starts nodes 1..n; returns their endpoints.
  std::vector<std::string> start(int n) {
    std::vector<std::string> endpoints;
    for (int id = 1; id <= n; ++id) {
      auto listener =
          io_.provider->getNetwork().parseAddress("127.0.0.1", 0).wait(io_.waitScope)->listen();
      endpoints.push_back("127.0.0.1:" + std::to_string(listener->getPort()));
      cluster_.addresses[NodeId(id)] = endpoints.back();
      auto server = kj::heap<capnp::TwoPartyServer>(kj::heap<FakeNode>(NodeId(id), cluster_));
      loop_->serving.add(server->listen(*listener).attach(kj::mv(listener)));
      loop_->servers.add(kj::mv(server));
    }
    return endpoints;
  }

  template <typename T>
  T wait(kj::Promise<T>&& p) {
    return p.wait(io_.waitScope);
  }

  // Runs the loop until `done` holds (true) or `ms` pass (false).
  bool waitFor(const std::function<bool()>& done, int ms = 2000) {
    for (int waited = 0; !done(); ++waited) {
      if (waited >= ms) return false;
      io_.provider->getTimer().afterDelay(1 * kj::MILLISECONDS).wait(io_.waitScope);
    }
    return true;
  }

  FakeCluster cluster_;
  std::unique_ptr<Loop> loop_;
  kj::AsyncIoContext& io_;
};

TEST_F(ClientTest, WriteThroughFollowerFollowsHintAndOpensOneSession) {
  auto endpoints = start(3);
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, {});
  AsyncKvClient c(ch);
  Result r = wait(c.put("k", "v1"));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.clientId, 100u);
  EXPECT_EQ(r.requestId, 1u);
  r = wait(c.put("k", "v2"));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.requestId, 2u);
  r = wait(c.get("k"));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.value, "v2");
  EXPECT_EQ(cluster_.nextSession, 101u) << "exactly one session opened";
  EXPECT_EQ(wait(c.get("absent")).outcome, Outcome::NotFound);
}

TEST_F(ClientTest, RetryAfterTimeoutKeepsRequestIdAndAppliesOnce) {
  auto endpoints = start(3);
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, {});
  AsyncKvClient c(ch);
  ASSERT_TRUE(wait(c.openSession()).ok());
  cluster_.received.clear();
  cluster_.timeoutsToInject = 3;
  Result r = wait(c.put("k", "v"));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(cluster_.applied, 1);
  EXPECT_GE(r.attempts, 4u);
  size_t puts = 0;
  for (auto& cmd : cluster_.received) {
    if (cmd.op != OpType::Put) continue;
    ++puts;
    EXPECT_EQ(cmd.requestId, 1u);
    EXPECT_EQ(cmd.clientId, 100u);
  }
  EXPECT_EQ(puts, 4u);
}

TEST_F(ClientTest, ConcurrentWritesOfOneSessionGoInOrder) {
  auto endpoints = start(3);
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, {});
  AsyncKvClient a(ch), b(ch);
  constexpr int kN = 20;
  auto all = kj::heapArrayBuilder<kj::Promise<Result>>(2 * kN);
  for (int i = 0; i < kN; ++i) {
    all.add(a.put("a", std::to_string(i)));
    all.add(b.put("b", std::to_string(i)));
  }
  auto results = wait(kj::joinPromises(all.finish()));
  for (auto& r : results) ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(cluster_.data["a"], "19");
  EXPECT_EQ(cluster_.data["b"], "19");
  EXPECT_EQ(cluster_.applied, 40);
  std::map<uint64_t, uint64_t> last;
  for (auto& cmd : cluster_.received) {
    if (cmd.op != OpType::Put) continue;
    EXPECT_GT(cmd.requestId, last[cmd.clientId])
        << "request ids must reach the leader in order";
    last[cmd.clientId] = cmd.requestId;
  }
  EXPECT_EQ(last.size(), 2u);
}

TEST_F(ClientTest, NoLeaderEndsWithAReadableErrorAtTheDeadline) {
  auto endpoints = start(3);
  cluster_.leader = kNoNode;
  Options o;
  o.timeoutMs = 300;
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, o);
  AsyncKvClient c(ch);
  auto before = io_.provider->getTimer().now();
  Result r = wait(c.get("k"));
  auto took = io_.provider->getTimer().now() - before;
  EXPECT_EQ(r.outcome, Outcome::Error);
  EXPECT_NE(r.error.find("not_leader"), std::string::npos) << r.error;
  EXPECT_LT(took, 2 * kj::SECONDS);
  EXPECT_GE(took, 250 * kj::MILLISECONDS);
}

// No leader, and a node slow to say so: the deadline must not cut a last attempt short
// (a write timed out there could have applied, which would turn the definite "not
// applied" of every answer before it into "outcome unknown").
TEST_F(ClientTest, NoLeaderSlowAnswersStayNotAppliedAtTheDeadline) {
  auto endpoints = start(1);
  cluster_.leader = kNoNode;
  cluster_.answerDelayMs = 30;
  // Timeouts of 500 ms and more: no attempt starts with less than 50 ms left, above the
  // node's 30 ms. Without that floor 2 of 8 such runs ended "outcome unknown".
  for (uint32_t timeoutMs = 500; timeoutMs < 1000; timeoutMs += 50) {
    Options o;
    o.timeoutMs = timeoutMs;
    ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, o);
    AsyncKvClient c(ch);
    Result r = wait(c.openSession());
    SCOPED_TRACE(timeoutMs);
    EXPECT_EQ(r.outcome, Outcome::Error);
    EXPECT_FALSE(r.maybeApplied) << r.error;
    EXPECT_EQ(r.error.rfind("not applied", 0), 0u) << r.error;
    EXPECT_NE(r.error.find("no leader within"), std::string::npos) << r.error;
  }
}

TEST_F(ClientTest, OneFollowerIsEnoughItsLeaderAddressIsFollowed) {
  auto endpoints = start(3);  // node 3 leads
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), {endpoints[0]}, {});
  AsyncKvClient c(ch);
  Result r = wait(c.put("k", "v1"));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.attempts, 1u) << "the session's NotLeader already led to node 3";
  EXPECT_EQ(cluster_.data["k"], "v1");
  EXPECT_EQ(ch.knownEndpoints(), (std::vector<std::string>{endpoints[0], endpoints[2]}));
  EXPECT_EQ(ch.endpoints(), std::vector<std::string>{endpoints[0]});
  // The leader moves to node 2, also not configured: followed again, learned once.
  cluster_.leader = 2;
  r = wait(c.put("k", "v2"));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.attempts, 2u);
  EXPECT_EQ(ch.knownEndpoints().size(), 3u);
  EXPECT_EQ(wait(ch.statusAll()).size(), 1u) << "status covers the configured endpoints";
}

TEST_F(ClientTest, NotLeaderWithAnUnknownLeaderAddressFailsAtOnceAsNotApplied) {
  auto endpoints = start(3);
  cluster_.advertise = false;  // like a node that does not know its leader's address
  Options o;
  o.clientId = 100;  // an open session: the put itself meets the NotLeader
  cluster_.lastRequest[100] = 0;
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), {endpoints[0]}, o);
  AsyncKvClient c(ch);
  auto before = io_.provider->getTimer().now();
  Result r = wait(c.put("k", "v"));
  auto took = io_.provider->getTimer().now() - before;
  EXPECT_EQ(r.outcome, Outcome::Error);
  EXPECT_FALSE(r.maybeApplied);
  EXPECT_EQ(r.status, Status::NotLeader);
  EXPECT_EQ(r.error.rfind("not applied: ", 0), 0u) << r.error;
  EXPECT_NE(r.error.find("the leader is node 3"), std::string::npos) << r.error;
  EXPECT_EQ(r.attempts, 1u);
  EXPECT_LT(took, 500 * kj::MILLISECONDS);
  EXPECT_TRUE(cluster_.data.empty());
}

TEST_F(ClientTest, NoLeaderIsNotAppliedAtTheDeadlineAndAnUnansweredWriteIsUnknown) {
  auto endpoints = start(3);
  cluster_.leader = kNoNode;
  cluster_.lastRequest[100] = 0;
  Options o;
  o.timeoutMs = 300;
  o.clientId = 100;
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, o);
  AsyncKvClient c(ch);
  Result r = wait(c.put("k", "v"));
  EXPECT_EQ(r.outcome, Outcome::Error);
  EXPECT_FALSE(r.maybeApplied);
  EXPECT_EQ(r.error.rfind("not applied: no leader within 300 ms", 0), 0u) << r.error;
  EXPECT_LT(r.attempts, 20u) << "backs off while no leader is known";

  // Applied, answered Timeout, then no leader: the client cannot know, and says so.
  cluster_.leader = 3;
  cluster_.timeoutsToInject = 1;
  cluster_.loseLeaderOnTimeout = true;
  r = wait(c.put("k", "v2"));
  EXPECT_EQ(r.outcome, Outcome::Error);
  EXPECT_TRUE(r.maybeApplied);
  EXPECT_EQ(r.error.rfind("outcome unknown", 0), 0u) << r.error;
  EXPECT_EQ(cluster_.data["k"], "v2");

  // A session that cannot be opened: the write was never sent.
  AsyncKvClient fresh(ch, Options{});
  r = wait(fresh.put("k", "v3"));
  EXPECT_FALSE(r.maybeApplied);
  EXPECT_EQ(r.error.rfind("not applied: cannot open a session: no leader", 0), 0u) << r.error;
}

// Issue 10: a node that sheds load answers Busy. The client retries the same request
// after pauses that double from backoffMinMs up to backoffMaxMs, each at least half of
// its bound (jitter), and Busy never makes a write "outcome unknown".
TEST_F(ClientTest, BusyIsRetriedAfterGrowingBoundedPausesAndIsNeverMaybeApplied) {
  auto endpoints = start(1);
  cluster_.leader = 1;
  cluster_.lastRequest[100] = 0;
  Options o;
  o.clientId = 100;
  o.backoffMinMs = 20;
  o.backoffMaxMs = 80;
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, o);
  AsyncKvClient c(ch);
  cluster_.busyToInject = 6;
  Result r = wait(c.put("k", "v"));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.attempts, 7u);
  EXPECT_EQ(cluster_.applied, 1);
  ASSERT_EQ(cluster_.busyAt.size(), 6u);
  const int bounds[] = {20, 40, 80, 80, 80};  // the pause after Busy number 1..5
  for (size_t i = 1; i < cluster_.busyAt.size(); ++i) {
    auto gap = cluster_.busyAt[i] - cluster_.busyAt[i - 1];
    EXPECT_GE(gap, bounds[i - 1] / 2 * kj::MILLISECONDS) << "pause " << i;
  }

  // Busy until the deadline: definitely not applied, and the pauses kept it to a few
  // attempts.
  cluster_.busyToInject = 1000;
  o.timeoutMs = 400;
  ClusterChannel ch2(*io_.provider, io_.provider->getTimer(), endpoints, o);
  AsyncKvClient c2(ch2);
  r = wait(c2.put("k", "v2"));
  EXPECT_EQ(r.outcome, Outcome::Error);
  EXPECT_FALSE(r.maybeApplied);
  EXPECT_EQ(r.status, Status::Busy);
  EXPECT_EQ(r.error.rfind("not applied: ", 0), 0u) << r.error;
  EXPECT_LE(r.attempts, 400u / 40 + 2) << "pauses of at least 10, 20, then 40 ms";
  EXPECT_EQ(cluster_.data["k"], "v");
}

TEST_F(ClientTest, StaleReadServedByTheFirstEndpoint) {
  auto endpoints = start(3);
  cluster_.data["k"] = "v";
  Options o;
  o.stale = true;
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, o);
  AsyncKvClient c(ch);
  cluster_.leader = kNoNode;
  Result r = wait(c.get("k"));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.value, "v");
}

TEST_F(ClientTest, DeadEndpointIsSkipped) {
  auto endpoints = start(3);
  // A port nobody listens on, first in the list.
  auto dead =
      io_.provider->getNetwork().parseAddress("127.0.0.1", 0).wait(io_.waitScope)->listen();
  std::string deadEndpoint = "127.0.0.1:" + std::to_string(dead->getPort());
  dead = nullptr;
  endpoints.insert(endpoints.begin(), deadEndpoint);
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, {});
  AsyncKvClient c(ch);
  Result r = wait(c.put("k", "v"));
  ASSERT_TRUE(r.ok()) << r.error;
  auto st = wait(ch.statusAll());
  ASSERT_EQ(st.size(), 4u);
  EXPECT_FALSE(st[0].reachable);
  EXPECT_FALSE(st[0].error.empty());
  EXPECT_EQ(st[3].role, "leader");
  Health h = wait(ch.health());
  EXPECT_FALSE(h.healthy);
  EXPECT_EQ(h.leader, 3u);
}

TEST_F(ClientTest, LocalCheckRejectsWithoutARoundTrip) {
  auto endpoints = start(1);
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, {});
  AsyncKvClient c(ch);
  Result r = wait(c.put("", "v"));
  EXPECT_EQ(r.outcome, Outcome::Error);
  EXPECT_EQ(r.status, Status::Invalid);
  r = wait(c.put(std::string(5000, 'k'), "v"));
  EXPECT_EQ(r.status, Status::TooLarge);
  EXPECT_NE(r.error.find("key"), std::string::npos) << r.error;
  EXPECT_TRUE(cluster_.received.empty());
}

TEST_F(ClientTest, ExplicitSessionAndRequestIdAreUsed) {
  auto endpoints = start(3);
  cluster_.lastRequest[55] = 4;
  Options o;
  o.clientId = 55;
  o.firstRequestId = 5;
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, o);
  AsyncKvClient c(ch);
  ASSERT_TRUE(wait(c.put("k", "v1")).ok());
  ASSERT_TRUE(wait(c.put("k", "v2")).ok());
  AsyncKvClient retry(ch);  // same (55, 5) again: a stale retry
  Result r = wait(retry.put("k", "v1"));
  EXPECT_EQ(r.outcome, Outcome::Error);
  EXPECT_EQ(r.status, Status::StaleRequest);
  EXPECT_EQ(cluster_.data["k"], "v2");
  EXPECT_EQ(cluster_.nextSession, 100u) << "no session opened";
}

// N clients with open sessions (ids 100..), each with its own AsyncKvClient.
std::vector<std::unique_ptr<AsyncKvClient>> clientsWithSessions(ClusterChannel& ch,
                                                                FakeCluster& cluster, int n) {
  std::vector<std::unique_ptr<AsyncKvClient>> out;
  for (int i = 0; i < n; ++i) {
    Options o;
    o.clientId = 100 + i;
    cluster.lastRequest[o.clientId] = 0;
    out.push_back(std::make_unique<AsyncKvClient>(ch, o));
  }
  cluster.nextSession = 100 + n;
  return out;
}

TEST_F(ClientTest, RequestsPendingOnAConnectionShareOneBatch) {
  auto endpoints = start(3);
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), {endpoints[2]}, {});
  auto clients = clientsWithSessions(ch, cluster_, 32);
  cluster_.data["r"] = "x";
  auto all = kj::heapArrayBuilder<kj::Promise<Result>>(64);
  for (int i = 0; i < 32; ++i) {
    all.add(clients[i]->put("k" + std::to_string(i), std::to_string(i)));
    all.add(clients[i]->get("r"));
  }
  auto results = wait(kj::joinPromises(all.finish()));
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].error;
    EXPECT_EQ(results[i].attempts, 1u);
    if (i % 2 == 0) {
      EXPECT_EQ(results[i].clientId, 100u + i / 2);
      EXPECT_EQ(results[i].requestId, 1u);
    } else {
      EXPECT_EQ(results[i].value, "x");
    }
  }
  EXPECT_EQ(cluster_.applied, 32);
  EXPECT_EQ(cluster_.batches, 1) << "what one turn queues goes in one batch";
  EXPECT_EQ(cluster_.largestBatch, 64u);

  // Group commit: while a batch is in flight, what is queued waits for it, then goes
  // together.
  cluster_.holdBatches = true;
  cluster_.batches = 0;
  cluster_.largestBatch = 0;
  auto first = clients[0]->put("k0", "again");
  ASSERT_TRUE(waitFor([&]() { return cluster_.batches == 1; }));
  auto rest = kj::heapArrayBuilder<kj::Promise<Result>>(31);
  for (int i = 1; i < 32; ++i) rest.add(clients[i]->put("k" + std::to_string(i), "again"));
  auto restDone = kj::joinPromises(rest.finish());
  ASSERT_FALSE(waitFor([&]() { return cluster_.batches > 1; }, 50))
      << "sent while a batch was in flight";
  cluster_.holdBatches = false;
  for (auto& f : cluster_.held) f->fulfill();
  cluster_.held.clear();
  EXPECT_TRUE(wait(kj::mv(first)).ok());
  for (auto& r : wait(kj::mv(restDone))) EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(cluster_.batches, 2);
  EXPECT_EQ(cluster_.largestBatch, 31u);
}

TEST_F(ClientTest, BatchSpanningALeaderChangeRetriesEachRefusedMember) {
  auto endpoints = start(3);
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, {});
  auto clients = clientsWithSessions(ch, cluster_, 10);
  ASSERT_TRUE(wait(clients[0]->put("warm", "up")).ok());  // the channel finds node 3
  cluster_.received.clear();
  cluster_.batches = 0;
  // Node 3 applies the first 4 commands of the next batch, then node 2 leads: the other
  // 6 are answered NotLeader (not applied) and must go to node 2, each once.
  cluster_.moveLeaderAfter = 4;
  cluster_.nextLeader = 2;
  auto all = kj::heapArrayBuilder<kj::Promise<Result>>(10);
  for (int i = 0; i < 10; ++i) all.add(clients[i]->put("k" + std::to_string(i), "v"));
  auto results = wait(kj::joinPromises(all.finish()));
  std::map<uint64_t, int> sent;
  for (auto& cmd : cluster_.received) ++sent[cmd.clientId];
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].error;
    EXPECT_EQ(results[i].requestId, i == 0 ? 2u : 1u);
    EXPECT_EQ(results[i].attempts, i < 4 ? 1u : 2u) << i;
    EXPECT_EQ(sent[100 + i], i < 4 ? 1 : 2) << i;
    EXPECT_EQ(cluster_.data["k" + std::to_string(i)], "v");
  }
  EXPECT_EQ(cluster_.applied, 11);
  EXPECT_EQ(cluster_.batches, 2) << "the refused members went on together";
}

TEST_F(ClientTest, TimeoutOfOneBatchMemberRetriesItAloneWithItsRequestId) {
  auto endpoints = start(1);
  cluster_.leader = 1;
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, {});
  auto clients = clientsWithSessions(ch, cluster_, 8);
  cluster_.timeoutsToInject = 1;  // the first put of the batch applies, answers Timeout
  auto all = kj::heapArrayBuilder<kj::Promise<Result>>(8);
  for (int i = 0; i < 8; ++i) all.add(clients[i]->put("k" + std::to_string(i), "v"));
  auto results = wait(kj::joinPromises(all.finish()));
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].error;
    EXPECT_EQ(results[i].attempts, i == 0 ? 2u : 1u);
  }
  EXPECT_EQ(cluster_.applied, 8) << "the retried member was deduplicated";
  ASSERT_EQ(cluster_.received.size(), 9u);
  EXPECT_EQ(cluster_.received[8].clientId, 100u);
  EXPECT_EQ(cluster_.received[8].requestId, 1u) << "the retry reuses the request id";
  EXPECT_EQ(cluster_.batches, 2);
}

// A session's writes take turns; a write whose promise is dropped, waiting or running,
// hands its turn on, so the session's next writes still go (in order).
TEST_F(ClientTest, ADroppedWriteHandsItsTurnToTheNextOfItsSession) {
  auto endpoints = start(1);
  cluster_.leader = 1;
  ClusterChannel ch(*io_.provider, io_.provider->getTimer(), endpoints, {});
  auto clients = clientsWithSessions(ch, cluster_, 1);
  AsyncKvClient& c = *clients[0];
  auto within = [&](kj::Promise<Result>&& p) {
    return wait(io_.provider->getTimer().timeoutAfter(2 * kj::SECONDS, kj::mv(p)));
  };
  cluster_.holdBatches = true;
  auto a = c.put("a", "1");
  kj::Maybe<kj::Promise<Result>> b = c.put("b", "2");
  auto d = c.put("d", "4");
  b = nullptr;  // dropped while waiting for its turn
  ASSERT_TRUE(waitFor([&]() { return cluster_.batches == 1; }));
  cluster_.holdBatches = false;
  for (auto& f : cluster_.held) f->fulfill();
  cluster_.held.clear();
  Result ra = within(kj::mv(a));
  Result rd = within(kj::mv(d));
  EXPECT_TRUE(ra.ok()) << ra.error;
  ASSERT_TRUE(rd.ok()) << rd.error;
  EXPECT_EQ(rd.requestId, 2u) << "the dropped write never took a request id";
  EXPECT_EQ(cluster_.data.count("b"), 0u);

  // The write holding the turn is dropped while its batch is in flight: the next one
  // goes once that batch is answered.
  cluster_.holdBatches = true;
  kj::Maybe<kj::Promise<Result>> e = c.put("e", "5");
  auto f = c.put("f", "6");
  ASSERT_TRUE(waitFor([&]() { return cluster_.batches == 2; }));
  e = nullptr;
  cluster_.holdBatches = false;
  for (auto& h : cluster_.held) h->fulfill();
  cluster_.held.clear();
  Result rf = within(kj::mv(f));
  ASSERT_TRUE(rf.ok()) << rf.error;
  EXPECT_EQ(rf.requestId, 4u);
  EXPECT_EQ(cluster_.data["f"], "6");

  // Promises may outlive their client (the turns do not point into it; ASan checks).
  auto gone = std::make_unique<AsyncKvClient>(ch);
  cluster_.holdBatches = true;
  kj::Maybe<kj::Promise<Result>> g = gone->put("g", "7");
  kj::Maybe<kj::Promise<Result>> h = gone->put("h", "8");
  gone = nullptr;
  h = nullptr;
  g = nullptr;
  cluster_.holdBatches = false;
  for (auto& x : cluster_.held) x->fulfill();
  cluster_.held.clear();
}

TEST(EndpointList, ParsesAndRejects) {
  auto v = parseEndpointList("127.0.0.1:1,localhost:7002");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[1], "localhost:7002");
  EXPECT_ANY_THROW(parseEndpointList(""));
  EXPECT_ANY_THROW(parseEndpointList("127.0.0.1"));
  EXPECT_ANY_THROW(parseEndpointList("a:1,,b:2"));
  EXPECT_ANY_THROW(parseEndpointList("a:x"));
}

}  // namespace
}  // namespace kvr::client
