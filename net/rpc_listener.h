// Accepts TCP connections and serves Cap'n Proto RPC on each, with a fresh bootstrap
// capability per connection (so a service can keep per-connection state), or hands each
// connection's stream to a stream handler (the peer protocol, net/raft_service.h), which
// serves it until its promise resolves. Destroying the listener stops accepting and
// drops every connection it accepted.
//
// Connections are bounded so that strangers can never lock out the ones that matter:
//  * A connection starts unidentified. A service may identify it (ConnectionHandle::
//    identify, e.g. a cluster peer after a good hello); an identified connection is
//    exempt from the timeouts below and is never evicted for a newcomer, and a newer
//    connection identified with the same key replaces it (a restarted peer's old socket
//    goes away). So identified connections are bounded by the number of keys.
//  * Unidentified connections are capped (maxUnidentified). A newcomer that finds the
//    cap full evicts the longest-idle unidentified connection with no call in flight;
//    only when every one of them has a call in flight is the newcomer refused, with a
//    Cap'n Proto Abort message carrying kRefusedConnectionPrefix + `refusalReason` (the
//    client sees that sentence, not a bare reset).
//  * handshakeTimeout: an unidentified connection older than this is closed.
//  * idleTimeout: an unidentified connection with no call in flight and none started
//    for this long is closed.
//  * TLS (ListenerOptions::tls): a connection does its TLS handshake (server side) before
//    any RPC, counted as unidentified and evictable meanwhile, and closed if it has not
//    finished within tlsHandshakeTimeout (or handshakeTimeout, if shorter). A client that
//    speaks plaintext Cap'n Proto to a TLS port gets an Abort saying the port requires TLS
//    (kTlsRequiredReason), not a reset. Failed handshakes are logged, at most one line a
//    second (the rest are counted into the next line).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include <capnp/capability.h>
#include <kj/async-io.h>
#include <kj/compat/tls.h>
#include <kj/refcount.h>

namespace kvr::net {

class RpcListener;

// A refused connection's Abort reason starts with this, then ListenerOptions::
// refusalReason; the client library recognizes it (the exception type does not survive
// an Abort in capnp 0.9).
constexpr const char* kRefusedConnectionPrefix = "refused the connection: ";
// The reason a TLS port gives a plaintext client (after kRefusedConnectionPrefix).
constexpr const char* kTlsRequiredReason = "this port requires TLS (connect with TLS: kvctl "
                                           "--cacert CA_FILE)";

// What a service knows of the connection it serves (handed to the bootstrap factory).
// Safe to use after the connection is gone: every call is then a no-op.
class ConnectionHandle final : public kj::Refcounted {
 public:
  // The connection belongs to `key` (e.g. a peer's node id); see RpcListener.
  void identify(uint64_t key);
  // Brackets every call the service serves on this connection: a connection with a call
  // in flight is neither idle nor evictable.
  void callStarted();
  void callFinished();
  bool open() const { return listener_ != nullptr; }

 private:
  friend class RpcListener;
  RpcListener* listener_ = nullptr;  // null once the connection is closed
  uint64_t id_ = 0;
};

struct ListenerOptions {
  uint32_t maxUnidentified = 1024;                  // >= 1
  kj::Duration handshakeTimeout = 0 * kj::SECONDS;  // 0: unidentified may stay
  kj::Duration idleTimeout = 0 * kj::SECONDS;       // 0: never closed for idleness
  std::string refusalReason = "too many connections";
  // Non-null: every connection is TLS, this context's server side (it must outlive the
  // listener). A handshake not finished within tlsHandshakeTimeout closes the connection.
  kj::TlsContext* tls = nullptr;
  kj::Duration tlsHandshakeTimeout = 5 * kj::SECONDS;
  // Gets one line per failed TLS handshake (rate-limited); may be empty.
  std::function<void(const std::string&)> log;
};

class RpcListener final : private kj::TaskSet::ErrorHandler {
 public:
  using BootstrapFactory = std::function<capnp::Capability::Client(kj::Own<ConnectionHandle>)>;
  // Serves one connection's (plaintext or TLS) stream; the connection is closed when the
  // promise resolves or rejects. The stream outlives the promise.
  using StreamHandler =
      std::function<kj::Promise<void>(kj::Own<ConnectionHandle>, kj::AsyncIoStream&)>;

  // How long a refused connection is kept to read what its client sent (so that closing
  // it does not reset the connection before the client read our Abort), and how many
  // such connections at most at once (beyond that a refused one is just closed).
  static constexpr kj::Duration kRefusalLinger = 1 * kj::SECONDS;
  static constexpr uint32_t kMaxRefusing = 16;

