// Whole nodes in one process on one loop: a three-node cluster on loopback elects a
// leader, serves KvService calls, redirects at followers (naming the leader's advertised
// client address), and fails over when the leader stops. Also the config helpers and the
// client-facing error sentences.
#include <gtest/gtest.h>

#include <capnp/rpc-twoparty.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "net/kv_service.h"
#include "net/node.h"
#include "net/node_config.h"
#include "schemas/codec.h"
#include "tests/net/uv_loop_fixture.h"
#include "tests/node/node_test_util.h"

namespace kvr::net {
namespace {

using NodeTest = testing::UvLoopTest;

// Free loopback ports: bind to 0, note the port, close.
std::vector<uint> freePorts(UvAsyncIo& io, size_t n) {
  std::vector<kj::Own<kj::ConnectionReceiver>> held;
  std::vector<uint> ports;
  for (size_t i = 0; i < n; ++i) {
    held.push_back(io.network().parseAddress("127.0.0.1", 0).wait(io.waitScope())->listen());
    ports.push_back(held.back()->getPort());
  }
  return ports;
}

struct Cluster {
  Cluster(UvAsyncIo& io, size_t n, uint64_t snapshotEntries = 10'000) : io(io) {
    auto ports = freePorts(io, 2 * n);
    std::map<NodeId, std::string> members;
    for (size_t i = 0; i < n; ++i) {
      members[NodeId(i + 1)] = "127.0.0.1:" + std::to_string(ports[n + i]);
    }
    for (size_t i = 0; i < n; ++i) {
      dirs.push_back(std::make_unique<testing::TempDir>());
      NodeConfig c;
      c.id = NodeId(i + 1);
      c.dataDir = dirs.back()->path() + "/data";
      c.clientAddr = "127.0.0.1:" + std::to_string(ports[i]);
      c.raftAddr = members[c.id];
      c.members = members;
      c.snapshotEntries = snapshotEntries;
      configs.push_back(c);
    }
    for (size_t i = 0; i < n; ++i) startNode(i);
  }

  ~Cluster() {
    for (auto& node : nodes) {
      if (node.get() != nullptr) node->shutdown().wait(io.waitScope());
    }
  }

  void startNode(size_t i) {
    if (nodes.size() <= i) nodes.resize(i + 1);
    nodes[i] = kj::heap<Node>(
        io, configs[i], [this](const std::string& line) { fatal.push_back(line); },
        [this](const std::string& line) { log.push_back(line); });
    nodes[i]->start().wait(io.waitScope());
  }

  void stopNode(size_t i) {
    nodes[i]->shutdown().wait(io.waitScope());
    nodes[i] = nullptr;
  }

  // The one live leader, or 0 if there is none (or more than one).
  NodeId leader() {
    NodeId found = kNoNode;
    for (auto& node : nodes) {
      if (node.get() == nullptr || node->replica().status().role != Role::Leader) continue;
      if (found != kNoNode) return kNoNode;
      found = node->config().id;
    }
    return found;
  }

  UvAsyncIo& io;
  std::vector<std::unique_ptr<testing::TempDir>> dirs;
  std::vector<NodeConfig> configs;
  std::vector<kj::Own<Node>> nodes;
  std::vector<std::string> log;
  std::vector<std::string> fatal;
};

struct Client {
  Client(UvAsyncIo& io, uint port)
      : io(io),
        stream(io.network()
                   .parseAddress("127.0.0.1", port)
                   .wait(io.waitScope())
                   ->connect()
                   .wait(io.waitScope())),
        rpc(*stream),
        kv(rpc.bootstrap().castAs<schema::KvService>()) {}

  std::pair<KvReply, std::string> call(const KvCommand& cmd, bool stale = false) {
    auto req = kv.callRequest();
    codec::toCapnp(cmd, req.initCommand());
    req.setStale(stale);
    auto resp = req.send().wait(io.waitScope());
    KvReply reply;
    std::string why;
    KJ_REQUIRE(codec::fromCapnp(resp.getReply(), &reply, &why), "malformed reply", why);
    leaderAddr = resp.getReply().getLeaderAddr();
    return {reply, std::string(resp.getReply().getError())};
  }

