// PeerTransport + RaftService between in-process endpoints on loopback: delivery in
// order, refusal of another cluster, reconnect after the peer comes back, a dead peer
// never holding up a live one, and client addresses advertised in the hello.
#include <gtest/gtest.h>

#include <capnp/rpc-twoparty.h>

#include <string>
#include <vector>

#include "net/peer_transport.h"
#include "net/raft_service.h"
#include "net/rpc_listener.h"
#include "schemas/codec.h"
#include "tests/net/uv_loop_fixture.h"
#include "tests/node/node_test_util.h"

namespace kvr::net {
namespace {

using PeerTransportTest = testing::UvLoopTest;

Message heartbeat(NodeId from, NodeId to, Index commit) {
  Message m;
  m.type = MsgType::Heartbeat;
  m.from = from;
  m.to = to;
  m.term = 1;
  m.commit = commit;
  return m;
}

// Reconnects within 5-10 ms: a refused or new peer is retried quickly.
PeerTransportOptions quickRetries() {
  PeerTransportOptions o;
  o.minBackoff = 5 * kj::MILLISECONDS;
  o.maxBackoff = 10 * kj::MILLISECONDS;
  return o;
}

size_t countContaining(const std::vector<std::string>& lines, const std::string& what) {
  size_t n = 0;
  for (const auto& l : lines) n += l.find(what) != std::string::npos;
  return n;
}

// The receiving side of one in-process node: RaftService behind an RpcListener.
struct Receiver {
  Receiver(UvAsyncIo& io, uint64_t clusterId, NodeId self, std::vector<NodeId> members,
           uint port = 0)
      : service(
            clusterId, self, std::move(members), [this](Message&& m) { got.push_back(m); },
            [this]() { ++batches; }, [this](const std::string& l) { log.push_back(l); },
            []() { return uint64_t(0); }) {
    service.setClientAddresses(&addresses);
    auto addr = io.network().parseAddress("127.0.0.1", port).wait(io.waitScope());
    ListenerOptions options;
    options.maxUnidentified = 16;
    listener = kj::heap<RpcListener>(
        addr->listen(),
        [this](kj::Own<ConnectionHandle> c) { return service.newConnection(kj::mv(c)); },
        options, io.timer());
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(listener->getPort()); }

  std::vector<Message> got;
  int batches = 0;
  ClientAddresses addresses;
  std::vector<std::string> log;
  RaftService service;
  kj::Own<RpcListener> listener;
};

TEST_F(PeerTransportTest, DeliversEveryMessageInOrderInFewBatches) {
  UvAsyncIo io(loop());
  Receiver two(io, 9, 2, {1, 2});
  std::vector<std::string> log;
  PeerTransport transport(io.network(), io.timer(), 9, 1, {{2, two.address()}},
                          [&](const std::string& l) { log.push_back(l); });
  transport.start();
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return transport.isUp(2); }));
  EXPECT_EQ(countContaining(log, "peer 2 up"), 1u);

  for (Index i = 1; i <= 1000; ++i) transport.send(heartbeat(1, 2, i));
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return two.got.size() == 1000; }));
  for (size_t i = 0; i < two.got.size(); ++i) {
    EXPECT_EQ(two.got[i], heartbeat(1, 2, i + 1));
  }
  EXPECT_LE(two.batches, 3);  // all sent in one turn: batched, not one call each
  ASSERT_TRUE(
      testing::waitUntil(io, [&]() { return transport.stats(2).sentMessages == 1000; }));
  EXPECT_EQ(two.service.dropped(), 0u);
  transport.send(heartbeat(1, 7, 1));  // not a peer
  EXPECT_EQ(transport.droppedUnknownPeer(), 1u);
}

