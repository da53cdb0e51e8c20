// PeerTransport + RaftService between in-process endpoints on loopback: delivery in
// order, refusal of another cluster, reconnect after the peer comes back, a dead peer
// never holding up a live one, and client addresses advertised in the hello.
#include <gtest/gtest.h>

#include <capnp/message.h>

#include <string>
#include <vector>

#include "net/peer_stream.h"
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
        RpcListener::StreamHandler([this](kj::Own<ConnectionHandle> c, kj::AsyncIoStream& s) {
          return service.serve(kj::mv(c), s);
        }),
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

// A hand-driven dialer: writes frames and reads what the listener answers.
struct RawPeer {
  RawPeer(UvAsyncIo& io, const std::string& address)
      : ws(io.waitScope()),
        stream(io.network().parseAddress(address).wait(ws)->connect().wait(ws)),
        reader(*stream) {}

  void send(capnp::MallocMessageBuilder& message) { writePeerFrame(*stream, message).wait(ws); }
  void hello(uint64_t cluster, NodeId from, const char* clientAddr = "") {
    capnp::MallocMessageBuilder message;
    auto frame = message.initRoot<schema::PeerFrame>();
    frame.setMagic(kPeerFrameMagic);
    auto h = frame.initHello();
    h.setClusterId(cluster);
    h.setFrom(from);
    h.setClientAddr(clientAddr);
    send(message);
  }
  // (ok, reason, clientAddr) of the answer to our hello.
  std::tuple<bool, std::string, std::string> answer() {
    auto frame = next();
    auto root = frame->getRoot<schema::PeerFrame>();
    EXPECT_EQ(root.getMagic(), kPeerFrameMagic);
    EXPECT_TRUE(root.isHelloAnswer());
    auto a = root.getHelloAnswer();
    return {a.getOk(), a.getReason(), a.getClientAddr()};
  }
  kj::Own<capnp::MessageReader> next() {
    for (;;) {
      KJ_IF_MAYBE(f, reader.take()) {
        return kj::mv(*f);
      }
      KJ_REQUIRE(reader.fill().wait(ws), "the listener closed the connection");
    }
  }
  // True once the listener has closed the connection (nothing more arrives).
  bool closed() {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                  while (reader.fill().wait(ws)) {
                  }
                })) {
      return e->getType() == kj::Exception::Type::DISCONNECTED;
    }
    return true;
  }

  kj::WaitScope& ws;
  kj::Own<kj::AsyncIoStream> stream;
  PeerFrameReader reader;
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
  Receiver two(io, 9, 2, {1, 2, 3});

  // A refused hello is answered with the reason, then the connection ends.
  {
    RawPeer notMember(io, two.address());
    notMember.hello(9, 5);
    auto [ok, reason, addr] = notMember.answer();
    EXPECT_FALSE(ok);
    EXPECT_NE(reason.find("node 5 is not a peer"), std::string::npos);
    EXPECT_TRUE(notMember.closed());
  }
  // A batch before any hello closes the connection and is not delivered.
  {
    RawPeer rude(io, two.address());
    capnp::MallocMessageBuilder message;
    auto frame = message.initRoot<schema::PeerFrame>();
    frame.setMagic(kPeerFrameMagic);
    codec::toCapnp(9, heartbeat(1, 2, 9), frame.initBatch(1)[0]);
    rude.send(message);
    EXPECT_TRUE(rude.closed());
  }
  // So does a frame that is not a PeerFrame (a node that still speaks RPC).
  {
    RawPeer old(io, two.address());
    capnp::MallocMessageBuilder message;
    message.initRoot<schema::PeerHello>().setClusterId(9);
    old.send(message);
    EXPECT_TRUE(old.closed());
  }
  EXPECT_TRUE(two.got.empty());
  EXPECT_EQ(two.service.protocolErrors(), 2u);

  // A connection that says hello correctly may deliver; each envelope is checked.
  RawPeer one(io, two.address());
  one.hello(9, 1);
  EXPECT_TRUE(std::get<0>(one.answer()));
  capnp::MallocMessageBuilder message;
  auto frame = message.initRoot<schema::PeerFrame>();
  frame.setMagic(kPeerFrameMagic);
  auto batch = frame.initBatch(4);
  codec::toCapnp(9, heartbeat(1, 2, 1), batch[0]);
  codec::toCapnp(8, heartbeat(1, 2, 2), batch[1]);  // another cluster
  codec::toCapnp(9, heartbeat(1, 3, 3), batch[2]);  // for another node
  codec::toCapnp(9, heartbeat(1, 2, 4), batch[3]);
  batch[3].getMessage().setType(static_cast<schema::MsgType>(200));  // malformed
  one.send(message);
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return two.service.dropped() == 3u; }));
  ASSERT_EQ(two.got.size(), 1u);
  EXPECT_EQ(two.got[0], heartbeat(1, 2, 1));
  EXPECT_EQ(countContaining(two.log, "dropped a peer message"), 1u);  // rate-limited

  // A ping is answered with its nonce.
  capnp::MallocMessageBuilder ping;
  auto pingFrame = ping.initRoot<schema::PeerFrame>();
  pingFrame.setMagic(kPeerFrameMagic);
  pingFrame.setPing(77);
  one.send(ping);
  EXPECT_EQ(one.next()->getRoot<schema::PeerFrame>().getPong(), 77u);

  // A second hello on the connection closes it.
  one.hello(9, 1);
  EXPECT_TRUE(one.closed());
  EXPECT_EQ(two.service.protocolErrors(), 3u);
  EXPECT_EQ(two.got.size(), 1u);
}

