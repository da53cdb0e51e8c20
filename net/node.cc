#include "net/node.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <random>

#include <kj/debug.h>

#include "core/limits.h"
#include "core/membership.h"
#include "core/raft.h"
#include "disk/disk_storage.h"

namespace kvr::net {

Node::Node(UvAsyncIo& io, NodeConfig config, FatalFn fatal, LogFn log)
    : io_(io), config_(std::move(config)), fatal_(std::move(fatal)), log_(std::move(log)) {
  std::string problem = checkConfig(config_);
  KJ_REQUIRE(problem.empty(), problem);
  if (config_.clusterId == 0) config_.clusterId = defaultClusterId(config_.members);
}

Node::~Node() noexcept(false) {
  // Listeners first (they hold connections into the services), then the rest in reverse
  // order of construction. A WAL write must not be in flight (shutdown() waits for it).
  metricsServer_ = nullptr;
  clientListener_ = nullptr;
  raftListener_ = nullptr;
  tickTimer_ = nullptr;
}

void Node::log(const std::string& text, LogLevel level) {
  Term term = replica_.get() != nullptr ? replica_->status().term : 0;
  if (!log_) {
    logEvent(level, config_.id,
             replica_.get() != nullptr ? std::optional<uint64_t>(term) : std::nullopt, text);
    return;
  }
  log_("kvnode " + std::to_string(config_.id) + " term " + std::to_string(term) + ": " + text);
}

void Node::fatal(const std::string& text, int exitCode) {
  if (fatal_) {
    fatal_("kvnode " + std::to_string(config_.id) + ": " + text);
    return;
  }
  std::optional<uint64_t> term;
  if (replica_.get() != nullptr) term = replica_->status().term;
  logEvent(LogLevel::Error, config_.id, term, text);
  ::_exit(exitCode);
}

namespace {

// A fresh data dir's incarnation: random, never 0 (0 means unknown).
uint64_t drawIncarnation() {
  std::random_device device;
  uint64_t v = 0;
  while (v == 0) v = (uint64_t(device()) << 32) ^ uint64_t(device());
  return v;
}

}  // namespace

template <typename Func>
void Node::guarded(const char* what, Func&& func) {
  KJ_IF_MAYBE(e, kj::runCatchingExceptions(kj::fwd<Func>(func))) {
    fatal(std::string("internal error in ") + what + ": " + e->getDescription().cStr());
  }
}

void Node::openStorage() {
  // First of all: a second process on a live node's data dir must change nothing in it
  // (recovery would "repair" a tail the live node is writing, delete its snapshots).
  dirLock_ = kj::heap<disk::DataDirLock>(config_.dataDir);
  auto recovered = disk::DiskStorage::open(meteredFs_, config_.dataDir,
                                           disk::NodeIdentity{config_.clusterId, config_.id,
                                                              drawIncarnation()});
  incarnation_ = recovered.identity.incarnation;
  peerIncarnations_ = kj::heap<disk::PeerIncarnations>(meteredFs_, config_.dataDir);
  for (const std::string& repair : recovered.repairs) {
    log("storage damage: " + repair, LogLevel::Warn);
  }
  storage_ = kj::heap<NodeStorage>(io_.uvLoop(), kj::mv(recovered.storage),
                                   [this](const std::string& why) { fatal(why); });
  storage_->setSnapshotPace(uint64_t(config_.snapshotWriteMBps) * 1'000'000);
  storage_->setDurableCallback([this](uint64_t seq) {
    guarded("onPersisted", [&]() { replica_->onPersisted(seq); });
    afterInput();
  });
  storage_->setPreparedCallback([this](Index index) {
    guarded("onSnapshotPrepared", [&]() { replica_->onSnapshotPrepared(index); });
    afterInput();
  });

  // The peers come from the configuration in force once the replica exists (followConf).
  transport_ = kj::heap<PeerTransport>(
      io_.network(), io_.timer(), config_.clusterId, config_.id,
      std::map<NodeId, std::string>{},
      [this](const std::string& line) { log(line, componentLineLevel(line)); }, config_.peer);
  transport_->setClientAddresses(&clientAddresses_);
  transport_->setIncarnations(incarnation_, peerIncarnations_.get(),
                              [this](const std::string& reason) {
                                // Exit 2, as a node that cannot start: no restart loop.
                                fatal("cannot rejoin the cluster: a peer refused this data "
                                      "dir: " +
                                          reason,
                                      2);
                              });
  if (peerDialTls_.get() != nullptr) {
    transport_->setTls(peerDialTls_.get(), config_.tlsServerName);
  }
  transport_->setRoundTripObserver([this](NodeId peer, uint64_t nanos) {
    if (peer <= limits::kMaxNodes)
      metrics_.peers.roundTripSeconds[peer].observe(double(nanos) / 1e9);
  });

  uint64_t seed = config_.rngSeed;
  if (seed == 0) seed = uv_hrtime() ^ (uint64_t(::getpid()) << 32) ^ config_.id;
  replica_ = kj::heap<Replica>(replicaConfig(config_), Rng(seed), *transport_, *storage_,
                               kj::mv(recovered.state));
  last_ = replica_->status();
  log("started: data dir " + config_.dataDir + ", cluster " +
      std::to_string(config_.clusterId) + ", configuration " +
      describeConf(replica_->raft().conf()) + " (" +
      (replica_->raft().snapshotIndex() > 0 || replica_->raft().confIndex() > 0
           ? "from the data dir"
           : (config_.joinConf ? "joined" : "initial, --cluster")) +
      "), log " + std::to_string(last_.snapshotIndex) + ".." + std::to_string(last_.lastIndex) +
      " (snapshot..last), commit " + std::to_string(last_.commit));
  if (last_.recovering) {
    log("recovering: storage damage may have cost entries this node acknowledged; it will "
        "not vote until its log matches the leader's up to index " +
            std::to_string(last_.recoverUntil),
        LogLevel::Warn);
  }

  raftService_ = kj::heap<RaftService>(
      config_.clusterId, config_.id, std::vector<NodeId>{},
      [this](Message&& msg) {
        guarded("receive", [&]() { replica_->receive(std::move(msg)); });
      },
      [this]() { afterInput(); },
      [this](const std::string& line) { log(line, componentLineLevel(line)); },
      [this]() { return uint64_t(uv_now(io_.uvLoop())); });
  raftService_->setClientAddresses(&clientAddresses_);
  raftService_->setIncarnations(incarnation_, peerIncarnations_.get());
  kvService_ = kj::heap<KvService>(
      *replica_, [this]() { afterInput(); }, [this](const std::string& why) { fatal(why); },
      config_.clusterId);
  kvService_->setMetrics(&metrics_.client);
  kvService_->setClientAddresses(&clientAddresses_);
  kvService_->setNoLeaderDetail([this]() { return peerReach(); });
  kvService_->setTimer(&io_.timer());
  kvService_->setRaftAddrOf(
      [this](NodeId id) { return raftAddrOf(replica_->raft().conf(), id); });
  followConf();
}

std::string Node::raftAddrOf(const ConfState& conf, NodeId id) const {
  const MemberAddr* addr = addrOf(conf, id);
  if (addr != nullptr && !addr->raftAddr.empty()) return addr->raftAddr;
  if (id == config_.id) return config_.raftAddr;
  auto it = config_.members.find(id);
  return it != config_.members.end() ? it->second : std::string();
}

void Node::followConf() {
  if (replica_.get() == nullptr || raftService_.get() == nullptr) return;
  const ConfState& conf = replica_->raft().conf();
  NodeId leader = replica_->raft().leader();
  bool confChanged = !followedConf_ || !(*followedConf_ == conf);
  if (!confChanged && leader == followedLeader_) return;
  followedLeader_ = leader;
  std::vector<NodeId> members = conf.voters;
  members.insert(members.end(), conf.learners.begin(), conf.learners.end());
  if (confChanged) {
    if (followedConf_) log("configuration in force: " + describeConf(conf));
    followedConf_ = conf;
    for (NodeId id : members) {
      everMembers_.insert(id);
      std::string address = raftAddrOf(conf, id);
      if (!address.empty()) knownRaftAddrs_[id] = address;
      const MemberAddr* addr = addrOf(conf, id);
      if (id != config_.id && addr != nullptr && !addr->clientAddr.empty() &&
          clientAddresses_.of(id).empty()) {
        clientAddresses_.learn(id, addr->clientAddr);
      }
    }
    raftService_->setMembers(std::vector<NodeId>(everMembers_.begin(), everMembers_.end()));
  }
  std::map<NodeId, std::string> peers;
  for (NodeId id : members) {
    if (id == config_.id) continue;
    auto known = knownRaftAddrs_.find(id);
    if (known == knownRaftAddrs_.end()) {
      if (confChanged) {
        log("member " + std::to_string(id) +
                " has no raft address in the configuration; not dialling it",
            LogLevel::Warn);
      }
      continue;
    }
    peers.emplace(id, known->second);
  }
  // A leader whose removal this node has appended still leads until that entry commits
  // (and then hands over): our acknowledgements must reach it, or it cannot commit it.
  if (leader != kNoNode && leader != config_.id && peers.count(leader) == 0) {
    auto known = knownRaftAddrs_.find(leader);
    if (known != knownRaftAddrs_.end()) peers.emplace(leader, known->second);
  }
  for (const std::string& line : transport_->setPeers(peers)) log(line);
}

std::string Node::peerReach() const {
  const std::vector<NodeId>& voters = replica_->raft().conf().voters;
  bool selfVotes = std::find(voters.begin(), voters.end(), config_.id) != voters.end();
  size_t peers = voters.size() - (selfVotes ? 1 : 0);
  size_t up = 0;
  for (NodeId id : voters) {
    if (id != config_.id && transport_->isUp(id)) ++up;
  }
  size_t quorum = voters.size() / 2 + 1;
  std::string text = "this node reaches " + std::to_string(up) + " of its " +
                     std::to_string(peers) + " peers";
  if (up + (selfVotes ? 1 : 0) < quorum) {
    return text + ", and electing a leader needs " + std::to_string(quorum) + " of the " +
           std::to_string(voters.size()) + " nodes";
  }
  return text + " (an election is under way)";
}

kj::Promise<void> Node::start() {
  KJ_REQUIRE(!started_, "start() called twice");
  started_ = true;
  // Bad certificate files stop the node before it touches its data dir or the network.
  setUpTls();
  // Refuse to start before touching the network if the data cannot be trusted.
  openStorage();
  auto& network = io_.network();
  kj::String raftAddr = kj::str(config_.raftAddr);
  kj::String clientAddr = kj::str(config_.clientAddr);
  auto bindRaft = network.parseAddress(raftAddr).then([this](kj::Own<kj::NetworkAddress> addr) {
    ListenerOptions options;
    options.maxUnidentified = kMaxUnidentifiedPeerConnections;
    options.handshakeTimeout = kPeerHandshakeTimeoutMs * kj::MILLISECONDS;
    options.refusalReason = "too many connections that are not cluster peers";
    applyTls(options, peerTls_.get());
    raftListener_ = kj::heap<RpcListener>(
        addr->listen(),
        RpcListener::StreamHandler([this](kj::Own<ConnectionHandle> c, kj::AsyncIoStream& s) {
          return raftService_->serve(kj::mv(c), s);
        }),
        kj::mv(options), io_.timer());
  });
  auto bindClient =
      network.parseAddress(clientAddr).then([this](kj::Own<kj::NetworkAddress> addr) {
        ListenerOptions options;
        options.maxUnidentified = config_.maxClientConnections;
        options.idleTimeout = config_.clientIdleTimeoutMs * kj::MILLISECONDS;
        options.refusalReason = "too many client connections (" +
                                std::to_string(config_.maxClientConnections) +
                                " open, each with a request in flight)";
        applyTls(options, clientTls_);
        clientListener_ = kj::heap<RpcListener>(
            addr->listen(),
            [this](kj::Own<ConnectionHandle> c) {
              return kvService_->newConnection(kj::mv(c));
            },
            kj::mv(options), io_.timer());
      });
  return bindRaft
      .catch_([raftAddr = kj::mv(raftAddr)](kj::Exception&& e) -> kj::Promise<void> {
        return KJ_EXCEPTION(FAILED, kj::str("cannot listen on raft address ", raftAddr, ": ",
                                            e.getDescription()));
      })
      .then([bind = kj::mv(bindClient), clientAddr = kj::mv(clientAddr)]() mutable {
        return bind.catch_([&clientAddr](kj::Exception&& e) -> kj::Promise<void> {
          return KJ_EXCEPTION(FAILED, kj::str("cannot listen on client address ", clientAddr,
                                              ": ", e.getDescription()));
        });
      })
      .then([this]() { return startMetrics(); })
      .then([this]() {
        log("listening: clients on " + config_.clientAddr + " (port " +
            std::to_string(clientPort()) + "), peers on " + config_.raftAddr + " (port " +
            std::to_string(raftPort()) + ")");
        advertiseClientAddr();
        transport_->start();  // our hellos name the address just advertised
        startTicking();
        afterInput();
      });
}

void Node::setUpTls() {
  if (!config_.tlsEnabled()) return;
  peerTls_ = kj::heap<TlsSetup>(config_.tls, /*requireCert=*/true, /*requireClientCert=*/true);
  // A context that demands the other side's certificate fails a client's handshake with
  // OpenSSL's bare "certificate verify failed"; one that does not lets kj check it after
  // the handshake and name the reason (expired, unknown CA, hostname mismatch).
  peerDialTls_ = kj::heap<TlsSetup>(config_.tls, /*requireCert=*/true,
                                    /*requireClientCert=*/false);
  clientTls_ = config_.clientCertAuth ? peerTls_.get() : peerDialTls_.get();
  log("TLS on the client and raft ports: certificate " + peerTls_->summary() +
      "; peers must present a certificate signed by " + config_.tls.caFile +
      (config_.clientCertAuth ? "; so must clients (--client-cert-auth)" : ""));
}

void Node::applyTls(ListenerOptions& options, TlsSetup* setup) {
  if (setup == nullptr) return;
  options.tls = &setup->context();
  options.log = [this](const std::string& line) { log(line, LogLevel::Warn); };
}

void Node::advertiseClientAddr() {
  clientAddresses_.setSelf(advertisedClientAddr(config_, clientPort()));
  if (!clientAddresses_.self().empty()) {
    log("advertising client address " + clientAddresses_.self() + " to peers");
  } else {
    log("advertising no client address: --client-addr " + config_.clientAddr +
            " is a wildcard, so followers cannot send clients here; set "
            "--advertise-client-addr HOST:PORT",
        LogLevel::Warn);
  }
}

uint Node::clientPort() const {
  return clientListener_.get() != nullptr ? clientListener_->getPort() : 0;
}
uint Node::metricsPort() const {
  return metricsServer_.get() != nullptr ? metricsServer_->getPort() : 0;
}

kj::Promise<void> Node::startMetrics() {
  if (config_.metricsAddr.empty()) return kj::READY_NOW;
  kj::String addr = kj::str(config_.metricsAddr);
  return io_.network()
      .parseAddress(addr)
      .then([this](kj::Own<kj::NetworkAddress> address) {
        metricsServer_ = kj::heap<MetricsServer>(io_.timer(), address->listen(),
                                                 [this]() { return renderNodeMetrics(*this); });
        log("metrics on http://" + config_.metricsAddr + "/metrics (port " +
            std::to_string(metricsPort()) + ")");
      })
      .catch_([addr = kj::mv(addr)](kj::Exception&& e) -> kj::Promise<void> {
        return KJ_EXCEPTION(FAILED, kj::str("cannot listen on metrics address ", addr, ": ",
                                            e.getDescription()));
      });
}

uint Node::raftPort() const {
  return raftListener_.get() != nullptr ? raftListener_->getPort() : 0;
}

void Node::startTicking() {
  uv_loop_t* loop = io_.uvLoop();
  schedule_ = TickSchedule(uv_now(loop), config_.tickMs, /*maxCatchUp=*/3);
  tickTimer_ = kj::heap<UvHandle<uv_timer_t>>();
  tickTimer_->checkInit(uv_timer_init(loop, tickTimer_->get()), "uv_timer_init");
  tickTimer_->get()->data = this;
  uv_timer_start(
      tickTimer_->get(),
      [](uv_timer_t* handle) {
        if (handle->data != nullptr) static_cast<Node*>(handle->data)->onTick();
      },
      config_.tickMs, config_.tickMs);
}

void Node::onTick() {
  if (stopping_) return;
  uint32_t due = KJ_ASSERT_NONNULL(schedule_).ticksDue(uv_now(io_.uvLoop()));
  for (uint32_t i = 0; i < due; ++i) guarded("tick", [&]() { replica_->tick(); });
  if (due > 0) afterInput();
}

void Node::forgetRemovedPeers() {
  const Raft& raft = replica_->raft();
  if (raft.confIndex() > raft.commitIndex() || incarnationsCheckedAt_ == raft.confIndex())
    return;
  incarnationsCheckedAt_ = raft.confIndex();
  for (NodeId id : peerIncarnations_->ids()) {
    if (isMemberOf(raft.conf(), id)) continue;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { peerIncarnations_->forget(id); })) {
      fatal(std::string("storage: cannot update the peers file: ") +
            e->getDescription().cStr());
      return;
    }
    log("peer " + std::to_string(id) +
        " is no longer a member: its data dir incarnation is "
        "forgotten (the id may join again)");
  }
}

