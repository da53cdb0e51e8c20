// One kvnode: the replica (core/) driven from a libuv loop, with its WAL (NodeStorage),
// its peers (PeerTransport, RaftService) and its clients (KvService).
//
// Everything runs on the loop thread except WAL writes (libuv's pool). Inputs reach the
// replica from a repeating uv timer (tick), peer frames (RaftService), KvService.call and WAL
// completions; after each, the node compares the replica's status with the previous one
// and logs what changed: role, term, leader, snapshots.
//
// A broken core invariant or a failed write is fatal (FatalFn: log, exit 1).
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>

#include <kj/async-io.h>

#include "core/replica.h"
#include "disk/posix_fs.h"
#include "net/client_addresses.h"
#include "net/clock.h"
#include "net/http_metrics.h"
#include "net/kv_service.h"
#include "net/log.h"
#include "net/metered_fs.h"
#include "net/node_config.h"
#include "net/node_log.h"
#include "net/node_metrics.h"
#include "net/node_storage.h"
#include "net/peer_transport.h"
#include "net/raft_service.h"
#include "net/rpc_listener.h"
#include "net/uv_handle.h"
#include "net/uv_io.h"

namespace kvr::net {

class Node {
 public:
  // `config` must pass checkConfig. Nothing happens until start(). Without `fatal` /
  // `log`, events go to stderr through logEvent (net/log.h) and fatal means exit(1);
  // with them, each gets one "kvnode N term T: ..." / "kvnode N: ..." line.
  Node(UvAsyncIo& io, NodeConfig config, FatalFn fatal = nullptr, LogFn log = nullptr);
  ~Node() noexcept(false);
  KJ_DISALLOW_COPY(Node);

  // Locks the data dir (refusing to start if another process holds it, before reading
  // or writing anything in it), opens it (verifying identity and contents), binds both listeners, starts
  // ticking and connecting to peers. Rejects with one operator-facing sentence (from
  // DiskStorage, or about an address) when the node cannot start.
  kj::Promise<void> start();

  // Stops accepting connections and ticking, lets the WAL write in flight finish, fails
  // pending client requests with ShuttingDown. Resolves when the process may exit.
  kj::Promise<void> shutdown();

  uint clientPort() const;
  uint raftPort() const;
  // The metrics endpoint's port (0 without config().metricsAddr).
  uint metricsPort() const;
  const NodeConfig& config() const { return config_; }
  uint64_t clusterId() const { return config_.clusterId; }
  // Valid after start().
  Replica& replica() { return *replica_; }
  PeerTransport& transport() { return *transport_; }
  NodeStorage& storage() { return *storage_; }
  RaftService& raftService() { return *raftService_; }
  const NodeMetrics& metrics() const { return metrics_; }
  // Every member's advertised client address this node knows (its own once started).
  const ClientAddresses& clientAddresses() const { return clientAddresses_; }

 private:
  void openStorage();
  void startTicking();
  // For a client told "no leader": how many peers this node reaches, and whether that
  // is enough to elect one.
  std::string peerReach() const;
  // Sets this node's own entry of clientAddresses_ once the client port is bound.
  void advertiseClientAddr();
  void onTick();
  // Makes the peer transport, the raft service and the client addresses follow the
  // configuration in force (the replica's: the newest Config entry in its log, else its
  // snapshot's, else the initial one): dial new members at their raft address, stop
  // dialling removed ones, accept hellos from members added later. Cheap when nothing
  // changed; runs after every input.
  void followConf();
  // The raft address of member `id`: the configuration's, else --cluster's ("" if none).
  std::string raftAddrOf(const ConfState& conf, NodeId id) const;
  // After every input: log notable status changes.
  void afterInput();
  // Forgets the recorded data dir incarnation of every peer that the committed
  // configuration no longer holds (disk/peer_incarnations.h): the id may join again.
  void forgetRemovedPeers();
  void log(const std::string& text, LogLevel level = LogLevel::Info);
  // Logs `text` as an error and stops the process with `exitCode` (or hands it to the
  // test's FatalFn). 2 is for a node that can never run here (a peer refused its data
  // dir), so that a supervisor does not restart it.
  void fatal(const std::string& text, int exitCode = 1);
  kj::Promise<void> startMetrics();
  // Reads and checks the TLS files (config_.tls); throws one sentence if they are bad.
  void setUpTls();
  // ListenerOptions for a listener on `context` (null: plaintext).
  void applyTls(ListenerOptions& options, TlsSetup* setup);
  // Runs a replica call; an exception from it is fatal.
  template <typename Func>
  void guarded(const char* what, Func&& func);

  UvAsyncIo& io_;
  NodeConfig config_;
  FatalFn fatal_;
  LogFn log_;
  disk::PosixFileSystem fs_;
  NodeMetrics metrics_;
  MeteredFileSystem meteredFs_{fs_, metrics_.disk};
  ClientAddresses clientAddresses_;
  ReplicaStatus last_;
  std::optional<ConfState> followedConf_;         // what followConf last acted on
  NodeId followedLeader_ = kNoNode;               // the leader when followConf last acted
  std::set<NodeId> everMembers_;                  // members of any configuration since start
  std::map<NodeId, std::string> knownRaftAddrs_;  // of every member since start
  bool started_ = false;
  bool stopping_ = false;

  // Declaration order = construction order; destruction runs bottom-up, so listeners
  // and services go before the replica, the replica before its storage and transport,
  // the data dir lock is released after them, and the TLS contexts (used by listeners
  // and transport) go last.
  kj::Own<TlsSetup> peerTls_;      // raft port: a peer must present a certificate
  kj::Own<TlsSetup> peerDialTls_;  // to peers: presents ours, checks theirs
  // Client port: peerTls_ with config_.clientCertAuth, else peerDialTls_ (a client
  // certificate is optional).
  TlsSetup* clientTls_ = nullptr;
  kj::Own<disk::DataDirLock> dirLock_;
  kj::Own<disk::PeerIncarnations> peerIncarnations_;  // the data dir's `peers` file
  uint64_t incarnation_ = 0;                          // our data dir's (disk/identity.h)
  std::optional<Index> incarnationsCheckedAt_;  // the configuration forgetRemovedPeers saw
  kj::Own<NodeStorage> storage_;
  kj::Own<PeerTransport> transport_;
  kj::Own<Replica> replica_;
  kj::Own<RaftService> raftService_;
  kj::Own<KvService> kvService_;
  kj::Own<RpcListener> raftListener_;
  kj::Own<RpcListener> clientListener_;
  kj::Own<MetricsServer> metricsServer_;
  kj::Own<UvHandle<uv_timer_t>> tickTimer_;
  kj::Maybe<TickSchedule> schedule_;
};

}  // namespace kvr::net
