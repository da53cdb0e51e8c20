#include "net/rpc_listener.h"

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize-async.h>
#include <kj/debug.h>

#include <algorithm>
#include <vector>

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

// Reads and discards until end of stream.
kj::Promise<void> drain(kj::AsyncIoStream& stream, kj::Array<kj::byte> buffer) {
  auto read = stream.tryRead(buffer.begin(), 1, buffer.size());
  return read.then([&stream, buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
    if (n == 0) return kj::READY_NOW;
    return drain(stream, kj::mv(buffer));
  });
}

}  // namespace

struct RpcListener::Conn {
  uint64_t id = 0;
  kj::Own<ConnectionHandle> handle;
  kj::TimePoint accepted = kj::origin<kj::TimePoint>();
  kj::TimePoint lastActivity = kj::origin<kj::TimePoint>();
  uint32_t inflight = 0;
  bool identified = false;
  uint64_t key = 0;
  // Destroyed bottom-up: the watch on the connection before the connection.
  kj::Own<AcceptedConnection> rpc;
  kj::Promise<void> watch = nullptr;
};

void ConnectionHandle::identify(uint64_t key) {
  if (listener_ != nullptr) listener_->identify(id_, key);
}
void ConnectionHandle::callStarted() {
  if (listener_ != nullptr) listener_->callStarted(id_);
}
void ConnectionHandle::callFinished() {
  if (listener_ != nullptr) listener_->callFinished(id_);
}

RpcListener::RpcListener(kj::Own<kj::ConnectionReceiver> receiver, BootstrapFactory factory,
                         ListenerOptions options, kj::Timer& timer)
    : timer_(timer),
      receiver_(kj::mv(receiver)),
      factory_(std::move(factory)),
      options_(std::move(options)),
      port_(receiver_->getPort()),
      tasks_(*this) {
  KJ_REQUIRE(options_.maxUnidentified >= 1, "a listener must admit at least one connection");
  KJ_REQUIRE(options_.handshakeTimeout >= 0 * kj::SECONDS &&
             options_.idleTimeout >= 0 * kj::SECONDS);
  // Sweep often enough that a timeout is enforced within a quarter of itself.
  kj::Duration shortest = 0 * kj::SECONDS;
  for (kj::Duration d : {options_.handshakeTimeout, options_.idleTimeout}) {
    if (d > 0 * kj::SECONDS && (shortest == 0 * kj::SECONDS || d < shortest)) shortest = d;
  }
  if (shortest > 0 * kj::SECONDS) {
    kj::Duration interval = std::clamp(shortest / 4, 20 * kj::MILLISECONDS, 1 * kj::SECONDS);
    sweeping_ = sweepLoop(interval).eagerlyEvaluate(nullptr);
  }
  accepting_ = acceptLoop().eagerlyEvaluate(nullptr);
}

RpcListener::~RpcListener() noexcept(false) {
  accepting_ = nullptr;
  sweeping_ = nullptr;
  while (!conns_.empty()) close(conns_.begin()->first);
}

kj::Promise<void> RpcListener::acceptLoop() {
  return receiver_->accept().then(
      [this](kj::Own<kj::AsyncIoStream> stream) {
        if (unidentified_ >= options_.maxUnidentified) {
          KJ_IF_MAYBE(victim, longestIdle()) {
            ++evicted_;
            close(*victim);
          }
        }
        if (unidentified_ < options_.maxUnidentified) {
          admit(kj::mv(stream));
        } else {
          refuse(kj::mv(stream));
        }
        checkInvariants();
        return acceptLoop();
      },
      [this](kj::Exception&&) {
        ++acceptErrors_;
        return timer_.afterDelay(100 * kj::MILLISECONDS).then([this]() {
          return acceptLoop();
        });
      });
}

void RpcListener::admit(kj::Own<kj::AsyncIoStream> stream) {
  auto conn = kj::heap<Conn>();
  conn->id = nextId_++;
  conn->accepted = conn->lastActivity = timer_.now();
  conn->handle = kj::refcounted<ConnectionHandle>();
  conn->handle->listener_ = this;
  conn->handle->id_ = conn->id;
  conn->rpc = kj::heap<AcceptedConnection>(kj::mv(stream), factory_(kj::addRef(*conn->handle)));
  uint64_t id = conn->id;
  conn->watch = conn->rpc->network.onDisconnect()
                    .then([this, id]() { closeLater(id); },
                          [this, id](kj::Exception&&) { closeLater(id); })
                    .eagerlyEvaluate(nullptr);
  conns_.emplace(id, kj::mv(conn));
  ++unidentified_;
}