void Node::afterInput() {
  if (replica_.get() == nullptr) return;
  followConf();
  forgetRemovedPeers();
  ReplicaStatus now = replica_->status();
  ReplicaStatus before = last_;
  last_ = now;
  metrics_.server.observe(before, now);
  auto node = [](NodeId id) {
    return id == kNoNode ? std::string("unknown") : "node " + std::to_string(id);
  };
  if (now.role != before.role) {
    switch (now.role) {
      case Role::Leader: log("became leader"); break;
      case Role::Follower: log("became follower; leader " + node(now.leader)); break;
      case Role::PreCandidate: log("election timeout: asking for pre-votes"); break;
      case Role::Candidate: log("became candidate"); break;
    }
  } else if (now.term != before.term) {
    log("term changed from " + std::to_string(before.term));
  }
  if (now.leader != before.leader && now.role != Role::Leader &&
      !(now.role != before.role && now.role == Role::Follower)) {
    log("leader is now " + node(now.leader));
  }
  if (before.recovering && !now.recovering) {
    log("recovered: the log matches the leader's up to index " +
        std::to_string(before.recoverUntil) + "; voting again");
  }
  if (now.snapshotIndex > before.snapshotIndex) {
    if (before.applied < now.snapshotIndex) {
      log("installed a snapshot from the leader at index " + std::to_string(now.snapshotIndex));
      // The store was rebuilt from it: the old store's pairs went back to malloc in pieces
      // among the new one's, which keeps the pages. Give the free ones back (glibc).
      malloc_trim(0);
    } else {
      log("took a snapshot at index " + std::to_string(now.snapshotIndex));
    }
  }
}

kj::Promise<void> Node::shutdown() {
  if (stopping_) return kj::READY_NOW;
  stopping_ = true;
  log("shutting down");
  tickTimer_ = nullptr;
  if (clientListener_.get() != nullptr) clientListener_->stopAccepting();
  if (metricsServer_.get() != nullptr) metricsServer_->stopAccepting();
  if (raftListener_.get() != nullptr) raftListener_->stopAccepting();
  if (raftService_.get() != nullptr) raftService_->stop();
  if (storage_.get() == nullptr) return kj::READY_NOW;
  return storage_->stop().then([this]() {
    guarded("shutdown", [&]() { replica_->shutdown(); });
    if (kvService_.get() != nullptr) kvService_->stop();
    transport_->stop();
    // One more turn so that the ShuttingDown replies are written to their sockets.
    return io_.timer().afterDelay(20 * kj::MILLISECONDS);
  });
}

}  // namespace kvr::net
