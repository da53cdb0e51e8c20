// Accepts TCP connections and serves Cap'n Proto RPC on each, with a fresh bootstrap
// capability per connection (so a service can keep per-connection state, such as the
// result of RaftPeer.hello). Destroying the listener stops accepting and drops every
// connection it accepted.
#pragma once

#include <cstdint>
#include <functional>

#include <capnp/capability.h>
#include <kj/async-io.h>

namespace kvr::net {

class RpcListener final : private kj::TaskSet::ErrorHandler {
 public:
  using BootstrapFactory = std::function<capnp::Capability::Client()>;

  // `maxConnections` bounds the connections open at once; more are closed on accept.
  // A failed accept (e.g. out of file descriptors) is retried after a short pause.
  RpcListener(kj::Own<kj::ConnectionReceiver> receiver, BootstrapFactory factory,
              uint32_t maxConnections, kj::Timer& timer);
  KJ_DISALLOW_COPY(RpcListener);

  uint getPort() const { return port_; }

  // Closes the listening socket; connections already accepted stay up.
  void stopAccepting() {
    accepting_ = nullptr;
    receiver_ = nullptr;
  }
  uint32_t openConnections() const { return open_; }
  uint64_t refusedConnections() const { return refused_; }
  uint64_t acceptErrors() const { return acceptErrors_; }

 private:
  kj::Promise<void> acceptLoop();
  void taskFailed(kj::Exception&& exception) override;

  kj::Timer& timer_;
  kj::Own<kj::ConnectionReceiver> receiver_;
  BootstrapFactory factory_;
  uint32_t maxConnections_;
  uint port_;
  uint32_t open_ = 0;
  uint64_t refused_ = 0;
  uint64_t acceptErrors_ = 0;
  kj::TaskSet connections_;  // each task owns one connection until it disconnects
  kj::Promise<void> accepting_ = nullptr;
};

}  // namespace kvr::net