// Frames arrive whole however the bytes are split, many frames per read are all taken,
// and a frame over the bound or a stream that ends inside a frame fails the read.
TEST(FrameScratch, FramesReuseOneZeroedFirstSegment) {
  FrameScratch scratch;
  const capnp::word* first = nullptr;
  for (int round = 0; round < 3; ++round) {
    auto message = scratch.builder(64);
    auto frame = message->initRoot<schema::PeerFrame>();
    EXPECT_EQ(frame.getMagic(), 0u);  // the previous frame's words were zeroed
    frame.setMagic(kPeerFrameMagic);
    frame.setPing(uint64_t(round) + 1);
    auto segments = message->getSegmentsForOutput();
    ASSERT_EQ(segments.size(), 1u);
    if (round == 0) first = segments[0].begin();
    EXPECT_EQ(segments[0].begin(), first);  // the same memory every frame
    // While a frame's builder lives, another frame gets a segment of its own.
    auto other = scratch.builder(64);
    other->initRoot<schema::PeerFrame>().setPing(99);
    EXPECT_NE(other->getSegmentsForOutput()[0].begin(), first);
    EXPECT_EQ(frame.getPing(), uint64_t(round) + 1);  // untouched by the other
  }
  // A frame over the bound never uses the scratch.
  auto big = scratch.builder(FrameScratch::kMaxWords + 1);
  big->initRoot<schema::PeerFrame>();
  EXPECT_NE(big->getSegmentsForOutput()[0].begin(), first);
}

TEST_F(PeerTransportTest, FrameReaderReassemblesAndBoundsFrames) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto pipe = kj::newTwoWayPipe();
  PeerFrameReader reader(*pipe.ends[1], 256 * 1024);

  // Three frames, the middle one 100 KB, written in 7-byte pieces.
  kj::Vector<kj::byte> bytes;
  for (size_t size : {10u, 100000u, 3u}) {
    capnp::MallocMessageBuilder message;
    auto frame = message.initRoot<schema::PeerFrame>();
    frame.setMagic(kPeerFrameMagic);
    auto batch = frame.initBatch(1);
    Message m = heartbeat(1, 2, size);
    m.type = MsgType::Snapshot;
    m.snapChunk.assign(size, static_cast<char>('a' + size % 26));
    codec::toCapnp(9, m, batch[0]);
    kj::VectorOutputStream out;
    capnp::writeMessage(out, message);
    bytes.addAll(out.getArray());
  }
  auto writing = kj::evalLater([&]() -> kj::Promise<void> {
    kj::Promise<void> chain = kj::READY_NOW;
    for (size_t at = 0; at < bytes.size(); at += 7) {
      size_t n = std::min<size_t>(7, bytes.size() - at);
      chain = chain.then([&, at, n]() { return pipe.ends[0]->write(bytes.begin() + at, n); });
    }
    return chain;
  });
  std::vector<size_t> sizes;
  while (sizes.size() < 3) {
    ASSERT_TRUE(reader.fill().wait(ws));
    for (;;) {
      KJ_IF_MAYBE(f, reader.take()) {
        auto root = (*f)->getRoot<schema::PeerFrame>();
        sizes.push_back(root.getBatch()[0].getMessage().getSnapChunk().size());
      } else {
        break;
      }
    }
  }
  writing.wait(ws);
  EXPECT_EQ(sizes, (std::vector<size_t>{10, 100000, 3}));
  EXPECT_EQ(reader.buffered(), 0u);

  // Ends inside a frame: the read fails, it is not a clean end.
  auto partial = pipe.ends[0]
                     ->write(bytes.begin(), 20)
                     .then([&]() { pipe.ends[0]->shutdownWrite(); })
                     .eagerlyEvaluate(nullptr);
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                while (reader.fill().wait(ws)) {
                }
              })) {
    EXPECT_NE(std::string(e->getDescription().cStr()).find("inside a frame"),
              std::string::npos);
  } else {
    ADD_FAILURE() << "a stream that ended inside a frame ended cleanly";
  }

  // A frame whose header announces more than the bound fails at once.
  auto pipe2 = kj::newTwoWayPipe();
  PeerFrameReader small(*pipe2.ends[1], 64 * 1024);
  uint32_t header[2] = {0, 1u << 20};  // one segment of 1 Mi words
  auto announced = pipe2.ends[0]->write(header, sizeof header).eagerlyEvaluate(nullptr);
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { small.fill().wait(ws); })) {
    EXPECT_NE(std::string(e->getDescription().cStr()).find("too big"), std::string::npos);
  } else {
    ADD_FAILURE() << "an oversized frame was buffered";
  }
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