  // One reply of a batch: the decoded reply, its error sentence and leader address.
  struct Answered {
    KvReply reply;
    std::string error;
    std::string leaderAddr;
  };
  struct BatchAnswer {
    std::vector<Answered> replies;
    kj::Maybe<Answered> refused;  // the whole batch was refused
  };
  // One item of a batch: the command, stale, and an op number to send instead of the
  // command's (a malformed command), if not 0.
  struct Item {
    KvCommand cmd;
    bool stale = false;
    uint16_t badOp = 0;
  };

  kj::Promise<capnp::Response<schema::KvService::CallBatchResults>> sendBatch(
      const std::vector<Item>& items) {
    auto req = kv.callBatchRequest();
    auto out = req.initItems(static_cast<uint>(items.size()));
    for (size_t i = 0; i < items.size(); ++i) {
      codec::toCapnp(items[i].cmd, out[i].initCommand());
      out[i].setStale(items[i].stale);
      if (items[i].badOp != 0) {
        out[i].getCommand().setOp(static_cast<schema::OpType>(items[i].badOp));
      }
    }
    return req.send();
  }

  static Answered decode(schema::Reply::Reader r) {
    Answered a;
    std::string why;
    KJ_REQUIRE(codec::fromCapnp(r, &a.reply, &why), "malformed reply", why);
    a.error = r.getError();
    a.leaderAddr = r.getLeaderAddr();
    return a;
  }

  static BatchAnswer decode(capnp::Response<schema::KvService::CallBatchResults>& resp) {
    BatchAnswer out;
    for (auto r : resp.getReplies()) out.replies.push_back(decode(r));
    if (resp.hasRefused()) out.refused = decode(resp.getRefused());
    return out;
  }

  BatchAnswer batch(const std::vector<Item>& items) {
    auto resp = sendBatch(items).wait(io.waitScope());
    return decode(resp);
  }

  // (client address, leader's client address) from status().
  std::pair<std::string, std::string> advertised() {
    auto resp = kv.statusRequest().send().wait(io.waitScope());
    return {resp.getStatus().getClientAddr(), resp.getStatus().getLeaderAddr()};
  }

