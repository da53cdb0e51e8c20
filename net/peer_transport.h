// kvr::Transport over the peer protocol (schemas/raft.capnp PeerFrame, net/peer_stream.h):
// one outgoing connection per peer, carrying frames of queued messages one way.
//
// Per peer:
//  * a bounded queue (message count and approximate bytes); when full the oldest message
//    is dropped (Raft tolerates loss, and the newest messages carry the newest state);
//  * one connection: connect (with a timeout), a hello (clusterId, self, our client
//    address) answered within callTimeout, then frames, one written at a time (each
//    within callTimeout), each carrying every queued message up to a batch bound: what
//    queues while one is written goes in the next;
//  * a ping every pingInterval; one unanswered for callTimeout fails the connection;
//  * any failure (connect, refused hello, failed or timed-out write, a ping unanswered, a
//    frame other than a pong, disconnect) drops the
//    connection and what was queued, and a new connection is tried after an exponential
//    backoff. Nothing ever waits on a peer: send() only queues, so a slow or dead peer
//    never delays the others or the caller.
// Transitions are logged: "peer N up", "peer N down: <why>", and a refusal by the peer
// or a failed TLS handshake once per distinct reason. Nothing is dialled before start(). The client address a peer
// names in its answer to our hello goes into ClientAddresses (if set), logged when new.
// With setIncarnations, the hello carries our data dir's incarnation; a refusal that says
// a peer knew this node id with another incarnation calls the stale callback (the node
// stops: disk/peer_incarnations.h), and an answer whose incarnation differs from the one
// recorded for that peer fails the connection (a new one is recorded first).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <kj/async-io.h>

#include "core/env.h"
#include "disk/peer_incarnations.h"
#include "net/client_addresses.h"
#include "net/node_log.h"
#include "net/tls.h"

namespace kvr::net {

struct PeerTransportOptions {
  size_t maxQueuedMessages = 4096;
  size_t maxQueuedBytes = 64 * 1024 * 1024;
  size_t maxBatchMessages = 1024;
  size_t maxBatchBytes = 8 * 1024 * 1024;  // well under capnp's 64 MiB read limit
  kj::Duration minBackoff = 50 * kj::MILLISECONDS;
  kj::Duration maxBackoff = 2 * kj::SECONDS;
  kj::Duration connectTimeout = 1 * kj::SECONDS;
  kj::Duration callTimeout = 5 * kj::SECONDS;  // the hello's answer, a write, a ping's pong
  kj::Duration pingInterval = 1 * kj::SECONDS;
};

class PeerTransport final : public Transport {
 public:
  struct PeerStats {
    uint64_t sentMessages = 0;      // in frames written whole to the connection
    uint64_t droppedQueueFull = 0;  // oldest dropped to make room
    uint64_t droppedOnFailure = 0;  // queued or in flight when a connection failed
    uint64_t connects = 0;          // hellos accepted
    uint64_t failures = 0;          // connection attempts or connections that failed
  };

  // `peers`: raft address ("host:port") of every other member. `log` gets one line per
  // transition. Messages sent before start() wait in the queues.
  PeerTransport(kj::Network& network, kj::Timer& timer, uint64_t clusterId, NodeId self,
                const std::map<NodeId, std::string>& peers, LogFn log,
                PeerTransportOptions options = {});
  ~PeerTransport() noexcept override;
  KJ_DISALLOW_COPY(PeerTransport);

  // Where our hello reads this node's client address and where peers' answers go; must
  // outlive the transport. Without it the hello carries no address. Before start().
  void setClientAddresses(ClientAddresses* addresses) { addresses_ = addresses; }

  // Connect with TLS: `tls` (its client side: it presents our certificate) must outlive
  // the transport; a peer's certificate must name `serverName`, or, if that is empty,
  // the host of its address. The handshake counts toward connectTimeout. Before start().
  void setTls(TlsSetup* tls, std::string serverName) {
    tls_ = tls;
    tlsServerName_ = std::move(serverName);
  }

  // Our data dir's incarnation and the peers' recorded ones (`known` must outlive the
  // transport); `stale` runs, with the peer's reason, when a peer refuses us because it
  // knew this node id with another incarnation. Before start().
  using StaleFn = std::function<void(const std::string& reason)>;
  void setIncarnations(uint64_t self, disk::PeerIncarnations* known, StaleFn stale) {
    incarnation_ = self;
    knownIncarnations_ = known;
    stale_ = std::move(stale);
  }

  // Starts connecting to every peer (once).
  void start();

  // The members to dial from now on (raft address of every other member), when the
  // configuration in force changes: a new id is dialled (at once if started), a missing
  // one is closed and forgotten with what was queued for it, a changed address is
  // dialled anew. Returns a line per change for the log (empty if none).
  std::vector<std::string> setPeers(const std::map<NodeId, std::string>& peers);

  // Queues the message for msg.to; never blocks. Messages to unknown nodes are dropped.
  void send(Message&& msg) override;

  // Closes every connection and drops every queued message; send() drops from now on.
  void stop();

  // Called with the time (ns) from writing each ping to reading its pong.
  using RoundTripFn = std::function<void(NodeId peer, uint64_t nanos)>;
  void setRoundTripObserver(RoundTripFn observer) { roundTrip_ = std::move(observer); }

  bool isUp(NodeId peer) const;
  PeerStats stats(NodeId peer) const;
  uint64_t droppedUnknownPeer() const { return droppedUnknown_; }

 private:
  class Peer;
  friend class Peer;

  kj::Network& network_;
  kj::Timer& timer_;
  uint64_t clusterId_;
  NodeId self_;
  LogFn log_;
  PeerTransportOptions options_;
  bool started_ = false;
  bool stopped_ = false;
  ClientAddresses* addresses_ = nullptr;
  TlsSetup* tls_ = nullptr;
  std::string tlsServerName_;
  uint64_t droppedUnknown_ = 0;
  RoundTripFn roundTrip_;
  uint64_t incarnation_ = 0;
  disk::PeerIncarnations* knownIncarnations_ = nullptr;
  StaleFn stale_;
  std::map<NodeId, kj::Own<Peer>> peers_;
};

}  // namespace kvr::net
