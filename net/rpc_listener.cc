#include "net/rpc_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize-async.h>
#include <kj/debug.h>

#include <algorithm>
#include <vector>

#include "net/buffered_stream.h"
#include "net/tls.h"

namespace kvr::net {
namespace {

struct AcceptedConnection {
  AcceptedConnection(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client bootstrap)
      : stream(kj::heap<BufferedReadStream>(kj::mv(s))),
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

// A stream whose first byte was read already (to tell TLS from plaintext): hands it out
// again before reading on, so the TLS handshake sees the whole ClientHello. It does not
// own `inner`: the connection keeps the socket, to linger on it after a failed handshake.
class ReplayFirstByte final : public kj::AsyncIoStream {
 public:
  ReplayFirstByte(kj::AsyncIoStream& inner, kj::byte first) : inner_(inner), first_(first) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    if (replayed_ || maxBytes == 0) return inner_.tryRead(buffer, minBytes, maxBytes);
    replayed_ = true;
    auto* out = static_cast<kj::byte*>(buffer);
    out[0] = first_;
    if (minBytes <= 1) return size_t(1);
    return inner_.tryRead(out + 1, minBytes - 1, maxBytes - 1).then([](size_t n) {
      return n + 1;
    });
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return inner_.write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner_.write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_.whenWriteDisconnected(); }
  void shutdownWrite() override { inner_.shutdownWrite(); }
  void abortRead() override { inner_.abortRead(); }
  void getsockopt(int level, int option, void* value, uint* length) override {
    inner_.getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, uint length) override {
    inner_.setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, uint* length) override {
    inner_.getsockname(addr, length);
  }
  void getpeername(struct sockaddr* addr, uint* length) override {
    inner_.getpeername(addr, length);
  }

 private:
  kj::AsyncIoStream& inner_;
  kj::byte first_;
  bool replayed_ = false;
};

// "HOST:PORT" of the other end, for logs ("?" if the socket cannot say).
std::string peerAddress(kj::AsyncIoStream& stream) {
  sockaddr_storage addr{};
  uint length = sizeof addr;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                stream.getpeername(reinterpret_cast<sockaddr*>(&addr), &length);
              })) {
    return "?";
  }
  char host[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "?";
}

}  // namespace