  // A failed accept (e.g. out of file descriptors) is retried after a short pause.
  RpcListener(kj::Own<kj::ConnectionReceiver> receiver, BootstrapFactory factory,
              ListenerOptions options, kj::Timer& timer);
  RpcListener(kj::Own<kj::ConnectionReceiver> receiver, StreamHandler handler,
              ListenerOptions options, kj::Timer& timer);
  ~RpcListener() noexcept(false);
  KJ_DISALLOW_COPY(RpcListener);

  uint getPort() const { return port_; }

  // Closes the listening socket; connections already accepted stay up.
  void stopAccepting() {
    accepting_ = nullptr;
    receiver_ = nullptr;
  }
  uint32_t openConnections() const { return uint32_t(conns_.size()); }
  uint32_t unidentifiedConnections() const { return unidentified_; }
  uint64_t refusedConnections() const { return refused_; }
  uint64_t evictedConnections() const { return evicted_; }
  uint64_t timedOutConnections() const { return timedOut_; }
  uint64_t replacedConnections() const { return replaced_; }
  uint64_t acceptErrors() const { return acceptErrors_; }
  uint64_t tlsHandshakeFailures() const { return tlsFailures_; }
  uint64_t plaintextRefused() const { return plaintextRefused_; }

 private:
  friend class ConnectionHandle;
  struct Conn;

  // Both public constructors: exactly one of `factory` and `handler` is set.
  RpcListener(kj::Own<kj::ConnectionReceiver> receiver, BootstrapFactory factory,
              StreamHandler handler, ListenerOptions options, kj::Timer& timer);
  void start();  // checks the options, starts accepting (and sweeping)
  kj::Promise<void> acceptLoop();
  void admit(kj::Own<kj::AsyncIoStream> stream);
  // Runs Cap'n Proto, or the stream handler, on the (plaintext or TLS) stream of
  // connection `conn`.
  void serve(Conn& conn, kj::Own<kj::AsyncIoStream> stream);
  // TLS: tells a plaintext client off, else does the handshake over connection `id`'s
  // socket, then serve().
  kj::Promise<void> handshake(uint64_t id, kj::AsyncIoStream& socket);
  kj::Own<kj::AsyncIoStream> takeSocket(uint64_t id);
  void refuse(kj::Own<kj::AsyncIoStream> stream);
  // Sends an Abort with `reason` (`tls`: after a server-side handshake), then lingers.
  void sendAbort(kj::Own<kj::AsyncIoStream> stream, const std::string& reason, bool tls);
  // Closes our side and reads what the client still sends until it closes too, so that
  // what we wrote last reaches it instead of a reset; bounded by kRefusalLinger and, in
  // number, by kMaxRefusing (beyond that the stream is just closed).
  void linger(kj::Own<kj::AsyncIoStream> stream);
  void lingerAfter(kj::Promise<kj::Own<kj::AsyncIoStream>> written);
  void logTlsFailure(const std::string& line);
  // The unidentified connection with no call in flight that has been idle longest.
  kj::Maybe<uint64_t> longestIdle();
  void close(uint64_t id);
  void closeLater(uint64_t id);
  kj::Promise<void> sweepLoop(kj::Duration interval);
  void sweep();
  void identify(uint64_t id, uint64_t key);
  void callStarted(uint64_t id);
  void callFinished(uint64_t id);
  void taskFailed(kj::Exception&& exception) override;
  void checkInvariants() const;

  kj::Timer& timer_;
  kj::Own<kj::ConnectionReceiver> receiver_;
  BootstrapFactory factory_;  // exactly one of these two is set
  StreamHandler streamHandler_;
  ListenerOptions options_;
  uint port_;
  uint64_t nextId_ = 1;
  std::map<uint64_t, kj::Own<Conn>> conns_;
  std::map<uint64_t, uint64_t> byKey_;  // identity key -> connection id
  uint32_t unidentified_ = 0;
  uint32_t refusing_ = 0;
  uint64_t refused_ = 0;
  uint64_t evicted_ = 0;
  uint64_t timedOut_ = 0;
  uint64_t replaced_ = 0;
  uint64_t acceptErrors_ = 0;
  uint64_t tlsFailures_ = 0;
  uint64_t plaintextRefused_ = 0;
  kj::TimePoint lastTlsLog_ = kj::origin<kj::TimePoint>();
  uint64_t tlsLogsSuppressed_ = 0;
  kj::TaskSet tasks_;  // deferred closes, refusals
  kj::Promise<void> sweeping_ = nullptr;
  kj::Promise<void> accepting_ = nullptr;
};

}  // namespace kvr::net
