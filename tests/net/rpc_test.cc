// Cap'n Proto RPC over real loopback TCP, client and server on one uv loop.
#include <gtest/gtest.h>

#include <sys/socket.h>

#include <string>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include "net/uv_io.h"
#include "tests/net/echo.capnp.h"
#include "tests/net/uv_loop_fixture.h"

namespace kvr::net {
namespace {

using RpcTest = testing::UvLoopTest;

class EchoImpl final : public Echo::Server {
 public:
  // `hangStarted` is fulfilled when a hang() call arrives.
  explicit EchoImpl(kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> hangStarted = nullptr)
      : hangStarted_(kj::mv(hangStarted)) {}

  kj::Promise<void> echo(EchoContext context) override {
    context.getResults().setText(context.getParams().getText());
    return kj::READY_NOW;
  }

  kj::Promise<void> hang(HangContext) override {
    KJ_IF_MAYBE(f, hangStarted_) {
      (*f)->fulfill();
    }
    return kj::NEVER_DONE;
  }

 private:
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> hangStarted_;
};

kj::Promise<kj::String> callEcho(Echo::Client& echo, kj::StringPtr text) {
  auto request = echo.echoRequest();
  request.setText(text);
  return request.send().then([](auto response) { return kj::heapString(response.getText()); });
}

TEST_F(RpcTest, ThousandSequentialEchoCalls) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto listener = io.network().parseAddress("127.0.0.1", 0).wait(ws)->listen();
  capnp::TwoPartyServer server(kj::heap<EchoImpl>());
  auto serving = server.listen(*listener);

  auto stream =
      io.network().parseAddress("127.0.0.1", listener->getPort()).wait(ws)->connect().wait(ws);
  capnp::TwoPartyClient client(*stream);
  auto echo = client.bootstrap().castAs<Echo>();
  for (int i = 0; i < 1000; ++i) {
    kj::String text = kj::str("message ", i);
    ASSERT_EQ(callEcho(echo, text).wait(ws), text);
  }
}

TEST_F(RpcTest, ManyConcurrentCalls) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto listener = io.network().parseAddress("127.0.0.1", 0).wait(ws)->listen();
  capnp::TwoPartyServer server(kj::heap<EchoImpl>());
  auto serving = server.listen(*listener);
  auto stream =
      io.network().parseAddress("127.0.0.1", listener->getPort()).wait(ws)->connect().wait(ws);
  capnp::TwoPartyClient client(*stream);
  auto echo = client.bootstrap().castAs<Echo>();

  constexpr int kCalls = 500;
  auto calls = kj::heapArrayBuilder<kj::Promise<kj::String>>(kCalls);
  // Large enough that messages span several socket reads and writes.
  kj::String big = kj::heapString(std::string(64 * 1024, 'x').c_str());
  for (int i = 0; i < kCalls; ++i) {
    kj::String small = kj::str(i);
    calls.add(callEcho(echo, i % 50 == 0 ? kj::StringPtr(big) : kj::StringPtr(small)));
  }
  auto results = kj::joinPromises(calls.finish()).wait(ws);
  for (int i = 0; i < kCalls; ++i) {
    if (i % 50 == 0) {
      EXPECT_EQ(results[i].size(), big.size());
    } else {
      EXPECT_EQ(results[i], kj::str(i));
    }
  }
}