TEST_F(PeerTransportTest, AnotherClusterIsRefusedAndLoggedOnce) {
  UvAsyncIo io(loop());
  Receiver two(io, 9, 2, {1, 2});
  std::vector<std::string> log;
  PeerTransportOptions fast = quickRetries();
  PeerTransport transport(
      io.network(), io.timer(), /*clusterId=*/8, 1, {{2, two.address()}},
      [&](const std::string& l) { log.push_back(l); }, fast);
  transport.start();
  for (int round = 0; round < 20; ++round) {
    transport.send(heartbeat(1, 2, 1));
    io.timer().afterDelay(10 * kj::MILLISECONDS).wait(io.waitScope());
  }
  EXPECT_TRUE(two.got.empty());
  EXPECT_FALSE(transport.isUp(2));
  EXPECT_GE(two.service.refusedHellos(), 3u);
  EXPECT_EQ(countContaining(two.log, "refusing peer connection: cluster id 8"), 1u);
  EXPECT_EQ(countContaining(log, "peer 2 refused our connection"), 1u);
  EXPECT_EQ(countContaining(log, "peer 2 up"), 0u);
}

TEST_F(PeerTransportTest, RaftServiceChecksHelloAndEveryEnvelope) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  Receiver two(io, 9, 2, {1, 2, 3});
  auto stream = io.network().parseAddress(two.address()).wait(ws)->connect().wait(ws);
  capnp::TwoPartyClient client(*stream);
  auto peer = client.bootstrap().castAs<schema::RaftPeer>();

  auto hello = [&](uint64_t cluster, NodeId from) {
    auto req = peer.helloRequest();
    req.setClusterId(cluster);
    req.setFrom(from);
    auto resp = req.send().wait(ws);
    return std::make_pair(resp.getOk(), std::string(resp.getReason()));
  };
  // (As node 3: a later connection that says hello as node 1 must not replace this one.)
  EXPECT_EQ(hello(9, 3), std::make_pair(true, std::string()));
  auto notMember = hello(9, 5);
  EXPECT_FALSE(notMember.first);
  EXPECT_NE(notMember.second.find("node 5 is not a peer"), std::string::npos);

  // A fresh connection that says hello correctly may deliver; each envelope is checked.
  auto stream2 = io.network().parseAddress(two.address()).wait(ws)->connect().wait(ws);
  capnp::TwoPartyClient client2(*stream2);
  auto peer2 = client2.bootstrap().castAs<schema::RaftPeer>();
  {
    auto req = peer2.helloRequest();
    req.setClusterId(9);
    req.setFrom(1);
    ASSERT_TRUE(req.send().wait(ws).getOk());
  }
  auto req = peer2.deliverRequest();
  auto batch = req.initBatch(4);
  codec::toCapnp(9, heartbeat(1, 2, 1), batch[0]);
  codec::toCapnp(8, heartbeat(1, 2, 2), batch[1]);  // another cluster
  codec::toCapnp(9, heartbeat(1, 3, 3), batch[2]);  // for another node
  codec::toCapnp(9, heartbeat(1, 2, 4), batch[3]);
  batch[3].getMessage().setType(static_cast<schema::MsgType>(200));  // malformed
  req.send().wait(ws);
  ASSERT_EQ(two.got.size(), 1u);
  EXPECT_EQ(two.got[0], heartbeat(1, 2, 1));
  EXPECT_EQ(two.service.dropped(), 3u);
  EXPECT_EQ(countContaining(two.log, "dropped a peer message"), 1u);  // rate-limited

  // The refused connection's deliver calls fail.
  auto refused = peer.deliverRequest();
  codec::toCapnp(9, heartbeat(1, 2, 5), refused.initBatch(1)[0]);
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { refused.send().wait(ws); })) {
    EXPECT_NE(std::string(e->getDescription().cStr()).find("refused"), std::string::npos);
  } else {
    ADD_FAILURE() << "a refused peer could deliver";
  }
  EXPECT_EQ(two.got.size(), 1u);
}