  UvAsyncIo& io;
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyClient rpc;
  schema::KvService::Client kv;
  std::string leaderAddr;  // of the last call's reply
};

KvCommand openSession() {
  KvCommand c;
  c.op = OpType::OpenSession;
  return c;
}

KvCommand put(uint64_t client, uint64_t request, std::string key, std::string value) {
  KvCommand c;
  c.op = OpType::Put;
  c.clientId = client;
  c.requestId = request;
  c.key = std::move(key);
  c.value = std::move(value);
  return c;
}

KvCommand get(std::string key) {
  KvCommand c;
  c.op = OpType::Get;
  c.key = std::move(key);
  return c;
}

size_t countNodeLog(const std::vector<std::string>& lines, const std::string& what) {
  size_t n = 0;
  for (const auto& l : lines) n += l.find(what) != std::string::npos;
  return n;
}

TEST_F(NodeTest, ThreeNodesElectServeRedirectAndFailOver) {
  UvAsyncIo io(loop());
  Cluster cluster(io, 3);
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return cluster.leader() != kNoNode; }));
  NodeId leader = cluster.leader();
  EXPECT_GE(countNodeLog(cluster.log, ": became leader"), 1u);
  EXPECT_GE(countNodeLog(cluster.log, "peer "), 6u);  // "peer N up" on every link

  Client atLeader(io, cluster.nodes[leader - 1]->clientPort());
  auto [session, sessionError] = atLeader.call(openSession());
  ASSERT_EQ(session.status, Status::Ok) << sessionError;
  auto [written, writeError] = atLeader.call(put(session.clientId, 1, "k", "v1"));
  ASSERT_EQ(written.status, Status::Ok) << writeError;
  EXPECT_TRUE(writeError.empty());
  auto [read, readError] = atLeader.call(get("k"));
  ASSERT_EQ(read.status, Status::Ok) << readError;
  EXPECT_EQ(read.value, "v1");

  // A follower redirects linearizable work, naming the leader and the client address
  // the leader advertised to it in the peer hello.
  NodeId follower = leader % 3 + 1;
  const std::string leaderAddr = cluster.configs[leader - 1].clientAddr;
  Client atFollower(io, cluster.nodes[follower - 1]->clientPort());
  auto [redirect, redirectError] = atFollower.call(put(session.clientId, 2, "k", "v2"));
  EXPECT_EQ(redirect.status, Status::NotLeader);
  EXPECT_EQ(redirect.leaderHint, leader);
  EXPECT_EQ(atFollower.leaderAddr, leaderAddr);
  EXPECT_EQ(redirectError,
            "not the leader; try node " + std::to_string(leader) + " at " + leaderAddr);
  EXPECT_EQ(atFollower.advertised(),
            std::make_pair(cluster.configs[follower - 1].clientAddr, leaderAddr));
  EXPECT_EQ(atLeader.advertised(), std::make_pair(leaderAddr, leaderAddr));
  // Every node learns every peer's address (from its own hellos' answers and the
  // peers' hellos), soon if not yet.
  EXPECT_TRUE(testing::waitUntil(io, [&]() {
    for (auto& node : cluster.nodes) {
      for (auto& config : cluster.configs) {
        std::string known = node->config().id == config.id
                                ? node->clientAddresses().self()
                                : node->clientAddresses().of(config.id);
        if (known != config.clientAddr) return false;
      }
    }
    return true;
  }));
  // Oversized keys are answered with the validator's reason.
  auto [big, bigError] = atFollower.call(get(std::string(limits::kMaxKeyBytes + 1, 'x')));
  EXPECT_EQ(big.status, Status::TooLarge);
  EXPECT_NE(bigError.find("key"), std::string::npos) << bigError;
  // A stale read at a follower answers from its state once it has applied the write.
  ASSERT_TRUE(testing::waitUntil(io, [&]() {
    return atFollower.call(get("k"), /*stale=*/true).first.value == "v1";
  }));

  // Stop the leader: another node takes over and the data is still there.
  cluster.stopNode(leader - 1);
  ASSERT_TRUE(testing::waitUntil(io, [&]() {
    NodeId l = cluster.leader();
    return l != kNoNode && l != leader;
  }));
  NodeId next = cluster.leader();
  Client atNext(io, cluster.nodes[next - 1]->clientPort());
  auto [after, afterError] = atNext.call(get("k"));
  ASSERT_EQ(after.status, Status::Ok) << afterError;
  EXPECT_EQ(after.value, "v1");
  auto [again, againError] = atNext.call(put(session.clientId, 2, "k", "v2"));
  EXPECT_EQ(again.status, Status::Ok) << againError;
  EXPECT_GE(countNodeLog(cluster.log, "peer " + std::to_string(leader) + " down"), 2u);
  EXPECT_TRUE(cluster.fatal.empty());
}

KvCommand cas(uint64_t client, uint64_t request, std::string key, std::string expected,
              std::string value) {
  KvCommand c = put(client, request, std::move(key), std::move(value));
  c.op = OpType::Cas;
  c.expected = std::move(expected);
  return c;
}