TEST_F(RpcTest, RunsDrivenByUvRun) {
  // No wait(): everything starts from a uv callback and runs under uv_run, as in the node.
  UvAsyncIo io(loop());
  kj::Own<kj::ConnectionReceiver> listener;
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> client;
  capnp::TwoPartyServer server(kj::heap<EchoImpl>());
  kj::Maybe<kj::Promise<void>> serving;
  kj::Maybe<kj::Promise<void>> session;
  int answered = 0;

  testing::CallbackTimer starter(loop(), [&]() {
    session =
        io.network()
            .parseAddress("127.0.0.1", 0)
            .then([&](kj::Own<kj::NetworkAddress> addr) {
              listener = addr->listen();
              serving = server.listen(*listener);
              return io.network().parseAddress("127.0.0.1", listener->getPort());
            })
            .then([&](kj::Own<kj::NetworkAddress> addr) { return addr->connect(); })
            .then([&](kj::Own<kj::AsyncIoStream> connected) {
              stream = kj::mv(connected);
              client = kj::heap<capnp::TwoPartyClient>(*stream);
              auto echo = client->bootstrap().castAs<Echo>();
              kj::Promise<void> calls = kj::READY_NOW;
              for (int i = 0; i < 100; ++i) {
                calls = calls.then([echo, i, &answered]() mutable {
                  return callEcho(echo, kj::str(i)).then([i, &answered](kj::String reply) {
                    KJ_ASSERT(reply == kj::str(i));
                    ++answered;
                  });
                });
              }
              return calls;
            })
            .then([&]() { uv_stop(loop()); },
                  [&](kj::Exception&& e) {
                    ADD_FAILURE() << e.getDescription().cStr();
                    uv_stop(loop());
                  })
            .eagerlyEvaluate(nullptr);
  });
  starter.start(0);
  uv_run(loop(), UV_RUN_DEFAULT);
  EXPECT_EQ(answered, 100);
  session = nullptr;
  client = nullptr;
  stream = nullptr;
  serving = nullptr;
}

// One server-side connection built by hand so the test can kill it.
struct ServerConnection {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
};

class DisconnectTest : public RpcTest, public ::testing::WithParamInterface<bool> {};

TEST_P(DisconnectTest, PeerDisconnectMidCallIsDisconnectedAndLoopGoesOn) {
  const bool resetConnection = GetParam();
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto listener = io.network().parseAddress("127.0.0.1", 0).wait(ws)->listen();
  auto address = io.network().parseAddress("127.0.0.1", listener->getPort()).wait(ws);

  auto hangStarted = kj::newPromiseAndFulfiller<void>();
  auto accepted = listener->accept();
  auto clientStream = address->connect().wait(ws);
  auto conn = kj::heap<ServerConnection>();
  conn->stream = accepted.wait(ws);
  conn->network = kj::heap<capnp::TwoPartyVatNetwork>(*conn->stream,
                                                      capnp::rpc::twoparty::Side::SERVER);
  conn->rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(
      capnp::makeRpcServer(*conn->network, kj::heap<EchoImpl>(kj::mv(hangStarted.fulfiller))));

  capnp::TwoPartyClient client(*clientStream);
  auto echo = client.bootstrap().castAs<Echo>();
  EXPECT_EQ(callEcho(echo, "before").wait(ws), "before");
  auto hanging = echo.hangRequest().send();
  hangStarted.promise.wait(ws);

  if (resetConnection) {
    struct linger hard = {1, 0};  // close() sends RST
    conn->stream->setsockopt(SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
  }
  conn = nullptr;  // the server dies in the middle of the call

  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                io.timer().timeoutAfter(5 * kj::SECONDS, kj::mv(hanging)).wait(ws);
              })) {
    EXPECT_EQ(e->getType(), kj::Exception::Type::DISCONNECTED) << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "call on a dead peer succeeded";
  }

  // The loop keeps going: timers fire and a new connection works.
  io.timer().afterDelay(5 * kj::MILLISECONDS).wait(ws);
  capnp::TwoPartyServer server(kj::heap<EchoImpl>());
  auto serving = server.listen(*listener);
  auto stream2 = address->connect().wait(ws);
  capnp::TwoPartyClient client2(*stream2);
  auto echo2 = client2.bootstrap().castAs<Echo>();
  EXPECT_EQ(callEcho(echo2, "after").wait(ws), "after");
}

INSTANTIATE_TEST_SUITE_P(CloseAndReset, DisconnectTest, ::testing::Bool());

}  // namespace
}  // namespace kvr::net
