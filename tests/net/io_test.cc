// kj sockets, address parsing and pipes through UvLowLevelAsyncIo.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <kj/async-io.h>
#include <kj/debug.h>

#include "net/uv_io.h"
#include "tests/net/uv_loop_fixture.h"

namespace kvr::net {
namespace {

using IoTest = testing::UvLoopTest;

struct Connection {
  kj::Own<kj::ConnectionReceiver> listener;
  kj::Own<kj::AsyncIoStream> client;
  kj::Own<kj::AsyncIoStream> server;
};

Connection connectLoopback(UvAsyncIo& io) {
  auto& ws = io.waitScope();
  Connection c;
  c.listener = io.network().parseAddress("127.0.0.1", 0).wait(ws)->listen();
  uint port = c.listener->getPort();
  EXPECT_NE(port, 0u);
  auto accepted = c.listener->accept();
  c.client = io.network().parseAddress("127.0.0.1", port).wait(ws)->connect().wait(ws);
  c.server = accepted.wait(ws);
  return c;
}

kj::Array<kj::byte> patternBytes(size_t size) {
  auto bytes = kj::heapArray<kj::byte>(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<kj::byte>((i * 131 + 7) & 0xff);
  return bytes;
}

TEST_F(IoTest, LargeTransferOverLoopbackTcp) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto c = connectLoopback(io);

  // Far more than the socket buffers hold, so writes block and resume repeatedly.
  constexpr size_t kSize = 8 << 20;
  auto sent = patternBytes(kSize);
  auto received = kj::heapArray<kj::byte>(kSize);
  auto writing = c.client->write(sent.begin(), sent.size());
  size_t got = c.server->read(received.begin(), kSize, kSize).wait(ws);
  writing.wait(ws);
  EXPECT_EQ(got, kSize);
  EXPECT_TRUE(sent.asPtr() == received.asPtr());
}

TEST_F(IoTest, GatherWriteSkipsEmptyPiecesAndKeepsOrder) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto c = connectLoopback(io);
  kj::StringPtr a = "hello ", b = "", d = "world";
  kj::ArrayPtr<const kj::byte> pieces[] = {a.asBytes(), b.asBytes(), d.asBytes()};
  c.server->write(pieces).wait(ws);
  char buf[11];
  c.client->read(buf, sizeof(buf)).wait(ws);
  EXPECT_EQ(kj::str(kj::arrayPtr(buf, sizeof(buf))), "hello world");
}

TEST_F(IoTest, ShutdownWriteGivesEndOfStream) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto c = connectLoopback(io);
  c.client->write("abc", 3).wait(ws);
  c.client->shutdownWrite();
  char buf[16];
  // Asks for more than will ever come: returns what there is at end of stream.
  EXPECT_EQ(c.server->tryRead(buf, sizeof(buf), sizeof(buf)).wait(ws), 3u);
  EXPECT_EQ(c.server->tryRead(buf, 1, sizeof(buf)).wait(ws), 0u);
}

TEST_F(IoTest, ConnectToClosedPortIsDisconnected) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  uint port;
  {
    auto listener = io.network().parseAddress("127.0.0.1", 0).wait(ws)->listen();
    port = listener->getPort();
  }
  auto addr = io.network().parseAddress("127.0.0.1", port).wait(ws);
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { addr->connect().wait(ws); })) {
    EXPECT_EQ(e->getType(), kj::Exception::Type::DISCONNECTED) << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "connect to a closed port succeeded";
  }
}

TEST_F(IoTest, PeerResetReadsAsDisconnected) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto c = connectLoopback(io);
  char buf[8];
  auto pending = c.client->tryRead(buf, 1, sizeof(buf));
  // Linger 0: close() sends RST instead of FIN.
  struct linger hard = {1, 0};
  c.server->setsockopt(SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
  c.server = nullptr;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { pending.wait(ws); })) {
    EXPECT_EQ(e->getType(), kj::Exception::Type::DISCONNECTED) << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "read from a reset connection succeeded";
  }
}

