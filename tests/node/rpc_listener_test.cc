// RpcListener's connection bounds with a fake KvService on loopback: a full listener
// evicts the longest-idle connection without a call in flight, refuses (with its
// reason, as a Cap'n Proto Abort) only when every connection is busy; idle and
// handshake timeouts; an identified connection is replaced by a newer one with the same
// key and is exempt from the timeouts. With TLS: a TLS client is served, a plaintext one
// told the port requires TLS, a silent one closed after the TLS handshake bound.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include "net/rpc_listener.h"
#include "net/tls.h"
#include "net/uv_io.h"
#include "schemas/kv.capnp.h"
#include "tests/net/uv_loop_fixture.h"

namespace kvr::net {
namespace {

// call() hangs until release(); status() identifies the connection with key 1.
struct FakeService {
  std::vector<kj::Own<kj::PromiseFulfiller<void>>> held;
  void release() {
    for (auto& f : held) f->fulfill();
    held.clear();
  }
};

class FakeKv final : public schema::KvService::Server {
 public:
  FakeKv(FakeService& s, kj::Own<ConnectionHandle> c) : s_(s), c_(kj::mv(c)) {}
  kj::Promise<void> call(CallContext) override {
    c_->callStarted();
    auto paf = kj::newPromiseAndFulfiller<void>();
    s_.held.push_back(kj::mv(paf.fulfiller));
    return paf.promise.attach(
        kj::defer([c = kj::addRef(*c_)]() mutable { c->callFinished(); }));
  }
  kj::Promise<void> status(StatusContext) override {
    c_->identify(1);
    return kj::READY_NOW;
  }

