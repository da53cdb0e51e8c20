// What a node is told at start: who it is, where it listens, its peers and timing.
// Times are in milliseconds here and become ticks of `tickMs` for the core.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "core/replica.h"
#include "net/peer_transport.h"
#include "net/tls.h"

namespace kvr::net {

// Raft port: a connection that has not said an accepted hello (a stranger) within this
// long is closed, and at most this many strangers are open at once (a newcomer evicts the
// longest-idle one). Identified peers are exempt from both: one connection per peer, a
// newer one replaces the older.
constexpr uint32_t kPeerHandshakeTimeoutMs = 2000;
constexpr uint32_t kMaxUnidentifiedPeerConnections = 16;
constexpr uint32_t kMaxSnapshotWriteMBps = 100'000;
// Each local snapshot waits up to this much longer than --snapshot-entries and the
// eighth-of-the-store rule say, a random share per snapshot and per node, so the members
// of a cluster do not all serialize their stores at the same moment (ReplicaConfig).
constexpr uint32_t kSnapshotSpreadPercent = 50;

struct NodeConfig {
  NodeId id = 1;
  uint64_t clusterId = 0;  // 0: derived from `members` (defaultClusterId)
  std::string dataDir = "data";
  std::string clientAddr;  // host:port for KvService
  // host:port clients should use to reach this node's KvService, told to the peers in
  // the hello so that they can send clients here (empty: clientAddr with its bound port,
  // unless its host is a wildcard such as 0.0.0.0, then nothing is advertised).
  std::string advertiseClientAddr;
  std::string raftAddr;     // host:port this node listens on for the peer protocol
  std::string metricsAddr;  // host:port for HTTP GET /metrics (empty: no endpoint)
  // Raft address of every member of the initial configuration, self included (--cluster).
  // Only the start: once the log or a snapshot holds a configuration, that one is in
  // force, and the node dials, accepts and advertises what it says (Node::followConf).
  std::map<NodeId, std::string> members;
  // A node that joined a running cluster (kvnode --join) starts from the configuration
  // the cluster answered, which holds it as a learner, instead of `members`.
  std::optional<ConfState> joinConf;
  uint32_t tickMs = 10;
  uint32_t electionTimeoutMs = 150;  // randomized in [x, 2x) by the core
  uint32_t heartbeatMs = 30;
  uint32_t requestTimeoutMs = 2000;  // a client request pending this long times out
  // etcd's default too. At 10,000 a small store was rewritten whole every 3 MB of log
  // (a 20 MB store: 7 bytes to disk per byte logged), and the rewrites put the p99 of
  // kvbench put 256/16 at 25 ms instead of 12 (issue 10). The log since the last
  // snapshot stays in memory, but only the entries some member may still need keep
  // their payloads (Raft::releasePayloads): about 32 bytes for each of the others.
  uint64_t snapshotEntries = 100'000;
  // A local snapshot's file is written at most this fast (0: as fast as the disk goes).
  // Written at full speed, the whole store (270 MB at 1M keys) goes to the disk in a
  // burst that every WAL fdatasync meanwhile waits behind (issue 10). A snapshot is
  // taken once the log since the last one adds up to an eighth of the store, so this must
  // stay well above 8 times the rate at which clients write bytes, or snapshots run
  // back to back and the log grows past an eighth.
  uint32_t snapshotWriteMBps = 50;
  // Client connections open at once; when full, a newcomer evicts the longest-idle one
  // with no request in flight (refused only if every one has a request in flight).
  uint32_t maxClientConnections = 1024;
  // A client connection with no request for this long is closed (0: never).
  uint32_t clientIdleTimeoutMs = 300'000;
  uint64_t rngSeed = 0;  // 0: taken from the clock and pid
  PeerTransportOptions peer;
  // TLS on both listeners and on the connections to peers: all three files, or none
  // (plaintext). Peers always present their certificate and must present one signed by
  // the CA (mutual TLS); clients must only with clientCertAuth.
  TlsFiles tls;
  bool clientCertAuth = false;
  // The name the peers' certificates must carry ("": the host of their --cluster address).
  std::string tlsServerName;

  bool tlsEnabled() const {
    return !tls.certFile.empty() || !tls.keyFile.empty() || !tls.caFile.empty();
  }
};

// Parses "1=host:port,2=host:port,...". False with a reason on bad input.
bool parseMembers(const std::string& text, std::map<NodeId, std::string>* out,
                  std::string* error);

// Empty if `address` is HOST:PORT (a non-empty host, a port 1..65535, at most
// limits::kMaxAddrBytes in all), else one sentence naming `what` and the problem.
std::string checkHostPort(const std::string& address, const std::string& what);

// A stable id for a cluster: a hash of its sorted member list, never 0.
uint64_t defaultClusterId(const std::map<NodeId, std::string>& members);

// Empty if the config is usable, else one sentence saying what is wrong.
std::string checkConfig(const NodeConfig& config);

// The client address this node advertises to its peers (NodeConfig::advertiseClientAddr),
// given the port its client listener is bound to; "" when there is none to advertise.
std::string advertisedClientAddr(const NodeConfig& config, unsigned boundPort);

// The core's configuration for this node (checkConfig must have passed).
ReplicaConfig replicaConfig(const NodeConfig& config);

}  // namespace kvr::net
