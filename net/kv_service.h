// The server side of KvService (schemas/kv.capnp): validates a client command, hands it
// to the replica and answers with its reply plus a readable sentence for every non-ok
// status. Failures are always replies, never RPC exceptions. A NotLeader reply names the
// leader's client address when this node knows it (ClientAddresses), so that a client
// can go there; so does status().
#pragma once

#include <functional>
#include <string>

#include <capnp/capability.h>
#include <kj/timer.h>

#include "core/command.h"
#include "core/replica.h"
#include "net/backup_service.h"
#include "net/client_addresses.h"
#include "net/node_log.h"
#include "net/node_metrics.h"
#include "net/rpc_listener.h"

namespace kvr::net {

// A sentence for the client explaining `reply.status` (empty for Ok). `detail`, when
// non-empty, is the specific reason (e.g. from kvr::validate) and is used instead of the
// generic text for TooLarge and Invalid. `leaderAddr` (NotLeader) is the leader's client
// address, if known.
std::string explainStatus(const KvReply& reply, const std::string& detail = "",
                          const std::string& leaderAddr = "");

class KvService {
 public:
  // `afterInput` runs after each request has been handed to the replica (the node logs
  // status changes). An exception from the replica (a broken invariant) goes to `fatal`.
  // `clusterId` goes into the info of served snapshots (KvService.snapshot).
  KvService(Replica& replica, std::function<void()> afterInput, FatalFn fatal,
            uint64_t clusterId = 0);
  KJ_DISALLOW_COPY(KvService);

  // The bootstrap capability for a client connection. Every connection shares this
  // service; it must outlive them. Each call on it is bracketed by
  // connection->callStarted()/callFinished() (a connection waiting for an answer is
  // not idle).
  capnp::Capability::Client newConnection(kj::Own<ConnectionHandle> connection);

  // Where the leader's client address comes from (NotLeader replies, status); must
  // outlive the service. Without it replies name no address.
  void setClientAddresses(const ClientAddresses* addresses) { addresses_ = addresses; }

  // Why a NotLeader reply has no leader to name, e.g. how many peers this node reaches
  // (an election in progress, or too few nodes up). Optional.
  void setNoLeaderDetail(std::function<std::string()> detail) {
    noLeaderDetail_ = std::move(detail);
  }

  // For admin (membership): the timer a leadership transfer is awaited on (without it a
  // transfer is answered once started), and where a member's raft address comes from
  // when the configuration holds none (a data dir from before membership changes).
  void setTimer(kj::Timer* timer) { timer_ = timer; }
  void setRaftAddrOf(std::function<std::string(NodeId)> raftAddrOf) {
    raftAddrOf_ = std::move(raftAddrOf);
  }

  // From now on requests are answered ShuttingDown without reaching the replica.
  void stop() { stopped_ = true; }

  uint64_t requests() const { return requests_; }

  // Counts requests by op and status, their latency and pending writes (optional; the
  // metrics must outlive the service).
  void setMetrics(ClientMetrics* metrics) { metrics_ = metrics; }

 private:
  class Server;
  friend class Server;

  Replica& replica_;
  std::function<void()> afterInput_;
  FatalFn fatal_;
  bool stopped_ = false;
  uint64_t requests_ = 0;
  SnapshotSource snapshots_;
  ClientMetrics* metrics_ = nullptr;
  const ClientAddresses* addresses_ = nullptr;
  std::function<std::string()> noLeaderDetail_;
  kj::Timer* timer_ = nullptr;
  std::function<std::string(NodeId)> raftAddrOf_;
  uint64_t clusterId_ = 0;
};

}  // namespace kvr::net