// A batch of mixed commands: every reply in its place, bad members answered with their
// reason while the others run.
TEST_F(NodeTest, BatchAnswersEachCommandInOrder) {
  UvAsyncIo io(loop());
  Cluster cluster(io, 3);
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return cluster.leader() != kNoNode; }));
  NodeId leader = cluster.leader();
  Client c(io, cluster.nodes[leader - 1]->clientPort());
  uint64_t s1 = c.call(openSession()).first.clientId;
  uint64_t s2 = c.call(openSession()).first.clientId;
  ASSERT_NE(s1, 0u);
  ASSERT_NE(s2, 0u);
  ASSERT_EQ(c.call(put(s1, 1, "k0", "v0")).first.status, Status::Ok);

  Client::BatchAnswer b = c.batch(
      {{put(s1, 2, "k1", "v1")},
       {get("k0")},
       {get("absent")},
       {put(s2, 1, std::string(limits::kMaxKeyBytes + 1, 'x'), "big")},
       {cas(s2, 1, "k0", "not-v0", "v9")},
       {get("k0"), /*stale=*/true},
       {put(s2, 2, "k2", "v2"), false, /*badOp=*/42},
       {put(0, 0, "k3", "no session")}});
  EXPECT_TRUE(b.refused == nullptr);
  ASSERT_EQ(b.replies.size(), 8u);
  EXPECT_EQ(b.replies[0].reply.status, Status::Ok) << b.replies[0].error;
  EXPECT_GT(b.replies[0].reply.index, 0u);
  EXPECT_EQ(b.replies[1].reply.status, Status::Ok);
  EXPECT_EQ(b.replies[1].reply.value, "v0");
  EXPECT_EQ(b.replies[2].reply.status, Status::NotFound);
  EXPECT_EQ(b.replies[3].reply.status, Status::TooLarge);
  EXPECT_NE(b.replies[3].error.find("key"), std::string::npos) << b.replies[3].error;
  EXPECT_EQ(b.replies[4].reply.status, Status::CasMismatch);
  EXPECT_EQ(b.replies[4].reply.value, "v0");
  EXPECT_EQ(b.replies[5].reply.status, Status::Ok);
  EXPECT_EQ(b.replies[5].reply.value, "v0");
  EXPECT_EQ(b.replies[6].reply.status, Status::Invalid);
  EXPECT_FALSE(b.replies[6].error.empty());
  EXPECT_EQ(b.replies[7].reply.status, Status::Invalid) << b.replies[7].error;
  EXPECT_EQ(c.call(get("k1")).first.value, "v1");
  EXPECT_EQ(c.call(get("k2")).first.status, Status::NotFound) << "the malformed put ran";
  EXPECT_EQ(c.call(get("k3")).first.status, Status::NotFound);
  // The batch's writes went to the log together: consecutive indexes.
  Client::BatchAnswer two = c.batch({{put(s1, 3, "a", "1")}, {put(s2, 2, "b", "2")}});
  ASSERT_EQ(two.replies.size(), 2u);
  EXPECT_EQ(two.replies[1].reply.index, two.replies[0].reply.index + 1);
  EXPECT_TRUE(cluster.fatal.empty());
}

