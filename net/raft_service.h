// The server side of RaftPeer (schemas/raft.capnp): turns delivered envelopes into
// kvr::Messages for the replica.
//
// Every envelope is decoded with the validating codec; a malformed one, one of another
// cluster or one addressed to another node is counted, logged (rate-limited) and
// dropped. hello() refuses a peer of another cluster or one that is not a member; the
// refusal is logged once per remote cluster / node id, and the connection's later
// deliver() calls fail. deliver() before an accepted hello fails too. An accepted hello
// identifies the connection to the listener as that peer's (ConnectionHandle::identify):
// it replaces the peer's older connection and no longer counts as a stranger. The client
// address an accepted peer names in its hello goes into ClientAddresses (if set), and the
// answer names ours.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <capnp/capability.h>

#include "core/types.h"
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

  // The bootstrap capability for one new incoming connection.
  capnp::Capability::Client newConnection(kj::Own<ConnectionHandle> connection);

  // Where peers' advertised client addresses go and ours is read from; must outlive the
  // service. Without it hellos are answered with no address.
  void setClientAddresses(ClientAddresses* addresses) { addresses_ = addresses; }

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

 private:
  class Connection;
  friend class Connection;

  // Empty when the peer may talk to us, else the reason for refusing it.
  std::string checkHello(uint64_t clusterId, NodeId from);
  void deliver(capnp::List<schema::PeerEnvelope>::Reader batch);
  void dropped(const std::string& why);
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
  uint64_t received_ = 0;
  uint64_t dropped_ = 0;
  uint64_t refusedHellos_ = 0;
  LogRateLimiter dropLog_{1000};
  std::set<std::pair<uint64_t, NodeId>> refusalsLogged_;  // bounded: see checkHello
};

}  // namespace kvr::net