 private:
  FakeService& s_;
  kj::Own<ConnectionHandle> c_;
};

struct ListenerClient {
  ListenerClient(UvAsyncIo& io, uint port)
      : stream(io.network()
                   .parseAddress("127.0.0.1", port)
                   .wait(io.waitScope())
                   ->connect()
                   .wait(io.waitScope())),
        rpc(*stream),
        kv(rpc.bootstrap().castAs<schema::KvService>()) {}
  kj::Promise<void> call() { return kv.callRequest().send().ignoreResult(); }
  kj::Promise<void> status() { return kv.statusRequest().send().ignoreResult(); }
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyClient rpc;
  schema::KvService::Client kv;
};

class RpcListenerTest : public testing::UvLoopTest {};

kj::Own<RpcListener> listen(UvAsyncIo& io, FakeService& service, ListenerOptions options) {
  auto addr = io.network().parseAddress("127.0.0.1", 0).wait(io.waitScope());
  return kj::heap<RpcListener>(
      addr->listen(),
      [&service](kj::Own<ConnectionHandle> c) -> capnp::Capability::Client {
        return kj::heap<FakeKv>(service, kj::mv(c));
      },
      kj::mv(options), io.timer());
}

// Runs the loop until `p` settles or `ms` pass; "ok", "timeout" or the error text.
std::string settle(UvAsyncIo& io, kj::Promise<void> p, int ms = 2000) {
  return io.timer()
      .timeoutAfter(ms * kj::MILLISECONDS, kj::mv(p))
      .then([]() { return std::string("ok"); },
            [](kj::Exception&& e) {
              std::string text = e.getDescription().cStr();
              return text.find("timed out") != std::string::npos ? std::string("timeout")
                                                                 : text;
            })
      .wait(io.waitScope());
}

TEST_F(RpcListenerTest, FullListenerEvictsTheLongestIdleAndRefusesOnlyWhenAllAreBusy) {
  UvAsyncIo io(loop());
  FakeService service;
  ListenerOptions options;
  options.maxUnidentified = 2;
  options.refusalReason = "too many client connections";
  auto listener = listen(io, service, options);

  ListenerClient a(io, listener->getPort());
  ListenerClient b(io, listener->getPort());
  auto busyA = a.call().fork();
  auto busyB = b.call().fork();
  EXPECT_EQ(settle(io, busyA.addBranch(), 100), "timeout");  // both held: busy
  EXPECT_EQ(listener->openConnections(), 2u);

  ListenerClient c(io, listener->getPort());
  std::string refused = settle(io, c.status());
  EXPECT_NE(refused.find("refused the connection: too many client connections"),
            std::string::npos)
      << refused;
  EXPECT_EQ(listener->refusedConnections(), 1u);

  service.release();  // a and b answered: now idle, a the longest
  EXPECT_EQ(settle(io, busyA.addBranch()), "ok");
  EXPECT_EQ(settle(io, busyB.addBranch()), "ok");
  ListenerClient d(io, listener->getPort());
  auto dCall = d.call();
  EXPECT_EQ(settle(io, io.timer().afterDelay(50 * kj::MILLISECONDS)), "ok");
  EXPECT_EQ(listener->evictedConnections(), 1u);
  EXPECT_EQ(listener->openConnections(), 2u);
  EXPECT_NE(settle(io, a.call()), "timeout");  // a was evicted: its call fails at once
  service.release();
  EXPECT_EQ(settle(io, kj::mv(dCall)), "ok");
}

TEST_F(RpcListenerTest, TimeoutsCloseStrangersAndANewerIdentifiedConnectionReplaces) {
  UvAsyncIo io(loop());
  FakeService service;
  ListenerOptions options;
  options.maxUnidentified = 4;
  options.handshakeTimeout = 300 * kj::MILLISECONDS;
  auto listener = listen(io, service, options);

  ListenerClient peer(io, listener->getPort());
  EXPECT_EQ(settle(io, peer.status()), "ok");  // identified as key 1
  ListenerClient stranger(io, listener->getPort());
  EXPECT_EQ(settle(io, io.timer().afterDelay(50 * kj::MILLISECONDS)), "ok");
  EXPECT_EQ(listener->unidentifiedConnections(), 1u);
  EXPECT_EQ(settle(io, io.timer().afterDelay(600 * kj::MILLISECONDS)), "ok");
  EXPECT_EQ(listener->timedOutConnections(), 1u);
  EXPECT_EQ(listener->openConnections(), 1u);
  EXPECT_NE(settle(io, stranger.status()), "ok");
  EXPECT_EQ(settle(io, peer.status()), "ok");  // the identified one outlives the timeout

  ListenerClient again(io, listener->getPort());
  EXPECT_EQ(settle(io, again.status()), "ok");  // key 1 again: replaces `peer`
  EXPECT_EQ(listener->replacedConnections(), 1u);
  EXPECT_NE(settle(io, peer.status()), "ok");
  EXPECT_EQ(listener->openConnections(), 1u);

  ListenerOptions idle;
  idle.idleTimeout = 200 * kj::MILLISECONDS;
  auto idleListener = listen(io, service, idle);
  ListenerClient quiet(io, idleListener->getPort());
  EXPECT_EQ(settle(io, io.timer().afterDelay(500 * kj::MILLISECONDS)), "ok");
  EXPECT_EQ(idleListener->timedOutConnections(), 1u);
  EXPECT_NE(settle(io, quiet.status()), "ok");
}

// A CA and a node certificate for DNS:localhost, made with the openssl command (as the
// cluster tests make theirs) in a fresh temp dir.
TlsFiles makeCertificates() {
  char dir[] = "/tmp/kvraft-tls-test-XXXXXX";
  KJ_ASSERT(mkdtemp(dir) != nullptr);
  std::string d = dir;
  const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  std::string script =
      "cd " + d + " && openssl req -x509" + ec +
      " -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca && openssl req" + ec +
      " -keyout node.key -out node.csr -subj /CN=node -addext subjectAltName=DNS:localhost"
      " -addext extendedKeyUsage=serverAuth,clientAuth && openssl x509 -req -in node.csr"
      " -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem -days 2 -copy_extensions copy";
  int rc = std::system((script + " >" + d + "/openssl.log 2>&1").c_str());
  KJ_ASSERT(rc == 0, "openssl failed; see the log", d);
  TlsFiles files;
  files.certFile = d + "/node.pem";
  files.keyFile = d + "/node.key";
  files.caFile = d + "/ca.pem";
  return files;
}

TEST_F(RpcListenerTest, TlsServesTlsClientsRefusesPlaintextAndBoundsHandshakes) {
  TlsFiles files = makeCertificates();
  UvAsyncIo io(loop());
  TlsSetup server(files, /*requireCert=*/true, /*requireClientCert=*/false);
  FakeService service;
  std::vector<std::string> logged;
  ListenerOptions options;
  options.tls = &server.context();
  options.tlsHandshakeTimeout = 300 * kj::MILLISECONDS;
  options.log = [&logged](const std::string& line) { logged.push_back(line); };
  auto listener = listen(io, service, options);
  uint port = listener->getPort();

  TlsFiles trust;
  trust.caFile = files.caFile;
  TlsSetup client(trust, /*requireCert=*/false, /*requireClientCert=*/false);
  auto raw = io.network().parseAddress("127.0.0.1", port).wait(io.waitScope())->connect();
  auto secure = raw.then([&client, port](kj::Own<kj::AsyncIoStream> s) {
                     return client.connect(kj::mv(s), "127.0.0.1:" + std::to_string(port),
                                           "localhost");
                   })
                    .wait(io.waitScope());
  capnp::TwoPartyClient rpc(*secure);
  auto kv = rpc.bootstrap().castAs<schema::KvService>();
  EXPECT_EQ(settle(io, kv.statusRequest().send().ignoreResult()), "ok");  // key 1

  ListenerClient plain(io, port);
  std::string refused = settle(io, plain.status());
  EXPECT_NE(refused.find(kTlsRequiredReason), std::string::npos) << refused;
  EXPECT_EQ(listener->plaintextRefused(), 1u);

  auto silent = io.network()
                    .parseAddress("127.0.0.1", port)
                    .wait(io.waitScope())
                    ->connect()
                    .wait(io.waitScope());
  EXPECT_EQ(settle(io, io.timer().afterDelay(50 * kj::MILLISECONDS)), "ok");
  EXPECT_EQ(listener->unidentifiedConnections(), 1u);  // the silent one, handshaking
  EXPECT_EQ(settle(io, io.timer().afterDelay(500 * kj::MILLISECONDS)), "ok");
  EXPECT_EQ(listener->timedOutConnections(), 1u);
  EXPECT_EQ(listener->openConnections(), 1u);
  EXPECT_EQ(settle(io, kv.statusRequest().send().ignoreResult()), "ok");

  ASSERT_FALSE(logged.empty());
  EXPECT_NE(logged[0].find("refused a plaintext connection from 127.0.0.1:"), std::string::npos)
      << logged[0];
  std::string dir = files.caFile.substr(0, files.caFile.rfind('/'));
  EXPECT_EQ(std::system(("rm -rf " + dir).c_str()), 0);
}

}  // namespace
}  // namespace kvr::net