// A batch over the command or byte limit is refused whole, with the reason, and nothing
// in it runs; the connection goes on serving.
TEST_F(NodeTest, OversizedBatchIsRefusedWhole) {
  UvAsyncIo io(loop());
  Cluster cluster(io, 1);
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return cluster.leader() == 1; }));
  Client c(io, cluster.nodes[0]->clientPort());
  uint64_t s = c.call(openSession()).first.clientId;
  std::vector<Client::Item> many;
  for (uint64_t i = 1; i <= limits::kMaxBatchCommands + 1; ++i) {
    many.push_back({put(s, i, "k" + std::to_string(i), "v")});
  }
  Client::BatchAnswer b = c.batch(many);
  EXPECT_TRUE(b.replies.empty());
  KJ_IF_MAYBE(r, b.refused) {
    EXPECT_EQ(r->reply.status, Status::TooLarge);
    EXPECT_NE(r->error.find("batch of " + std::to_string(limits::kMaxBatchCommands + 1) +
                            " commands exceeds the limit of " +
                            std::to_string(limits::kMaxBatchCommands)),
              std::string::npos)
        << r->error;
  } else {
    ADD_FAILURE() << "a batch over the command limit was not refused";
  }
  EXPECT_EQ(c.call(get("k1")).first.status, Status::NotFound);

  // Five values of 1 MiB: each one fine alone, together over the byte limit.
  std::vector<Client::Item> heavy;
  for (uint64_t i = 1; i <= 5; ++i) {
    heavy.push_back(
        {put(s, 1000 + i, "h" + std::to_string(i), std::string(limits::kMaxValueBytes, 'v'))});
  }
  b = c.batch(heavy);
  EXPECT_TRUE(b.replies.empty());
  KJ_IF_MAYBE(r, b.refused) {
    EXPECT_EQ(r->reply.status, Status::TooLarge);
    EXPECT_NE(r->error.find("bytes exceeds the limit of"), std::string::npos) << r->error;
  } else {
    ADD_FAILURE() << "a batch over the byte limit was not refused";
  }
  EXPECT_EQ(c.call(get("h1")).first.status, Status::NotFound);

  // At the limits: served.
  many.pop_back();
  b = c.batch(many);
  EXPECT_TRUE(b.refused == nullptr);
  ASSERT_EQ(b.replies.size(), limits::kMaxBatchCommands);
  for (auto& r : b.replies) EXPECT_EQ(r.reply.status, Status::Ok) << r.error;
  heavy.resize(3);
  b = c.batch(heavy);
  ASSERT_EQ(b.replies.size(), 3u);
  for (auto& r : b.replies) EXPECT_EQ(r.reply.status, Status::Ok) << r.error;
  EXPECT_TRUE(cluster.fatal.empty());
}

// A retried batch, and a retried member in a new batch, are applied once: the saved
// reply (same index) comes back.
TEST_F(NodeTest, RetriedBatchMembersAreAppliedOnce) {
  UvAsyncIo io(loop());
  Cluster cluster(io, 3);
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return cluster.leader() != kNoNode; }));
  Client c(io, cluster.nodes[cluster.leader() - 1]->clientPort());
  uint64_t s1 = c.call(openSession()).first.clientId;
  uint64_t s2 = c.call(openSession()).first.clientId;
  std::vector<Client::Item> items{{put(s1, 1, "a", "1")}, {put(s2, 1, "b", "1")}};
  Client::BatchAnswer first = c.batch(items);
  ASSERT_EQ(first.replies.size(), 2u);
  ASSERT_EQ(first.replies[0].reply.status, Status::Ok);
  ASSERT_EQ(first.replies[1].reply.status, Status::Ok);
  Client::BatchAnswer again = c.batch(items);
  ASSERT_EQ(again.replies.size(), 2u);
  EXPECT_EQ(again.replies[0].reply.status, Status::Ok);
  EXPECT_EQ(again.replies[0].reply.index, first.replies[0].reply.index);
  EXPECT_EQ(again.replies[1].reply.index, first.replies[1].reply.index);
  // One member retried (with another value: it must not apply) beside a new one.
  Client::BatchAnswer mixed = c.batch({{put(s1, 1, "a", "changed")}, {put(s2, 2, "b", "2")}});
  ASSERT_EQ(mixed.replies.size(), 2u);
  EXPECT_EQ(mixed.replies[0].reply.status, Status::Ok);
  EXPECT_EQ(mixed.replies[0].reply.index, first.replies[0].reply.index);
  EXPECT_EQ(mixed.replies[1].reply.status, Status::Ok);
  EXPECT_GT(mixed.replies[1].reply.index, first.replies[1].reply.index);
  EXPECT_EQ(c.call(get("a")).first.value, "1");
  EXPECT_EQ(c.call(get("b")).first.value, "2");
  EXPECT_EQ(cluster.nodes[cluster.leader() - 1]->replica().kv().effects(), 3u)
      << "each write applied once";
}