TEST_F(PeerTransportTest, ReconnectsWhenThePeerComesBackAndLogsTransitions) {
  UvAsyncIo io(loop());
  uint port;
  {
    Receiver probe(io, 9, 2, {1, 2});
    port = probe.listener->getPort();
  }
  std::vector<std::string> log;
  PeerTransportOptions fast;
  fast.maxBackoff = 100 * kj::MILLISECONDS;
  PeerTransport transport(
      io.network(), io.timer(), 9, 1, {{2, "127.0.0.1:" + std::to_string(port)}},
      [&](const std::string& l) { log.push_back(l); }, fast);
  transport.start();
  for (int i = 0; i < 10; ++i) transport.send(heartbeat(1, 2, 1));
  io.timer().afterDelay(200 * kj::MILLISECONDS).wait(io.waitScope());
  EXPECT_FALSE(transport.isUp(2));
  EXPECT_GE(transport.stats(2).failures, 2u);

  {
    Receiver two(io, 9, 2, {1, 2}, port);
    ASSERT_TRUE(testing::waitUntil(io, [&]() { return transport.isUp(2); }));
    transport.send(heartbeat(1, 2, 42));
    ASSERT_TRUE(testing::waitUntil(io, [&]() { return !two.got.empty(); }));
    EXPECT_EQ(two.got.back(), heartbeat(1, 2, 42));
  }  // the peer dies
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return !transport.isUp(2); }));
  EXPECT_EQ(countContaining(log, "peer 2 up"), 1u);
  EXPECT_EQ(countContaining(log, "peer 2 down"), 1u);
}

TEST_F(PeerTransportTest, AHungPeerDoesNotHoldUpALiveOneAndItsQueueIsBounded) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  Receiver two(io, 9, 2, {1, 2, 3});
  // Peer 3 accepts TCP connections and never answers.
  auto hungListener = io.network().parseAddress("127.0.0.1", 0).wait(ws)->listen();
  std::vector<kj::Own<kj::AsyncIoStream>> hungStreams;
  std::function<kj::Promise<void>()> acceptForever = [&]() {
    return hungListener->accept().then([&](kj::Own<kj::AsyncIoStream> s) {
      hungStreams.push_back(kj::mv(s));
      return acceptForever();
    });
  };
  auto accepting = acceptForever().eagerlyEvaluate(nullptr);

  PeerTransportOptions small;
  small.maxQueuedMessages = 100;
  PeerTransport transport(
      io.network(), io.timer(), 9, 1,
      {{2, two.address()}, {3, "127.0.0.1:" + std::to_string(hungListener->getPort())}},
      [](const std::string&) {}, small);
  transport.start();
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return transport.isUp(2); }));
  // Ten turns; each queues 100 messages for the hung peer and 50 for the live one.
  for (Index round = 0; round < 10; ++round) {
    for (Index i = 1; i <= 100; ++i) transport.send(heartbeat(1, 3, round * 100 + i));
    for (Index i = 1; i <= 50; ++i) transport.send(heartbeat(1, 2, round * 50 + i));
    io.timer().afterDelay(1 * kj::MILLISECONDS).wait(ws);
  }
  ASSERT_TRUE(testing::waitUntil(
      io, [&]() { return two.got.size() == 500; }, 2000));
  EXPECT_EQ(two.got.back(), heartbeat(1, 2, 500));
  EXPECT_FALSE(transport.isUp(3));
  EXPECT_EQ(transport.stats(3).droppedQueueFull, 900u);
  EXPECT_EQ(transport.stats(2).droppedQueueFull, 0u);
}