struct RpcListener::Conn {
  uint64_t id = 0;
  kj::Own<ConnectionHandle> handle;
  kj::TimePoint accepted = kj::origin<kj::TimePoint>();
  kj::TimePoint lastActivity = kj::origin<kj::TimePoint>();
  uint32_t inflight = 0;
  bool identified = false;
  bool handshaking = false;  // TLS handshake not finished: no RPC yet
  uint64_t key = 0;
  // Destroyed bottom-up (and in this order by close()): the watch on the connection, the
  // connection, the TLS handshake that made its stream, the socket under all of them.
  kj::Own<kj::AsyncIoStream> socket;  // TLS only: the TLS stream reads and writes it
  kj::Promise<void> tlsHandshake = nullptr;
  kj::Own<kj::AsyncIoStream> stream;  // a stream handler's (plaintext or TLS)
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
    : RpcListener(kj::mv(receiver), std::move(factory), nullptr, std::move(options), timer) {}

RpcListener::RpcListener(kj::Own<kj::ConnectionReceiver> receiver, StreamHandler handler,
                         ListenerOptions options, kj::Timer& timer)
    : RpcListener(kj::mv(receiver), nullptr, std::move(handler), std::move(options), timer) {}

RpcListener::RpcListener(kj::Own<kj::ConnectionReceiver> receiver, BootstrapFactory factory,
                         StreamHandler handler, ListenerOptions options, kj::Timer& timer)
    : timer_(timer),
      receiver_(kj::mv(receiver)),
      factory_(std::move(factory)),
      streamHandler_(std::move(handler)),
      options_(std::move(options)),
      port_(receiver_->getPort()),
      tasks_(*this) {
  start();
}

void RpcListener::start() {
  KJ_REQUIRE(bool(factory_) != bool(streamHandler_), "a listener serves RPC or streams");
  KJ_REQUIRE(options_.maxUnidentified >= 1, "a listener must admit at least one connection");
  KJ_REQUIRE(options_.handshakeTimeout >= 0 * kj::SECONDS &&
             options_.idleTimeout >= 0 * kj::SECONDS);
  KJ_REQUIRE(options_.tls == nullptr || options_.tlsHandshakeTimeout > 0 * kj::SECONDS,
             "a TLS handshake must be bounded");
  // Sweep often enough that a timeout is enforced within a quarter of itself.
  kj::Duration tlsTimeout = options_.tls != nullptr ? options_.tlsHandshakeTimeout
                                                    : 0 * kj::SECONDS;
  kj::Duration shortest = 0 * kj::SECONDS;
  for (kj::Duration d : {options_.handshakeTimeout, options_.idleTimeout, tlsTimeout}) {
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
  uint64_t id = conn->id;
  Conn& c = *conn;
  conns_.emplace(id, kj::mv(conn));
  ++unidentified_;
  if (options_.tls == nullptr) {
    serve(c, kj::mv(stream));
  } else {
    c.handshaking = true;
    c.socket = kj::mv(stream);
    c.tlsHandshake = handshake(id, *c.socket).eagerlyEvaluate(nullptr);
  }
}

void RpcListener::serve(Conn& conn, kj::Own<kj::AsyncIoStream> stream) {
  uint64_t id = conn.id;
  if (streamHandler_) {
    conn.stream = kj::mv(stream);
    conn.watch = streamHandler_(kj::addRef(*conn.handle), *conn.stream)
                     .then([this, id]() { closeLater(id); },
                           [this, id](kj::Exception&&) { closeLater(id); })
                     .eagerlyEvaluate(nullptr);
    return;
  }
  conn.rpc = kj::heap<AcceptedConnection>(kj::mv(stream), factory_(kj::addRef(*conn.handle)));
  conn.watch = conn.rpc->network.onDisconnect()
                   .then([this, id]() { closeLater(id); },
                         [this, id](kj::Exception&&) { closeLater(id); })
                   .eagerlyEvaluate(nullptr);
}

kj::Promise<void> RpcListener::handshake(uint64_t id, kj::AsyncIoStream& socket) {
  std::string from = peerAddress(socket);
  auto first = kj::heapArray<kj::byte>(1);
  auto read = socket.tryRead(first.begin(), 1, 1);
  return read
      .then([this, id, from, &socket,
             first = kj::mv(first)](size_t n) mutable -> kj::Promise<void> {
        if (n == 0) {  // closed before saying anything
          closeLater(id);
          return kj::READY_NOW;
        }
        if (first[0] != kTlsHandshakeRecordType) {
          // Plaintext (most likely Cap'n Proto without TLS): say what is wrong in its
          // language rather than fail a handshake it does not know it is in.
          ++plaintextRefused_;
          logTlsFailure("refused a plaintext connection from " + from + " on a TLS port");
          // From a later turn: this continuation still hangs off the socket's read.
          tasks_.add(kj::evalLater([this, socket = takeSocket(id)]() mutable {
            sendAbort(kj::mv(socket), kTlsRequiredReason, false);
          }));
          closeLater(id);
          return kj::READY_NOW;
        }
        return options_.tls->wrapServer(kj::heap<ReplayFirstByte>(socket, first[0]))
            .then([this, id](kj::Own<kj::AsyncIoStream> secure) {
              auto it = conns_.find(id);
              KJ_ASSERT(it != conns_.end(), "a handshake outlived its connection", id);
              it->second->handshaking = false;
              it->second->lastActivity = timer_.now();
              serve(*it->second, kj::mv(secure));
            });
      })
      .catch_([this, id, from](kj::Exception&& e) {
        ++tlsFailures_;
        logTlsFailure("TLS handshake from " + from + " failed: " + describeTlsFailure(e));
        // OpenSSL has written its alert; closing at once with the client's unread bytes
        // (a TLS 1.3 client sends its request right after its Finished) would reset the
        // connection, and the client would see "connection reset", not the alert.
        linger(takeSocket(id));
        closeLater(id);
      });
}

kj::Own<kj::AsyncIoStream> RpcListener::takeSocket(uint64_t id) {
  auto it = conns_.find(id);
  KJ_ASSERT(it != conns_.end(), "a handshake outlived its connection", id);
  return kj::mv(it->second->socket);
}

void RpcListener::logTlsFailure(const std::string& line) {
  if (!options_.log) return;
  // A stranger can fail handshakes as fast as it can connect: one line a second at most.
  kj::TimePoint now = timer_.now();
  if (lastTlsLog_ != kj::origin<kj::TimePoint>() && now - lastTlsLog_ < 1 * kj::SECONDS) {
    ++tlsLogsSuppressed_;
    return;
  }
  lastTlsLog_ = now;
  std::string text = line;
  if (tlsLogsSuppressed_ > 0) {
    text += " (and " + std::to_string(tlsLogsSuppressed_) +
            " more TLS failures not logged in the second before)";
    tlsLogsSuppressed_ = 0;
  }
  options_.log(text);
}

void RpcListener::refuse(kj::Own<kj::AsyncIoStream> stream) {
  ++refused_;
  sendAbort(kj::mv(stream), options_.refusalReason, options_.tls != nullptr);
}

void RpcListener::sendAbort(kj::Own<kj::AsyncIoStream> stream, const std::string& reason,
                            bool tls) {
  if (refusing_ >= kMaxRefusing) return;  // dropping the stream closes it
  // A Cap'n Proto Abort: the client's calls fail with our reason instead of a reset.
  auto message = kj::heap<capnp::MallocMessageBuilder>();
  auto abort = message->initRoot<capnp::rpc::Message>().initAbort();
  abort.setReason((kRefusedConnectionPrefix + reason).c_str());
  abort.setType(capnp::rpc::Exception::Type::OVERLOADED);
  kj::Promise<kj::Own<kj::AsyncIoStream>> ready = tls ? options_.tls->wrapServer(kj::mv(stream))
                                                      : kj::Promise<kj::Own<kj::AsyncIoStream>>(
                                                            kj::mv(stream));
  lingerAfter(ready.then([message = kj::mv(message)](kj::Own<kj::AsyncIoStream> s) mutable {
    kj::AsyncIoStream& out = *s;
    return capnp::writeMessage(out, *message)
        .attach(kj::mv(message))
        .then([s = kj::mv(s)]() mutable { return kj::mv(s); });
  }));
}

void RpcListener::linger(kj::Own<kj::AsyncIoStream> stream) {
  // From a later turn either way: the failed handshake that wrote to it (and still
  // refers to it) is torn down first.
  if (refusing_ >= kMaxRefusing) {
    tasks_.add(kj::evalLater([stream = kj::mv(stream)]() mutable { stream = nullptr; }));
    return;
  }
  lingerAfter(kj::evalLater([stream = kj::mv(stream)]() mutable { return kj::mv(stream); }));
}

void RpcListener::lingerAfter(kj::Promise<kj::Own<kj::AsyncIoStream>> written) {
  ++refusing_;
  auto done = written.then([](kj::Own<kj::AsyncIoStream> s) {
    kj::AsyncIoStream& out = *s;
    out.shutdownWrite();
    return drain(out, kj::heapArray<kj::byte>(4096)).attach(kj::mv(s));
  });
  tasks_.add(timer_.timeoutAfter(kRefusalLinger, kj::mv(done))
                 .then([]() {}, [](kj::Exception&&) {})
                 .attach(kj::defer([this]() { --refusing_; })));
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
  conn->stream = nullptr;
  conn->tlsHandshake = nullptr;
  conn->socket = nullptr;
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
    bool tls = conn->handshaking && now - conn->accepted >= options_.tlsHandshakeTimeout;
    if (handshake || idle || tls) expired.push_back(id);
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