// A batch at a follower: each write is refused naming the leader, a stale read is
// served; the leader stopping under a batch answers each write "outcome unknown"
// (ShuttingDown) or Ok, and the next leader applies the retried batch once.
TEST_F(NodeTest, BatchAcrossALeaderChangeAnswersEachMember) {
  UvAsyncIo io(loop());
  Cluster cluster(io, 3);
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return cluster.leader() != kNoNode; }));
  NodeId leader = cluster.leader();
  NodeId follower = leader % 3 + 1;
  const std::string leaderAddr = cluster.configs[leader - 1].clientAddr;
  Client atLeader(io, cluster.nodes[leader - 1]->clientPort());
  uint64_t s1 = atLeader.call(openSession()).first.clientId;
  uint64_t s2 = atLeader.call(openSession()).first.clientId;
  ASSERT_EQ(atLeader.call(put(s1, 1, "k", "v1")).first.status, Status::Ok);
  ASSERT_TRUE(testing::waitUntil(io, [&]() {
    return cluster.nodes[follower - 1]->replica().kv().appliedIndex() >=
           cluster.nodes[leader - 1]->replica().kv().appliedIndex();
  }));

  Client atFollower(io, cluster.nodes[follower - 1]->clientPort());
  Client::BatchAnswer b = atFollower.batch(
      {{put(s1, 2, "k", "v2")}, {get("k"), /*stale=*/true}, {put(s2, 1, "j", "w1")}});
  ASSERT_EQ(b.replies.size(), 3u);
  for (size_t i : {0, 2}) {
    EXPECT_EQ(b.replies[i].reply.status, Status::NotLeader);
    EXPECT_EQ(b.replies[i].reply.leaderHint, leader);
    EXPECT_EQ(b.replies[i].leaderAddr, leaderAddr);
  }
  EXPECT_EQ(b.replies[1].reply.status, Status::Ok);
  EXPECT_EQ(b.replies[1].reply.value, "v1");

  // The leader stops with the batch in its hands.
  std::vector<Client::Item> items{{put(s1, 2, "k", "v2")}, {put(s2, 1, "j", "w1")}};
  auto pending = atLeader.sendBatch(items);
  io.timer().afterDelay(1 * kj::MILLISECONDS).wait(io.waitScope());
  cluster.stopNode(leader - 1);
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                auto resp = pending.wait(io.waitScope());
                Client::BatchAnswer stopped = Client::decode(resp);
                ASSERT_EQ(stopped.replies.size(), 2u);
                for (auto& r : stopped.replies) {
                  EXPECT_TRUE(r.reply.status == Status::Ok ||
                              r.reply.status == Status::ShuttingDown)
                      << statusName(r.reply.status) << ": " << r.error;
                }
              })) {
    // The connection went down with the node: no answer at all, also "unknown".
    EXPECT_EQ(e->getType(), kj::Exception::Type::DISCONNECTED) << e->getDescription().cStr();
  }
  ASSERT_TRUE(testing::waitUntil(io, [&]() {
    NodeId l = cluster.leader();
    return l != kNoNode && l != leader;
  }));
  Client atNext(io, cluster.nodes[cluster.leader() - 1]->clientPort());
  Client::BatchAnswer retried = atNext.batch(items);
  ASSERT_EQ(retried.replies.size(), 2u);
  EXPECT_EQ(retried.replies[0].reply.status, Status::Ok) << retried.replies[0].error;
  EXPECT_EQ(retried.replies[1].reply.status, Status::Ok) << retried.replies[1].error;
  EXPECT_EQ(atNext.call(get("k")).first.value, "v2");
  EXPECT_EQ(atNext.call(get("j")).first.value, "w1");
  // Three writes in all (v1, v2, w1), each applied once at the new leader.
  EXPECT_EQ(cluster.nodes[cluster.leader() - 1]->replica().kv().effects(), 3u);
  EXPECT_TRUE(cluster.fatal.empty());
}