// A peer that accepts our hello and then never answers a ping is dropped, and reconnected
// to; while pongs come back, each is a round trip for the observer.
TEST_F(PeerTransportTest, APeerThatStopsAnsweringPingsIsDropped) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto listener = io.network().parseAddress("127.0.0.1", 0).wait(ws)->listen();
  struct Accepted {
    kj::Own<kj::AsyncIoStream> stream;
    kj::Own<PeerFrameReader> reader;
  };
  std::vector<Accepted> accepted;
  std::function<kj::Promise<void>()> acceptForever = [&]() {
    return listener->accept().then([&](kj::Own<kj::AsyncIoStream> s) {
      auto reader = kj::heap<PeerFrameReader>(*s);
      accepted.push_back({kj::mv(s), kj::mv(reader)});
      return acceptForever();
    });
  };
  auto accepting = acceptForever().eagerlyEvaluate(nullptr);

  PeerTransportOptions fast = quickRetries();
  fast.pingInterval = 20 * kj::MILLISECONDS;
  fast.callTimeout = 100 * kj::MILLISECONDS;
  std::vector<std::string> log;
  int roundTrips = 0;
  PeerTransport transport(
      io.network(), io.timer(), 9, 1, {{2, "127.0.0.1:" + std::to_string(listener->getPort())}},
      [&](const std::string& l) { log.push_back(l); }, fast);
  transport.setRoundTripObserver([&](NodeId peer, uint64_t) { roundTrips += peer == 2; });
  transport.start();
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return accepted.size() == 1; }));
  // Answer the hello by hand; then answer pings for a while, then stop.
  Accepted& first = accepted[0];
  auto answerNext = [&](bool pong) {
    for (;;) {
      kj::Own<capnp::MessageReader> got;
      KJ_IF_MAYBE(f, first.reader->take()) {
        got = kj::mv(*f);
      }
      if (got.get() != nullptr) {
        auto root = got->getRoot<schema::PeerFrame>();
        capnp::MallocMessageBuilder message;
        auto frame = message.initRoot<schema::PeerFrame>();
        frame.setMagic(kPeerFrameMagic);
        if (root.isHello()) {
          frame.initHelloAnswer().setOk(true);
        } else if (root.isPing() && pong) {
          frame.setPong(root.getPing());
        } else {
          return;
        }
        got = nullptr;
        writePeerFrame(*first.stream, message).wait(ws);
        return;
      }
      ASSERT_TRUE(first.reader->fill().wait(ws));
    }
  };
  answerNext(true);  // the hello
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return transport.isUp(2); }));
  for (int i = 0; i < 3; ++i) answerNext(true);
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return roundTrips == 3; }));
  // Now silent: the connection is given up within callTimeout plus a ping interval.
  ASSERT_TRUE(testing::waitUntil(
      io, [&]() { return !transport.isUp(2); }, 1000));
  EXPECT_EQ(countContaining(log, "peer 2 down: "), 1u);
  EXPECT_EQ(countContaining(log, "did not answer a ping"), 1u);
  ASSERT_TRUE(testing::waitUntil(io, [&]() { return accepted.size() >= 2; }));  // redialled
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
  auto hello = [&](uint64_t cluster, NodeId from, const char* addr) {
    RawPeer peer(io, two.address());
    peer.hello(cluster, from, addr);
    auto [ok, reason, theirs] = peer.answer();
    return std::make_pair(ok, theirs);
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