// After a short read the stream waits for readability before it reads again (no read()
// that only hears EAGAIN): what arrives later, a whole read's worth split across
// arrivals, the end of the stream and a reset must all still reach the reader.
TEST_F(IoTest, AfterAShortReadLaterBytesEndAndResetStillArrive) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  for (int ending = 0; ending < 2; ++ending) {
    auto c = connectLoopback(io);
    char buf[64];
    c.server->write("abc", 3).wait(ws);
    EXPECT_EQ(c.client->tryRead(buf, 1, sizeof(buf)).wait(ws), 3u);  // short: drained
    auto later = c.client->tryRead(buf, 1, sizeof(buf));
    EXPECT_FALSE(later.poll(ws));
    c.server->write("defg", 4).wait(ws);
    EXPECT_EQ(later.wait(ws), 4u);
    EXPECT_EQ(kj::str(kj::arrayPtr(buf, 4)), "defg");
    // minBytes beyond one arrival: the rest comes in a second write.
    auto whole = c.client->read(buf, 6);
    c.server->write("hij", 3).wait(ws);
    EXPECT_FALSE(whole.poll(ws));
    c.server->write("klm", 3).wait(ws);
    whole.wait(ws);
    EXPECT_EQ(kj::str(kj::arrayPtr(buf, 6)), "hijklm");
    c.server->write("n", 1).wait(ws);
    EXPECT_EQ(c.client->tryRead(buf, 1, sizeof(buf)).wait(ws), 1u);
    if (ending == 0) {
      c.server->shutdownWrite();
      EXPECT_EQ(c.client->tryRead(buf, 1, sizeof(buf)).wait(ws), 0u);
    } else {
      struct linger hard = {1, 0};
      c.server->setsockopt(SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
      c.server = nullptr;
      KJ_IF_MAYBE(e, kj::runCatchingExceptions(
                         [&]() { c.client->tryRead(buf, 1, sizeof(buf)).wait(ws); })) {
        EXPECT_EQ(e->getType(), kj::Exception::Type::DISCONNECTED);
      } else {
        ADD_FAILURE() << "read from a reset connection succeeded";
      }
    }
  }
}

TEST_F(IoTest, WhenWriteDisconnectedFiresWhenPeerCloses) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto c = connectLoopback(io);
  auto first = c.client->whenWriteDisconnected();
  auto second = c.client->whenWriteDisconnected();
  EXPECT_FALSE(first.poll(ws));
  c.server = nullptr;
  io.timer().timeoutAfter(5 * kj::SECONDS, kj::mv(first)).wait(ws);
  io.timer().timeoutAfter(5 * kj::SECONDS, kj::mv(second)).wait(ws);
}

// RPC latency depends on this (Nagle + delayed ACK adds ~40 ms per small message). kj's
// network layer also sets it, so this guards the property rather than our code alone.
TEST_F(IoTest, TcpStreamsHaveNagleOff) {
  UvAsyncIo io(loop());
  auto c = connectLoopback(io);
  for (auto* stream : {c.client.get(), c.server.get()}) {
    int noDelay = 0;
    uint len = sizeof(noDelay);
    stream->getsockopt(IPPROTO_TCP, TCP_NODELAY, &noDelay, &len);
    EXPECT_NE(noDelay, 0);
  }
}

TEST_F(IoTest, ParsesHostNamesThroughLookupThread) {
  // Name lookups run getaddrinfo on a kj thread and read its answer through a pipe wrapped
  // by wrapInputFd.
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto addr = io.network().parseAddress("localhost", 80).wait(ws);
  kj::String text = addr->toString();
  EXPECT_TRUE(text.endsWith(":80")) << text.cStr();
}

TEST_F(IoTest, TwoWayPipeFromProvider) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto pipe = io.provider().newTwoWayPipe();
  pipe.ends[0]->write("ping", 4).wait(ws);
  char buf[4];
  pipe.ends[1]->read(buf, 4).wait(ws);
  EXPECT_EQ(kj::str(kj::arrayPtr(buf, 4)), "ping");
}

TEST_F(IoTest, DroppedReadStopsWatchingAndStreamStillWorks) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto c = connectLoopback(io);
  char buf[4];
  {
    auto abandoned = c.server->tryRead(buf, 1, sizeof(buf));
    EXPECT_FALSE(abandoned.poll(ws));
  }
  c.client->write("data", 4).wait(ws);
  EXPECT_EQ(c.server->read(buf, 4, 4).wait(ws), 4u);
  EXPECT_EQ(kj::str(kj::arrayPtr(buf, 4)), "data");
}

}  // namespace
}  // namespace kvr::net
