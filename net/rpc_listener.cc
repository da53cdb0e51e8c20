#include "net/rpc_listener.h"

#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>

namespace kvr::net {
namespace {

struct AcceptedConnection {
  AcceptedConnection(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client bootstrap)
      : stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}

  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

}  // namespace

RpcListener::RpcListener(kj::Own<kj::ConnectionReceiver> receiver, BootstrapFactory factory,
                         uint32_t maxConnections, kj::Timer& timer)
    : timer_(timer),
      receiver_(kj::mv(receiver)),
      factory_(std::move(factory)),
      maxConnections_(maxConnections),
      port_(receiver_->getPort()),
      connections_(*this) {
  accepting_ = acceptLoop().eagerlyEvaluate(nullptr);
}

kj::Promise<void> RpcListener::acceptLoop() {
  return receiver_->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
    if (open_ >= maxConnections_) {
      ++refused_;  // dropping the stream closes it
    } else {
      ++open_;
      auto conn = kj::heap<AcceptedConnection>(kj::mv(stream), factory_());
      auto disconnected = conn->network.onDisconnect();
      connections_.add(disconnected.attach(kj::mv(conn), kj::defer([this]() { --open_; })));
    }
    return acceptLoop();
  }, [this](kj::Exception&&) {
    ++acceptErrors_;
    return timer_.afterDelay(100 * kj::MILLISECONDS).then([this]() { return acceptLoop(); });
  });
}

void RpcListener::taskFailed(kj::Exception&&) {
  // A connection's disconnect promise never rejects in practice; either way it is gone.
}

}  // namespace kvr::net