// A member whose data dir was wiped forgot its votes and the entries it acknowledged:
// the peers that knew its old incarnation refuse it, and it stops instead of voting.
// Restarting on its own data dir (the other members, before) is accepted.
TEST_F(NodeTest, AMemberWhoseDataDirWasWipedIsRefusedAndStops) {
  UvAsyncIo io(loop());
  Cluster cluster(io, 3);
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return cluster.leader() != kNoNode; }));
  // Each node records each peer's incarnation once: 6 records.
  ASSERT_TRUE(testing::waitUntil(io, [&]() {
    return countNodeLog(cluster.log, "data dir incarnation") >= 6;
  }));
  const NodeId leader = cluster.leader();
  const size_t victim = leader == 1 ? 1 : 0;  // a follower's index in the cluster
  // A restart on its own data dir is accepted.
  cluster.stopNode(victim);
  cluster.startNode(victim);
  ASSERT_TRUE(testing::waitUntil(io, [&]() {
    return countNodeLog(cluster.log, "peer " + std::to_string(victim + 1) + " up") >= 4;
  }));
  EXPECT_TRUE(cluster.fatal.empty());
  // Wiped: it starts as a fresh member with a new incarnation.
  cluster.stopNode(victim);
  std::filesystem::remove_all(cluster.configs[victim].dataDir);
  cluster.startNode(victim);
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return !cluster.fatal.empty(); }));
  EXPECT_NE(cluster.fatal[0].find("cannot rejoin the cluster"), std::string::npos)
      << cluster.fatal[0];
  EXPECT_NE(cluster.fatal[0].find("was wiped or replaced"), std::string::npos)
      << cluster.fatal[0];
  EXPECT_GE(countNodeLog(cluster.log, "knew it as incarnation"), 1u);
}

TEST_F(NodeTest, RestartKeepsDataAndRefusesAnotherIdentity) {
  UvAsyncIo io(loop());
  Cluster cluster(io, 1, /*snapshotEntries=*/5);
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return cluster.leader() == 1; }));
  {
    Client c(io, cluster.nodes[0]->clientPort());
    auto session = c.call(openSession()).first;
    for (uint64_t r = 1; r <= 12; ++r) {
      ASSERT_EQ(c.call(put(session.clientId, r, "a", std::to_string(r))).first.status,
                Status::Ok);
    }
  }
  ASSERT_TRUE(testing::waitUntil(io, [&]() {
    return countNodeLog(cluster.log, "took a snapshot at index") >= 1;
  }));
  cluster.stopNode(0);
  cluster.startNode(0);
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return cluster.leader() == 1; }));
  {
    Client c(io, cluster.nodes[0]->clientPort());
    EXPECT_EQ(c.call(get("a")).first.value, "12");
  }

  // While the node runs, a second node on its data dir is refused by the lock.
  NodeConfig twin = cluster.configs[0];
  twin.clientAddr = "127.0.0.1:0";
  twin.raftAddr = "127.0.0.1:0";
  {
    Node second(
        io, twin, [](const std::string&) {}, [](const std::string&) {});
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { second.start().wait(io.waitScope()); })) {
      EXPECT_NE(std::string(e->getDescription().cStr()).find("is in use"), std::string::npos)
          << e->getDescription().cStr();
    } else {
      ADD_FAILURE() << "a second node started on a live node's data dir";
    }
  }

  cluster.stopNode(0);
  NodeConfig other = cluster.configs[0];
  other.clusterId = 12345;
  other.clientAddr = "127.0.0.1:0";
  other.raftAddr = "127.0.0.1:0";
  Node impostor(
      io, other, [](const std::string&) {}, [](const std::string&) {});
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { impostor.start().wait(io.waitScope()); })) {
    EXPECT_NE(std::string(e->getDescription().cStr()).find("belongs to cluster"),
              std::string::npos)
        << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "a node started on another cluster's data dir";
  }
}