TEST_F(PeerTransportTest, HelloAdvertisesClientAddressesBothWays) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  Receiver two(io, 9, 2, {1, 2, 3});
  two.addresses.setSelf("127.0.0.1:9002");
  std::vector<std::string> log;
  ClientAddresses mine;
  mine.setSelf("127.0.0.1:9001");
  PeerTransport transport(io.network(), io.timer(), 9, 1, {{2, two.address()}},
                          [&](const std::string& l) { log.push_back(l); });
  transport.setClientAddresses(&mine);
  transport.send(heartbeat(1, 2, 1));  // queued until start()
  io.timer().afterDelay(50 * kj::MILLISECONDS).wait(ws);
  EXPECT_FALSE(transport.isUp(2)) << "dialled before start()";
  transport.start();
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return two.got.size() == 1; }));
  EXPECT_EQ(two.addresses.of(1), "127.0.0.1:9001");  // from our hello
  EXPECT_EQ(mine.of(2), "127.0.0.1:9002");           // from its answer
  EXPECT_EQ(countContaining(log, "peer 2 serves clients at 127.0.0.1:9002"), 1u);
  EXPECT_EQ(countContaining(two.log, "peer 1 serves clients at 127.0.0.1:9001"), 1u);

  // A refused hello teaches nothing; a member's empty or port-less address changes nothing.
  auto stream = io.network().parseAddress(two.address()).wait(ws)->connect().wait(ws);
  capnp::TwoPartyClient client(*stream);
  auto peer = client.bootstrap().castAs<schema::RaftPeer>();
  auto hello = [&](uint64_t cluster, NodeId from, const char* addr) {
    auto req = peer.helloRequest();
    req.setClusterId(cluster);
    req.setFrom(from);
    req.setClientAddr(addr);
    auto resp = req.send().wait(ws);
    return std::make_pair(resp.getOk(), std::string(resp.getClientAddr()));
  };
  EXPECT_EQ(hello(8, 3, "10.9.9.9:1"), std::make_pair(false, std::string()));
  EXPECT_EQ(two.addresses.of(3), "");
  EXPECT_EQ(hello(9, 3, "no-port"), std::make_pair(true, std::string("127.0.0.1:9002")));
  EXPECT_EQ(hello(9, 3, ""), std::make_pair(true, std::string("127.0.0.1:9002")));
  EXPECT_EQ(two.addresses.of(3), "");
  EXPECT_EQ(hello(9, 3, "127.0.0.1:9003"), std::make_pair(true, std::string("127.0.0.1:9002")));
  EXPECT_EQ(two.addresses.of(3), "127.0.0.1:9003");
  EXPECT_EQ(two.addresses.of(1), "127.0.0.1:9001");
}

// Membership changes: setPeers dials a member added later and forgets a removed one
// (its queue dropped, its messages counted unknown); setMembers lets a member added
// later say hello, and a node that was never a member stays refused.
TEST_F(PeerTransportTest, FollowsTheMembersItIsGiven) {
  UvAsyncIo io(loop());
  Receiver two(io, 9, 2, {1, 2});
  Receiver three(io, 9, 3, {1, 3});
  std::vector<std::string> log;
  PeerTransportOptions fast = quickRetries();
  PeerTransport transport(
      io.network(), io.timer(), 9, 1, {{2, two.address()}},
      [&](const std::string& l) { log.push_back(l); }, fast);
  transport.start();
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return transport.isUp(2); }));

  transport.send(heartbeat(1, 3, 1));  // not a member yet
  EXPECT_EQ(transport.droppedUnknownPeer(), 1u);
  auto changes = transport.setPeers({{2, two.address()}, {3, three.address()}});
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "dialling node 3 at " + three.address());
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return transport.isUp(3); }));
  transport.send(heartbeat(1, 3, 2));
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return three.got.size() == 1; }));
  EXPECT_EQ(three.got[0], heartbeat(1, 3, 2));

  changes = transport.setPeers({{3, three.address()}});  // node 2 removed
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "no longer dialling node 2 at " + two.address() + " (not a member)");
  EXPECT_FALSE(transport.isUp(2));
  transport.send(heartbeat(1, 2, 3));
  EXPECT_EQ(transport.droppedUnknownPeer(), 2u);
  EXPECT_TRUE(transport.setPeers({{3, three.address()}}).empty());  // nothing changed

  // The receiving side: node 4 is refused until it is a member.
  Receiver one(io, 9, 1, {1, 2, 3});
  PeerTransport four(
      io.network(), io.timer(), 9, 4, {{1, one.address()}}, [](const std::string&) {}, fast);
  four.start();
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return one.service.refusedHellos() >= 1; }));
  EXPECT_FALSE(four.isUp(1));
  one.service.setMembers({1, 2, 3, 4});
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return four.isUp(1); }));
  four.send(heartbeat(4, 1, 5));
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return one.got.size() == 1; }));
}

}  // namespace
}  // namespace kvr::net
