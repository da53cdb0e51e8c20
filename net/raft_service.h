// The receiving side of the peer protocol (schemas/raft.capnp PeerFrame, net/
// peer_stream.h): turns the batches a peer sends into kvr::Messages for the replica.
//
// Every envelope is decoded with the validating codec; a malformed one, one of another
// cluster or one addressed to another node is counted, logged (rate-limited) and
// dropped. The hello refuses a peer of another cluster or one that is not a member; the
// refusal is logged once per remote cluster / node id, the answer says why, and the
// connection ends. A batch or ping before an accepted hello, a second hello, a frame that
// is not a PeerFrame (a node of an older version speaks RPC) or one too big closes the
// connection, logged (rate-limited). An accepted hello
// identifies the connection to the listener as that peer's (ConnectionHandle::identify):
// it replaces the peer's older connection and no longer counts as a stranger. The client
// address an accepted peer names in its hello goes into ClientAddresses (if set), and the
// answer names ours. With setIncarnations, a hello whose incarnation differs from the one
// recorded for its node id is refused with `staleIncarnation` set (the dialer's data dir
// was wiped or replaced: disk/peer_incarnations.h); a new one is recorded first.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <kj/async-io.h>

#include "core/types.h"
#include "disk/peer_incarnations.h"
#include "net/client_addresses.h"
#include "net/node_log.h"
#include "net/rpc_listener.h"
#include "schemas/raft.capnp.h"

namespace kvr::net {

class RaftService {
 public:
  using ReceiveFn = std::function<void(Message&& msg)>;
  using NowFn = std::function<uint64_t()>;  // milliseconds, for rate-limiting logs

  // `members`: every voter id of the cluster, including `self`.
  // `afterBatch` runs once after each delivered batch (the node logs status changes).
  RaftService(uint64_t clusterId, NodeId self, std::vector<NodeId> members, ReceiveFn receive,
              std::function<void()> afterBatch, LogFn log, NowFn nowMs);
  KJ_DISALLOW_COPY(RaftService);

  // Serves one accepted connection (RpcListener's stream handler); resolves when it
  // should be closed. `stream` must outlive the promise.
  kj::Promise<void> serve(kj::Own<ConnectionHandle> connection, kj::AsyncIoStream& stream);

  // Where peers' advertised client addresses go and ours is read from; must outlive the
  // service. Without it hellos are answered with no address.
  void setClientAddresses(ClientAddresses* addresses) { addresses_ = addresses; }

  // Our data dir's incarnation (answers carry it) and the peers' recorded ones; `known`
  // must outlive the service. Without it incarnations are neither sent nor checked.
  void setIncarnations(uint64_t self, disk::PeerIncarnations* known) {
    incarnation_ = self;
    knownIncarnations_ = known;
  }

  // The node ids whose hellos are accepted from now on (the node passes every member of
  // every configuration it has been in force with since it started: a member removed a
  // moment ago may still have to deliver the entry that removed it). Connections already
  // accepted stay; the core decides what to take from a non-member.
  void setMembers(std::vector<NodeId> members) { members_ = std::move(members); }

  // From now on every delivered message is dropped (the node is shutting down).
  void stop() { stopped_ = true; }

  uint64_t received() const { return received_; }
  uint64_t dropped() const { return dropped_; }
  uint64_t refusedHellos() const { return refusedHellos_; }
  // Of those, the hellos of a wiped or replaced data dir (another incarnation).
  uint64_t refusedStaleIncarnations() const { return refusedStale_; }
  uint64_t protocolErrors() const { return protocolErrors_; }

 private:
  class Inbound;
  friend class Inbound;

  // Empty when the peer may talk to us, else the reason for refusing it; *stale when the
  // reason is another incarnation than the one recorded for `from`.
  std::string checkHello(uint64_t clusterId, NodeId from, uint64_t incarnation, bool* stale);
  std::string checkIncarnation(NodeId from, uint64_t incarnation, bool* stale);
  void deliver(capnp::List<schema::PeerEnvelope>::Reader batch);
  void dropped(const std::string& why);
  void closedOnError(const std::string& why);
  // Logs `line` unless `limiter` holds it back; the next line says how many it did.
  void logLimited(LogRateLimiter& limiter, std::string line, const char* verb);
  // An accepted peer's hello named this client address.
  void learnClientAddr(NodeId from, capnp::Text::Reader address);

  uint64_t clusterId_;
  NodeId self_;
  std::vector<NodeId> members_;
  ReceiveFn receive_;
  std::function<void()> afterBatch_;
  LogFn log_;
  NowFn nowMs_;
  bool stopped_ = false;
  ClientAddresses* addresses_ = nullptr;
  uint64_t incarnation_ = 0;
  disk::PeerIncarnations* knownIncarnations_ = nullptr;
  uint64_t received_ = 0;
  uint64_t dropped_ = 0;
  uint64_t refusedHellos_ = 0;
  uint64_t refusedStale_ = 0;
  uint64_t protocolErrors_ = 0;
  LogRateLimiter dropLog_{1000};
  LogRateLimiter errorLog_{1000};
  std::set<std::pair<uint64_t, NodeId>> refusalsLogged_;  // bounded: see checkHello
};

}  // namespace kvr::net