TEST(NodeConfigTest, ParsesMembersAndDerivesOneClusterIdForAll) {
  std::map<NodeId, std::string> members;
  std::string error;
  ASSERT_TRUE(parseMembers("2=127.0.0.1:7102,1=127.0.0.1:7101,3=[::1]:7103", &members, &error))
      << error;
  EXPECT_EQ(members.size(), 3u);
  EXPECT_EQ(members[3], "[::1]:7103");
  std::map<NodeId, std::string> same;
  ASSERT_TRUE(parseMembers("1=127.0.0.1:7101,3=[::1]:7103,2=127.0.0.1:7102", &same, &error));
  EXPECT_EQ(defaultClusterId(members), defaultClusterId(same));
  same[3] = "[::1]:7104";
  EXPECT_NE(defaultClusterId(members), defaultClusterId(same));

  EXPECT_FALSE(parseMembers("1=a:1,1=b:2", &members, &error));
  EXPECT_NE(error.find("twice"), std::string::npos);
  EXPECT_FALSE(parseMembers("8=a:1", &members, &error));
  EXPECT_FALSE(parseMembers("1=nohost", &members, &error));
  EXPECT_FALSE(parseMembers("", &members, &error));
}

TEST(NodeConfigTest, ConvertsMillisecondsToTicksAndChecksThem) {
  NodeConfig c;
  c.clientAddr = "127.0.0.1:7001";
  c.raftAddr = "127.0.0.1:7101";
  c.members = {{1, c.raftAddr}};
  EXPECT_EQ(checkConfig(c), "");
  ReplicaConfig rc = replicaConfig(c);
  EXPECT_EQ(rc.raft.electionTicks, 15u);
  EXPECT_EQ(rc.raft.heartbeatTicks, 3u);
  EXPECT_EQ(rc.requestTimeoutTicks, 200u);
  EXPECT_EQ(rc.initialConf.voters, std::vector<NodeId>{1});
  c.heartbeatMs = 150;
  EXPECT_NE(checkConfig(c), "");
  c.heartbeatMs = 30;
  c.id = 2;
  EXPECT_NE(checkConfig(c).find("not in the cluster"), std::string::npos);
}

TEST(NodeConfigTest, AdvertisedClientAddress) {
  NodeConfig c;
  c.clientAddr = "127.0.0.1:0";
  c.raftAddr = "127.0.0.1:7101";
  c.members = {{1, c.raftAddr}};
  EXPECT_EQ(advertisedClientAddr(c, 7001), "127.0.0.1:7001");  // the bound port
  c.clientAddr = "[::1]:7001";
  EXPECT_EQ(advertisedClientAddr(c, 7001), "[::1]:7001");
  for (const char* wildcard : {"0.0.0.0:7001", "[::]:7001", "*:7001"}) {
    c.clientAddr = wildcard;
    EXPECT_EQ(advertisedClientAddr(c, 7001), "") << wildcard;
  }
  c.advertiseClientAddr = "kv1.example:7001";
  EXPECT_EQ(checkConfig(c), "");
  EXPECT_EQ(advertisedClientAddr(c, 7001), "kv1.example:7001");
  for (const char* bad : {"kv1.example", "kv1.example:", ":7001", "kv1:70x1"}) {
    c.advertiseClientAddr = bad;
    EXPECT_NE(checkConfig(c).find("HOST:PORT"), std::string::npos) << bad;
  }
}

TEST(KvServiceTest, EveryNonOkStatusHasASentence) {
  for (uint8_t s = 0; s <= static_cast<uint8_t>(Status::TransferInProgress); ++s) {
    KvReply r;
    r.status = static_cast<Status>(s);
    EXPECT_EQ(explainStatus(r).empty(), r.status == Status::Ok) << int(s);
  }
  KvReply r;
  r.status = Status::NotLeader;
  r.leaderHint = 2;
  EXPECT_EQ(explainStatus(r), "not the leader; try node 2");
  EXPECT_EQ(explainStatus(r, "", "10.0.0.2:7001"),
            "not the leader; try node 2 at 10.0.0.2:7001");
  r.leaderHint = kNoNode;
  EXPECT_NE(explainStatus(r).find("leader is not known yet"), std::string::npos);
  r.status = Status::Timeout;
  EXPECT_NE(explainStatus(r).find("retry with the same request id"), std::string::npos);
  r.status = Status::TooLarge;
  EXPECT_EQ(explainStatus(r, "key is 5000 bytes"), "key is 5000 bytes");
}

}  // namespace
}  // namespace kvr::net