void RpcListener::refuse(kj::Own<kj::AsyncIoStream> stream) {
  ++refused_;
  if (refusing_ >= kMaxRefusing) return;  // dropping the stream closes it
  ++refusing_;
  // A Cap'n Proto Abort: the client's calls fail with our reason instead of a reset.
  auto message = kj::heap<capnp::MallocMessageBuilder>();
  auto abort = message->initRoot<capnp::rpc::Message>().initAbort();
  abort.setReason((kRefusedConnectionPrefix + options_.refusalReason).c_str());
  abort.setType(capnp::rpc::Exception::Type::OVERLOADED);
  kj::AsyncIoStream& s = *stream;
  auto done = capnp::writeMessage(s, *message)
                  .then([&s]() {
                    s.shutdownWrite();
                    return drain(s, kj::heapArray<kj::byte>(4096));
                  })
                  .attach(kj::mv(message));
  tasks_.add(timer_.timeoutAfter(kRefusalLinger, kj::mv(done))
                 .then([]() {}, [](kj::Exception&&) {})
                 .attach(kj::mv(stream), kj::defer([this]() { --refusing_; })));
}

kj::Maybe<uint64_t> RpcListener::longestIdle() {
  kj::Maybe<uint64_t> best;
  kj::TimePoint bestTime = kj::origin<kj::TimePoint>();
  for (auto& [id, conn] : conns_) {
    if (conn->identified || conn->inflight > 0) continue;
    if (best == nullptr || conn->lastActivity < bestTime) {
      best = id;
      bestTime = conn->lastActivity;
    }
  }
  return best;
}

void RpcListener::close(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;  // already closed
  kj::Own<Conn> conn = kj::mv(it->second);
  conns_.erase(it);
  if (conn->identified) {
    auto k = byKey_.find(conn->key);
    KJ_ASSERT(k != byKey_.end() && k->second == id);
    byKey_.erase(k);
  } else {
    KJ_ASSERT(unidentified_ > 0);
    --unidentified_;
  }
  // From here on the service's handle is inert: destroying the connection cancels its
  // calls, whose cleanup may still call callFinished().
  conn->handle->listener_ = nullptr;
  conn->watch = nullptr;
  conn->rpc = nullptr;
}

void RpcListener::closeLater(uint64_t id) {
  // Runs inside the connection's own disconnect chain: destroy it from a later turn.
  tasks_.add(kj::evalLater([this, id]() { close(id); }));
}

kj::Promise<void> RpcListener::sweepLoop(kj::Duration interval) {
  return timer_.afterDelay(interval).then([this, interval]() {
    sweep();
    return sweepLoop(interval);
  });
}

void RpcListener::sweep() {
  kj::TimePoint now = timer_.now();
  std::vector<uint64_t> expired;
  for (auto& [id, conn] : conns_) {
    if (conn->identified) continue;
    bool handshake = options_.handshakeTimeout > 0 * kj::SECONDS &&
                     now - conn->accepted >= options_.handshakeTimeout;
    bool idle = options_.idleTimeout > 0 * kj::SECONDS && conn->inflight == 0 &&
                now - conn->lastActivity >= options_.idleTimeout;
    if (handshake || idle) expired.push_back(id);
  }
  for (uint64_t id : expired) {
    ++timedOut_;
    close(id);
  }
  checkInvariants();
}

void RpcListener::identify(uint64_t id, uint64_t key) {
  auto it = conns_.find(id);
  KJ_ASSERT(it != conns_.end(), "a live handle names a closed connection", id);
  Conn& conn = *it->second;
  if (conn.identified) {
    KJ_REQUIRE(conn.key == key, "a connection cannot change identity", conn.key, key);
    return;
  }
  auto old = byKey_.find(key);
  if (old != byKey_.end()) {
    ++replaced_;
    close(old->second);  // the same peer's older connection: it reconnected
  }
  conn.identified = true;
  conn.key = key;
  byKey_[key] = id;
  KJ_ASSERT(unidentified_ > 0);
  --unidentified_;
  checkInvariants();
}

void RpcListener::callStarted(uint64_t id) {
  auto it = conns_.find(id);
  KJ_ASSERT(it != conns_.end(), "a live handle names a closed connection", id);
  ++it->second->inflight;
  it->second->lastActivity = timer_.now();
}

void RpcListener::callFinished(uint64_t id) {
  auto it = conns_.find(id);
  KJ_ASSERT(it != conns_.end(), "a live handle names a closed connection", id);
  KJ_ASSERT(it->second->inflight > 0, "callFinished without callStarted", id);
  --it->second->inflight;
  it->second->lastActivity = timer_.now();
}

void RpcListener::checkInvariants() const {
  KJ_ASSERT(unidentified_ + byKey_.size() == conns_.size(), unidentified_, byKey_.size(),
            conns_.size());
  KJ_ASSERT(unidentified_ <= options_.maxUnidentified, unidentified_);
  KJ_ASSERT(refusing_ <= kMaxRefusing);
}

void RpcListener::taskFailed(kj::Exception&&) {
  // Deferred closes and refusals swallow their own errors; nothing to do.
}

}  // namespace kvr::net
