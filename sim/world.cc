#include "sim/world.h"

#include <cstdio>
#include <deque>
#include <fstream>
#include <map>

#include <kj/debug.h>

#include "core/hash.h"
#include "schemas/codec.h"
#include "sim/disk_store.h"
#include "sim/linearizability.h"
#include "sim/mem_store.h"

namespace kvr::sim {

namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kTickNs = 10 * kMs;
constexpr uint64_t kClusterId = 0x6b767261667431ull;
constexpr uint64_t kClientTimeoutNs = 400 * kMs;
constexpr uint32_t kMaxAttemptsInChaos = 40;
constexpr uint64_t kLivenessBudgetNs = 60'000 * kMs;  // a healed cluster must finish within
constexpr uint64_t kFullCheckEvery = 512;
constexpr uint64_t kMaxChaosNs = 120'000 * kMs;  // chaos ends by then even if ops remain
// After healing, a leader must exist within this many of the longest election timeouts
// (a randomized timeout is at most 2 x electionTicks ticks). Generous: with a minority
// dead and a stale log among the rest, an election may need a few rounds.
constexpr uint64_t kLeaderAfterHealTimeouts = 30;
constexpr uint64_t kMaxEventsPerRun = 4'000'000;   // a run past this is a hang, not a verdict
// A healthy cluster runs a few thousand events per simulated 10 ms.
constexpr uint64_t kStormWindowNs = 10 * kMs;
constexpr size_t kRecentPerNode = 32;  // messages kept per node for replay after a restart
constexpr uint64_t kMaxEventsPerStormWindow = 200'000;

}  // namespace

class World {
 public:
  World(const Scenario& sc, const RunOptions& opts);
  RunResult run();
  // What is known of a run that stopped on an exception.
  RunResult partialResult() {
    result_.simNs = q_.now();
    result_.events = q_.executed();
    result_.failedAtEvent = q_.executed();
    result_.traceHash = traceHash_;
    return result_;
  }

 private:
  struct Node;
  class NodeTransport final : public Transport {
   public:
    NodeTransport(World& w, NodeId id) : world_(w), id_(id) {}
    void send(Message&& msg) override { world_.sendMessage(id_, std::move(msg)); }

   private:
    World& world_;
    NodeId id_;
  };
  class StorageProxy final : public Storage {
   public:
    StorageProxy(World& w, NodeId id) : world_(w), id_(id) {}
    void persist(PersistBatch&& batch) override { world_.persist(id_, std::move(batch)); }

   private:
    World& world_;
    NodeId id_;
  };
  struct Node {
    NodeId id = 0;
    std::unique_ptr<NodeStore> store;
    std::unique_ptr<NodeTransport> transport;
    std::unique_ptr<StorageProxy> storage;
    std::unique_ptr<Replica> replica;
    bool up = false;
    bool dead = false;         // refused to start: stays down for good
    bool corruptible = false;  // may suffer unrecoverable storage faults
    uint64_t pausedUntil = 0;
    uint64_t incarnation = 0;
    double drift = 1.0;        // tick period multiplier
    bool flushScheduled = false;
    bool flushing = false;
    bool failNextFsync = false;
    uint64_t restartAt = 0;
    NodeId persistedVote = kNoNode;  // last vote handed to storage
    Term persistedTerm = 0;
    bool voteInFlush = false;        // the queued writes carry a new vote
    Index appliedSeen = 0;           // applied index after the last observed apply
    bool wasLeader = false;          // for the flaky-leader nemesis
    uint64_t lostOutbox = 0;         // messages sent by this incarnation are lost
    Index leaderCommitSeen = 0;
  };
  struct Client {
    uint32_t id = 0;
    uint64_t session = 0;
    uint64_t nextRequest = 1;
    NodeId target = 1;
    bool busy = false;
    bool opening = false;       // the current request opens a session
    KvCommand cmd;
    History::OpId hop = 0;
    uint64_t attemptSeq = 0;    // replies to older attempts are ignored
    uint32_t attempts = 0;
    bool finalRead = false;
  };

  // nodes
  void startNode(Node& n);
  void crashNode(Node& n, const char* why);
  void scheduleTick(Node& n);
  void persist(NodeId id, PersistBatch&& batch);
  void scheduleFlush(Node& n);
  void flush(Node& n, uint64_t incarnation);
  Node& node(NodeId id) { return nodes_[id - 1]; }
  bool reachable(NodeId from, NodeId to) const;

  // network
  void sendMessage(NodeId from, Message&& msg);
  uint64_t sampleDelay();
  // Availability under pre-vote and check-quorum: a leader with a quorum that no fault
  // touched for a while must not be deposed (the leader lease's whole point).
  void noteNodeTrouble(NodeId id, uint64_t until) {
    nodeTrouble_[id] = std::max(nodeTrouble_[id], until);
  }
  void noteLinkTrouble(NodeId a, NodeId b) { linkTrouble_[a][b] = q_.now(); }
  void observeRoles();
  void checkDisruption(NodeId who, Term newTerm, bool stepDown);
  bool quietSince(NodeId id, uint64_t since) const;
  void checkPersistenceRule(NodeId from, const Message& m);
  void replayToRestarted(NodeId id);
  void deliver(NodeId from, uint64_t senderIncarnation, NodeId to, std::string bytes);

  // clients
  void clientNext(Client& c);
  void clientSend(Client& c);
  void clientReply(uint32_t client, uint64_t attemptSeq, KvReply reply);
  void clientRetry(Client& c, NodeId hint, uint64_t delay);
  void clientFinish(Client& c);
  void finishOp(Client& c, const KvReply& reply);

  // faults
  void scheduleFault();
  void injectFault();
  void healAll();
  void isolateLeader();
  void cutOffLeader(NodeId leader);
  void watchLeaders();
  void count(Fault f) { ++result_.faults[static_cast<size_t>(f)]; }

  // checking
  void afterEvent();
  void trace(const std::string& line);
  void mix(uint64_t v) { traceHash_ = hashCombine(traceHash_, v); }
  std::vector<const Replica*> replicas() const;
  void fail(std::string property, std::string detail);
  bool allClientsIdle() const;
  bool leaderExists() const;

  Scenario sc_;
  RunOptions opts_;
  Rng rng_;
  Rng faultRng_;
  Rng netRng_;
  Rng clientRng_;
  Rng fsRng_;
  EventQueue q_;
  std::vector<Node> nodes_;
  std::vector<Client> clients_;
  std::vector<std::vector<bool>> blocked_;  // blocked_[from][to]
  History history_;
  Checker checker_;
  RunResult result_;
  uint64_t traceHash_ = 0;
  std::unique_ptr<std::ofstream> traceFile_;
  uint32_t opsIssued_ = 0;
  bool chaos_ = true;
  bool finalPhase_ = false;
  uint64_t livenessDeadline_ = 0;
  uint64_t leaderDeadline_ = 0;
  bool leaderSeen_ = false;
  uint64_t flakyUntil_ = 0;
  uint64_t quietUntil_ = 0;
  std::map<std::pair<NodeId, Term>, NodeId> votes_;  // (voter, term) -> candidate granted
  // Per node: the last messages addressed to it, for replay after it restarts.
  std::vector<std::deque<std::pair<NodeId, std::string>>> recentTo_;
  uint64_t stormWindowStart_ = 0;
  uint64_t stormWindowEvents_ = 0;  // clients issue nothing new until then (a workload lull)  // until then, every new leader is cut off (isolate_leader)
  bool delayTrouble_ = false;               // the last sampled delay was a fault
  std::vector<uint64_t> nodeTrouble_;       // per node: last time (or until) a fault touched it
  std::vector<std::vector<uint64_t>> linkTrouble_;  // [from][to]: last lost/late message
  uint64_t lastTransferNs_ = 0;
  std::vector<Role> prevRole_;
  std::vector<Term> prevTerm_;
  std::vector<uint64_t> leaderSince_;
  bool stop_ = false;
  std::vector<uint64_t> lastEffects_;  // per node: the KV effect counter at its last apply
  std::vector<const Replica*> replicaView_;
};

World::World(const Scenario& sc, const RunOptions& opts)
    : sc_(sc), opts_(opts), rng_(sc.seed), faultRng_(rng_.fork()), netRng_(rng_.fork()),
      clientRng_(rng_.fork()), fsRng_(rng_.fork()), checker_(sc.nodes) {
  if (!opts_.tracePath.empty()) {
    traceFile_ = std::make_unique<std::ofstream>(opts_.tracePath, std::ios::trunc);
    KJ_REQUIRE(traceFile_->good(), "cannot open trace file", opts_.tracePath.c_str());
  }
  nodes_.resize(sc_.nodes);
  blocked_.assign(sc_.nodes + 1, std::vector<bool>(sc_.nodes + 1, false));
  nodeTrouble_.assign(sc_.nodes + 1, 0);
  linkTrouble_.assign(sc_.nodes + 1, std::vector<uint64_t>(sc_.nodes + 1, 0));
  prevRole_.assign(sc_.nodes + 1, Role::Follower);
  recentTo_.resize(sc_.nodes + 1);
  prevTerm_.assign(sc_.nodes + 1, 0);
  leaderSince_.assign(sc_.nodes + 1, 0);
  // Unrecoverable storage faults stay within a minority, so the cluster can live.
  uint32_t corruptible = (sc_.nodes - 1) / 2;
  for (uint32_t i = 0; i < sc_.nodes; ++i) {
    Node& n = nodes_[i];
    n.id = i + 1;
    n.corruptible = i < corruptible;
    if (opts_.memStore) {
      n.store = std::make_unique<MemStore>();
    } else {
      disk::WalOptions wo;
      wo.segmentBytes = 16 * 1024;  // small segments: roll-over and deletion get exercised
      n.store = std::make_unique<DiskStore>(fsRng_, kClusterId, n.id, wo);
    }
    n.transport = std::make_unique<NodeTransport>(*this, n.id);
    n.storage = std::make_unique<StorageProxy>(*this, n.id);
  }
  clients_.resize(sc_.clients);
  for (uint32_t i = 0; i < sc_.clients; ++i) {
    clients_[i].id = i + 1;
    clients_[i].target = static_cast<NodeId>(clientRng_.between(1, sc_.nodes));
  }
}

void World::trace(const std::string& line) {
  mix(hash64(line));
  if (traceFile_) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%12.6f ", static_cast<double>(q_.now()) / 1e9);
    *traceFile_ << buf << line << '\n';
  }
}

void World::fail(std::string property, std::string detail) {
  if (!result_.ok) return;
  result_.ok = false;
  result_.property = std::move(property);
  result_.detail = std::move(detail);
  result_.failedAtEvent = q_.executed();
  stop_ = true;
}

std::vector<const Replica*> World::replicas() const {
  std::vector<const Replica*> out;
  for (auto& n : nodes_) out.push_back(n.up ? n.replica.get() : nullptr);
  return out;
}

// ------------------------------------------------------------------ nodes

void World::startNode(Node& n) {
  KJ_ASSERT(!n.up && !n.dead);
  RecoveredState rec;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { rec = n.store->recover(); })) {
    // The node refuses data it cannot vouch for and stays down.
    n.dead = true;
    trace(kj::str("n", n.id, " refuses to start: ", e->getDescription()).cStr());
    if (!n.corruptible) {
      fail("storage", kj::str("node ", n.id, " (no corruption injected) cannot recover: ",
                              e->getDescription()).cStr());
    } else if (!e->getDescription().startsWith("disk: refusing to start: ") ||
               !n.store->corrupted()) {
      // Only its own disk's damage may keep a node down: any other exception in recovery
      // is a bug, not a finding to discard.
      fail("storage", kj::str("node ", n.id, " failed to recover, and not by refusing a ",
                              "damaged disk: ", e->getDescription()).cStr());
    }
    return;
  }
  ReplicaConfig cfg;
  cfg.raft.id = n.id;
  cfg.raft.electionTicks = sc_.electionTicks;
  cfg.raft.heartbeatTicks = sc_.heartbeatTicks;
  cfg.raft.preVote = sc_.preVote;
  cfg.raft.checkQuorum = sc_.checkQuorum;
  cfg.raft.maxInflight = sc_.maxInflight;
  cfg.raft.maxAppendBytes = sc_.maxAppendBytes;
  cfg.raft.snapshotChunkBytes = sc_.snapshotChunkBytes;
  cfg.raft.compactionKeepEntries = sc_.compactionKeepEntries;
  cfg.kv.maxSessions = sc_.sessionCap;
  cfg.snapshotEveryEntries = sc_.snapshotEvery;
  cfg.requestTimeoutTicks = 60;
  for (uint32_t i = 1; i <= sc_.nodes; ++i) cfg.initialConf.voters.push_back(i);
  Index snapIndex = rec.snapshot.meta.index;
  noteNodeTrouble(n.id, q_.now());
  n.up = true;
  n.flushScheduled = false;
  n.flushing = false;
  ++n.incarnation;
  checker_.onRestart(n.id, snapIndex);
  n.replica = std::make_unique<Replica>(cfg, rng_.fork(), *n.transport, *n.storage, std::move(rec));
  NodeId id = n.id;
  n.replica->setApplyObserver([this, id](NodeId, const Entry& e, const KvReply* reply) {
    const Replica& r = *node(id).replica;
    uint64_t effects = r.kv().effects() - lastEffects_[id - 1];
    lastEffects_[id - 1] = r.kv().effects();
    checker_.onApply(id, e, reply, effects);
    checker_.onState(id, e.index, r.kv().digest(), "applying");
    node(id).appliedSeen = e.index;
  });
  lastEffects_[id - 1] = n.replica->kv().effects();
  // Restarted from its own snapshot: the state there must be what every replica had.
  n.appliedSeen = n.replica->kv().appliedIndex();
  n.persistedVote = n.replica->raft().vote();
  n.persistedTerm = n.replica->raft().term();
  n.voteInFlush = false;
  n.wasLeader = false;
  n.leaderCommitSeen = 0;
  checker_.onState(id, n.appliedSeen, n.replica->kv().digest(), "restarting from its snapshot");
  if (chaos_ && sc_.replayP > 0 && faultRng_.chance(0.5)) replayToRestarted(n.id);
  trace(kj::str("n", n.id, " start term=", n.replica->raft().term(), " vote=",
                n.replica->raft().vote(), " snapshot=", snapIndex,
                " last=", n.replica->raft().lastIndex()).cStr());
  scheduleTick(n);
}

void World::crashNode(Node& n, const char* why) {
  if (!n.up) return;
  trace(kj::str("n", n.id, " crash (", why, ")").cStr());
  noteNodeTrouble(n.id, q_.now());
  n.up = false;
  n.replica = nullptr;
  n.pausedUntil = 0;
  n.store->crash(faultRng_, sc_.faults.has(Fault::TornWrite));
  n.flushScheduled = false;
  n.flushing = false;
  n.failNextFsync = false;
}

void World::scheduleTick(Node& n) {
  uint64_t period = static_cast<uint64_t>(static_cast<double>(kTickNs) * n.drift);
  uint64_t inc = n.incarnation;
  NodeId id = n.id;
  q_.after(period, [this, id, inc]() {
    Node& n = node(id);
    if (!n.up || n.incarnation != inc) return;
    if (n.pausedUntil > q_.now()) {
      q_.at(n.pausedUntil, [this, id, inc]() {
        Node& n = node(id);
        if (n.up && n.incarnation == inc) scheduleTick(n);
      });
      return;
    }
    mix(0x71c0 + id);
    n.replica->tick();
    scheduleTick(n);
  });
}

void World::persist(NodeId id, PersistBatch&& batch) {
  Node& n = node(id);
  if (batch.hardState && batch.hardState->vote != kNoNode &&
      (batch.hardState->vote != n.persistedVote || batch.hardState->term != n.persistedTerm)) {
    n.voteInFlush = true;
  }
  if (batch.hardState) {
    n.persistedVote = batch.hardState->vote;
    n.persistedTerm = batch.hardState->term;
  }
  n.store->persist(std::move(batch));
  scheduleFlush(n);
}

void World::scheduleFlush(Node& n) {
  if (n.flushScheduled || n.flushing) return;
  n.flushScheduled = true;
  uint64_t inc = n.incarnation;
  NodeId id = n.id;
  // A short group-commit window: everything persisted meanwhile shares one fsync.
  q_.after(20'000, [this, id, inc]() { flush(node(id), inc); });
}

void World::flush(Node& n, uint64_t inc) {
  if (!n.up || n.incarnation != inc) return;
  n.flushScheduled = false;
  if (!n.store->hasQueued()) return;
  std::vector<uint64_t> seqs = n.store->beginFlush();
  n.flushing = true;
  // fsync takes 50 us to 2 ms: long enough, next to sub-millisecond messages, that a
  // crash often lands while acknowledgements wait for it.
  uint64_t latency = 50'000 + netRng_.below(netRng_.chance(0.5) ? 150'000 : 2'000'000);
  if (sc_.slowFsyncP > 0 && faultRng_.chance(sc_.slowFsyncP)) {
    latency += faultRng_.between(10 * kMs, 200 * kMs);
    count(Fault::SlowFsync);
    noteNodeTrouble(n.id, q_.now() + latency);  // acks and heartbeat replies wait for it
  }
  NodeId id = n.id;
  // A flush that makes a vote durable is where a vote sent too early would be lost:
  // crash there far more often than at an ordinary flush.
  double crashP = n.voteInFlush ? 0.25 : 0.03;
  n.voteInFlush = false;
  if (chaos_ && sc_.faults.has(Fault::Crash) && faultRng_.chance(crashP)) {
    // Power loss between the write and its fsync: the moment the persistence rule is
    // about (a vote or an ack must not have left before this completes).
    q_.after(faultRng_.below(latency), [this, id, inc]() {
      Node& n = node(id);
      if (!n.up || n.incarnation != inc || !chaos_) return;
      count(Fault::Crash);
      crashNode(n, "during fsync");
      // Back quickly, while the messages of the moment are still in flight.
      q_.after(faultRng_.between(1 * kMs, 50 * kMs), [this, id]() {
        Node& n = node(id);
        if (!n.up && !n.dead) startNode(n);
      });
    });
  }
  q_.after(latency, [this, id, inc, seqs = std::move(seqs)]() {
    Node& n = node(id);
    if (!n.up || n.incarnation != inc) return;
    if (n.failNextFsync) {
      // An fsync error: the node fail-stops; it never retries and carries on.
      count(Fault::FsyncError);
      crashNode(n, "fsync error");
      n.restartAt = q_.now() + 100 * kMs;
      q_.at(n.restartAt, [this, id]() {
        Node& n = node(id);
        if (!n.up && !n.dead) startNode(n);
      });
      return;
    }
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { n.store->finishFlush(); })) {
      fail("storage", kj::str("node ", id, " fsync failed without an injected fault: ",
                              e->getDescription()).cStr());
      return;
    }
    n.flushing = false;
    mix(0xf105 + id);
    if (traceFile_ && !seqs.empty()) {
      trace(kj::str("n", id, " durable seq ", seqs.front(), "..", seqs.back()).cStr());
    }
    for (uint64_t s : seqs) {
      if (!n.up || n.incarnation != inc) break;
      n.replica->onPersisted(s);
    }
    if (n.up && n.incarnation == inc && n.store->hasQueued()) scheduleFlush(n);
  });
}

// ------------------------------------------------------------------ network

bool World::reachable(NodeId from, NodeId to) const { return !blocked_[from][to]; }

uint64_t World::sampleDelay() {
  delayTrouble_ = false;
  uint64_t base = sc_.meanDelayNs / 2 + netRng_.below(sc_.meanDelayNs);
  if (sc_.faults.has(Fault::Delay) && netRng_.chance(0.02)) {
    // Heavy tail: a few messages take 10-100x longer.
    base *= netRng_.between(10, 100);
    count(Fault::Delay);
    delayTrouble_ = true;
  }
  if (sc_.reorderP > 0 && netRng_.chance(sc_.reorderP)) {
    base += netRng_.below(20 * kMs);
    count(Fault::Reorder);
    delayTrouble_ = true;
  }
  return base;
}

void World::sendMessage(NodeId from, Message&& msg) {
  ++result_.messages;
  NodeId to = msg.to;
  KJ_REQUIRE(to >= 1 && to <= sc_.nodes, "message to an unknown node", to);
  // Every message crosses the wire codec, so encoding is tested with everything else.
  std::string bytes = codec::encodeMessageBytes(kClusterId, msg);
  uint64_t inc = node(from).incarnation;
  checkPersistenceRule(from, msg);
  mix(hashBytes(bytes));
  if (traceFile_) {
    trace(kj::str("n", from, " -> n", to, " ", msgTypeName(msg.type), " t", msg.term,
                  " i", msg.index, " c", msg.commit, msg.reject ? " reject" : "",
                  " n=", msg.entries.size()).cStr());
  }
  if (!reachable(from, to)) {
    noteLinkTrouble(from, to);
    return;
  }
  if (sc_.dropP > 0 && netRng_.chance(sc_.dropP)) {
    count(Fault::Drop);
    noteLinkTrouble(from, to);
    return;
  }
  int copies = 1;
  if (sc_.duplicateP > 0 && netRng_.chance(sc_.duplicateP)) {
    copies = 2;
    count(Fault::Duplicate);
  }
  if (sc_.replayP > 0) {
    auto& recent = recentTo_[to];
    recent.emplace_back(from, bytes);
    if (recent.size() > kRecentPerNode) recent.pop_front();
  }
  if (chaos_ && sc_.replayP > 0 && netRng_.chance(sc_.replayP)) {
    // A stale copy, delivered long after everything around it (old votes, Appends and
    // read answers must be recognised as old).
    count(Fault::Replay);
    q_.after(netRng_.between(300 * kMs, 5000 * kMs),
             [this, from, inc, to, b = bytes]() mutable { deliver(from, inc, to, std::move(b)); });
  }
  for (int i = 0; i < copies; ++i) {
    std::string copy = i + 1 < copies ? bytes : std::move(bytes);
    uint64_t delay = sampleDelay();
    if (delayTrouble_) noteLinkTrouble(from, to);
    q_.after(delay, [this, from, inc, to, b = std::move(copy)]() mutable {
      deliver(from, inc, to, std::move(b));
    });
  }
}

void World::replayToRestarted(NodeId id) {
  // Answers meant for the previous incarnation arriving at the new one (a peer's queue
  // flushed into the new connection): read answers, acks and votes it never asked for.
  auto& recent = recentTo_[id];
  uint32_t n = static_cast<uint32_t>(faultRng_.below(recent.size() + 1));
  for (uint32_t k = 0; k < n; ++k) {
    auto& [from, bytes] = recent[faultRng_.below(recent.size())];
    count(Fault::Replay);
    uint64_t inc = node(from).incarnation;
    q_.after(faultRng_.between(1 * kMs, 30 * kMs),
             [this, from = from, inc, id, b = bytes]() mutable { deliver(from, inc, id, std::move(b)); });
  }
}

void World::checkPersistenceRule(NodeId from, const Message& m) {
  // Checked where the message leaves, against what the node's disk holds right now: a
  // message that claims durable state may leave only once that state is durable.
  const RecoveredState& d = node(from).store->durableState();
  const char* broken = nullptr;
  switch (m.type) {
    case MsgType::Vote:
    case MsgType::VoteResp:
    case MsgType::HeartbeatResp:
    case MsgType::AppendResp:
    case MsgType::SnapshotResp:
      if (d.hardState.term < m.term) broken = "its term is not durable";
      break;
    default:
      return;
  }
  NodeId votedFor = m.type == MsgType::Vote ? from : m.type == MsgType::VoteResp ? m.to : kNoNode;
  if (!broken && votedFor != kNoNode && !m.reject && d.hardState.term == m.term &&
      d.hardState.vote != votedFor) {
    broken = "its vote is not durable";
  }
  if (!broken && m.type == MsgType::AppendResp && !m.reject) {
    Index durableLast = d.entries.empty() ? d.snapshot.meta.index : d.entries.back().index;
    if (m.index > durableLast) broken = "the entries it acknowledges are not durable";
  }
  if (!broken && m.type == MsgType::VoteResp && !m.reject) {
    // §5.2: at most one vote per term, across restarts too (a granted vote is durable).
    auto [it, fresh] = votes_.emplace(std::make_pair(from, m.term), m.to);
    if (!fresh && it->second != m.to) {
      fail("double_vote", kj::str("n", from, " voted for n", it->second, " and for n", m.to,
                                  " in term ", m.term).cStr());
      return;
    }
  }
  if (broken) {
    fail("persistence", kj::str("n", from, " sent ", msgTypeName(m.type), " t", m.term, " i",
                                m.index, " to n", m.to, " but ", broken).cStr());
  }
}

void World::deliver(NodeId from, uint64_t inc, NodeId to, std::string bytes) {
  Node& n = node(to);
  if (!n.up || node(from).lostOutbox == inc) return;
  if (!reachable(from, to)) {
    noteLinkTrouble(from, to);  // a partition also loses what was in flight
    return;
  }
  if (n.pausedUntil > q_.now()) {
    // A paused process reads its socket when it resumes.
    q_.at(n.pausedUntil, [this, from, inc, to, b = std::move(bytes)]() mutable {
      deliver(from, inc, to, std::move(b));
    });
    return;
  }
  Message msg;
  std::string error;
  if (!codec::decodeMessageBytes(bytes, kClusterId, &msg, &error)) {
    fail("codec", kj::str("a message our own encoder wrote does not decode: ", error.c_str()).cStr());
    return;
  }
  mix(hashBytes(bytes) + to);
  n.replica->receive(std::move(msg));
}

// ------------------------------------------------------------------ clients

void World::clientNext(Client& c) {
  if (stop_ || c.busy) return;
  if (chaos_ && quietUntil_ > q_.now()) {
    // A lull in the workload: logs stop growing, so a node that missed heartbeats has
    // an up-to-date log and only the leader lease stands between it and an election.
    q_.at(quietUntil_ + clientRng_.below(5 * kMs),
          [this, cid = c.id]() { clientNext(clients_[cid - 1]); });
    return;
  }
  if (c.session == 0) {
    c.busy = true;
    c.opening = true;
    c.cmd = KvCommand{};
    c.cmd.op = OpType::OpenSession;
    c.attempts = 0;
    clientSend(c);
    return;
  }
  if (opsIssued_ >= sc_.ops) return;
  ++opsIssued_;
  c.busy = true;
  c.opening = false;
  c.attempts = 0;
  std::string key = "k" + std::to_string(clientRng_.below(sc_.keys));
  uint32_t roll = static_cast<uint32_t>(clientRng_.below(100));
  std::string value = kj::str("v", c.id, ".", c.nextRequest).cStr();
  KvCommand cmd;
  cmd.key = key;
  uint64_t now = q_.now();
  if (roll < sc_.putPct) {
    cmd.op = OpType::Put;
    cmd.value = value;
    c.hop = history_.invokePut(c.id, key, value, now);
  } else if (roll < sc_.putPct + sc_.deletePct) {
    cmd.op = OpType::Delete;
    c.hop = history_.invokeDelete(c.id, key, now);
  } else if (roll < sc_.putPct + sc_.deletePct + sc_.casPct) {
    cmd.op = OpType::Cas;
    cmd.value = value;
    // Expect a value some client plausibly wrote, or absence.
    if (clientRng_.chance(0.3)) {
      cmd.expectAbsent = true;
      c.hop = history_.invokeCas(c.id, key, std::nullopt, value, now);
    } else {
      cmd.expected = kj::str("v", clientRng_.between(1, sc_.clients), ".",
                             clientRng_.between(1, c.nextRequest + 2)).cStr();
      c.hop = history_.invokeCas(c.id, key, cmd.expected, value, now);
    }
  } else {
    cmd.op = OpType::Get;
    c.hop = history_.invokeGet(c.id, key, now);
  }
  if (cmd.isWrite()) {
    cmd.clientId = c.session;
    cmd.requestId = c.nextRequest++;
  }
  c.cmd = cmd;
  trace(kj::str("c", c.id, " invoke ", describeOperation(history_.op(c.hop)).c_str()).cStr());
  clientSend(c);
}

void World::clientSend(Client& c) {
  ++c.attempts;
  uint64_t seq = ++c.attemptSeq;
  uint32_t cid = c.id;
  NodeId target = c.target;
  KvCommand cmd = c.cmd;
  // Request travels to the node; its reply travels back. Either may be lost.
  q_.after(sampleDelay(), [this, cid, seq, target, cmd]() {
    Node& n = node(target);
    if (!n.up || n.pausedUntil > q_.now()) return;  // the client will time out
    if (chaos_ && sc_.clientLossP > 0 && netRng_.chance(sc_.clientLossP)) {
      count(Fault::ClientLoss);
      return;
    }
    n.replica->submit(cmd, ReadMode::Linearizable, [this, cid, seq, target](KvReply reply) {
      trace(kj::str("n", target, " answers c", cid, ": ", statusName(reply.status)).cStr());
      bool lost = chaos_ && sc_.clientLossP > 0 && netRng_.chance(sc_.clientLossP);
      if (lost) {
        count(Fault::ClientLoss);
        return;
      }
      q_.after(sampleDelay(), [this, cid, seq, r = std::move(reply)]() mutable {
        clientReply(cid, seq, std::move(r));
      });
    });
  });
  q_.after(kClientTimeoutNs, [this, cid, seq]() {
    Client& c = clients_[cid - 1];
    if (!c.busy || c.attemptSeq != seq) return;
    clientRetry(c, kNoNode, 0);
  });
}

void World::clientRetry(Client& c, NodeId hint, uint64_t delay) {
  if (chaos_ && c.attempts >= kMaxAttemptsInChaos && !c.opening) {
    // Give up: the outcome stays unknown, and the next op uses a new request id.
    history_.giveUp(c.hop, "gave up after retries");
    trace(kj::str("c", c.id, " gives up").cStr());
    clientFinish(c);
    return;
  }
  c.target = hint != kNoNode ? hint : static_cast<NodeId>(clientRng_.between(1, sc_.nodes));
  uint64_t seq = ++c.attemptSeq;  // invalidates the old attempt's timeout
  uint32_t cid = c.id;
  q_.after(delay, [this, cid, seq]() {
    Client& c = clients_[cid - 1];
    if (!c.busy || c.attemptSeq != seq || stop_) return;
    clientSend(c);
  });
}

void World::clientReply(uint32_t cid, uint64_t seq, KvReply reply) {
  Client& c = clients_[cid - 1];
  if (!c.busy || c.attemptSeq != seq) return;  // an old attempt's answer
  mix(0xc11e + cid * 131 + static_cast<uint64_t>(reply.status));
  switch (reply.status) {
    case Status::Ok:
    case Status::NotFound:
    case Status::CasMismatch:
      finishOp(c, reply);
      return;
    case Status::NotLeader:
      clientRetry(c, reply.leaderHint, reply.leaderHint != kNoNode ? 0 : 20 * kMs);
      return;
    case Status::Timeout:
    case Status::Busy:
    case Status::TransferInProgress:
    case Status::ShuttingDown:
      clientRetry(c, kNoNode, 20 * kMs);
      return;
    case Status::SessionExpired:
      // Evicted: an earlier attempt may have applied, so the outcome is unknown.
      trace(kj::str("c", c.id, " session ", c.session, " expired").cStr());
      c.session = 0;
      if (!c.opening) history_.giveUp(c.hop, "session expired");
      clientFinish(c);
      return;
    case Status::StaleRequest:
    case Status::Invalid:
    case Status::TooLarge:
      fail("client_protocol", kj::str("client ", c.id, " got ", statusName(reply.status),
                                      " for ", describeOperation(history_.op(c.hop)).c_str()).cStr());
      return;
  }
}

void World::finishOp(Client& c, const KvReply& reply) {
  uint64_t now = q_.now();
  if (c.opening) {
    c.session = reply.clientId;
    trace(kj::str("c", c.id, " session ", c.session).cStr());
    c.busy = false;
    c.opening = false;
    q_.after(clientRng_.below(2 * kMs), [this, cid = c.id]() { clientNext(clients_[cid - 1]); });
    return;
  }
  switch (c.cmd.op) {
    case OpType::Put: history_.completePut(c.hop, now); break;
    case OpType::Get:
      history_.completeGet(c.hop, now, reply.status == Status::Ok
                                           ? std::optional<std::string>(reply.value)
                                           : std::nullopt);
      break;
    case OpType::Delete: history_.completeDelete(c.hop, now, reply.status == Status::Ok); break;
    case OpType::Cas: history_.completeCas(c.hop, now, reply.status == Status::Ok); break;
    default: KJ_FAIL_ASSERT("unexpected op");
  }
  trace(kj::str("c", c.id, " ok ", describeOperation(history_.op(c.hop)).c_str()).cStr());
  clientFinish(c);
}

void World::clientFinish(Client& c) {
  c.busy = false;
  ++c.attemptSeq;
  if (c.finalRead) return;
  q_.after(clientRng_.below(5 * kMs), [this, cid = c.id]() { clientNext(clients_[cid - 1]); });
}

bool World::allClientsIdle() const {
  for (auto& c : clients_) {
    if (c.busy) return false;
  }
  return true;
}

bool World::leaderExists() const {
  for (auto& n : nodes_) {
    if (n.up && n.replica->raft().role() == Role::Leader) return true;
  }
  return false;
}

// ------------------------------------------------------------------ faults

void World::scheduleFault() {
  uint64_t delay = faultRng_.below(2 * sc_.faultEveryNs) + 1;
  q_.after(delay, [this]() {
    if (!chaos_ || stop_) return;
    injectFault();
    scheduleFault();
  });
}

void World::injectFault() {
  // Pick among the enabled scheduled fault kinds.
  std::vector<Fault> kinds;
  for (Fault f : {Fault::Partition, Fault::Crash, Fault::Pause, Fault::ClockDrift,
                  Fault::BitFlip, Fault::FsyncError, Fault::IsolateLeader}) {
    if (sc_.faults.has(f)) kinds.push_back(f);
  }
  if (faultRng_.chance(0.08)) {
    quietUntil_ = q_.now() + faultRng_.between(200 * kMs, 3000 * kMs);
    trace("workload lull");
    return;
  }
  // An operator's leadership transfer now and then, between the faults.
  if (faultRng_.chance(0.1)) {
    for (auto& ln : nodes_) {
      if (!ln.up || ln.replica->raft().role() != Role::Leader || sc_.nodes == 1) continue;
      NodeId target = static_cast<NodeId>(faultRng_.between(1, sc_.nodes));
      if (target == ln.id) continue;
      lastTransferNs_ = q_.now();
      if (ln.replica->transferLeadership(target)) {
        ++result_.transfers;
        trace(kj::str("n", ln.id, " transfers leadership to n", target).cStr());
      }
      break;
    }
    return;
  }
  if (kinds.empty()) return;
  Fault f = kinds[faultRng_.below(kinds.size())];
  NodeId victim = static_cast<NodeId>(faultRng_.between(1, sc_.nodes));
  Node& n = node(victim);
  switch (f) {
    case Fault::Partition: {
      count(f);
      uint32_t kind = static_cast<uint32_t>(faultRng_.below(3));
      for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
      if (kind == 0) {
        // Symmetric split into two random sides.
        std::vector<bool> side(sc_.nodes + 1);
        for (uint32_t i = 1; i <= sc_.nodes; ++i) side[i] = faultRng_.chance(0.5);
        for (uint32_t a = 1; a <= sc_.nodes; ++a)
          for (uint32_t b = 1; b <= sc_.nodes; ++b) blocked_[a][b] = side[a] != side[b];
        trace("partition symmetric");
      } else if (kind == 1) {
        // One-way: the victim's messages to everyone are lost, theirs still arrive.
        for (uint32_t b = 1; b <= sc_.nodes; ++b) blocked_[victim][b] = b != victim;
        trace(kj::str("partition one-way from n", victim).cStr());
      } else {
        // Bridge: two sides that see only the victim, which sees both.
        std::vector<bool> side(sc_.nodes + 1);
        for (uint32_t i = 1; i <= sc_.nodes; ++i) side[i] = faultRng_.chance(0.5);
        for (uint32_t a = 1; a <= sc_.nodes; ++a)
          for (uint32_t b = 1; b <= sc_.nodes; ++b)
            blocked_[a][b] = a != victim && b != victim && side[a] != side[b];
        trace(kj::str("partition bridge via n", victim).cStr());
      }
      q_.after(faultRng_.between(50 * kMs, 3000 * kMs), [this]() {
        if (!chaos_) return;
        for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
        trace("partition healed");
      });
      return;
    }
    case Fault::Crash: {
      // Half the time the nemesis goes for the leader: leadership changes are where
      // Raft's subtle rules (Figure 8, completeness) are exercised.
      if (faultRng_.chance(0.5)) {
        for (auto& ln : nodes_) {
          if (ln.up && ln.replica->raft().role() == Role::Leader) victim = ln.id;
        }
      }
      Node& n = node(victim);
      if (!n.up) return;
      count(f);
      crashNode(n, "injected");
      q_.after(faultRng_.between(10 * kMs, 2000 * kMs), [this, victim]() {
        Node& n = node(victim);
        if (!n.up && !n.dead) startNode(n);
      });
      return;
    }
    case Fault::Pause: {
      if (!n.up || n.pausedUntil > q_.now()) return;
      count(f);
      n.pausedUntil = q_.now() + faultRng_.between(10 * kMs, 1000 * kMs);
      noteNodeTrouble(victim, n.pausedUntil);
      trace(kj::str("n", victim, " paused").cStr());
      return;
    }
    case Fault::ClockDrift: {
      count(f);
      n.drift = 0.5 + 1.0 * static_cast<double>(faultRng_.below(1000)) / 1000.0;
      trace(kj::str("n", victim, " drift ", static_cast<uint64_t>(n.drift * 1000)).cStr());
      return;
    }
    case Fault::BitFlip: {
      // Only the minority allowed to suffer unrecoverable faults.
      NodeId v = static_cast<NodeId>(faultRng_.between(1, std::max<uint32_t>(1, (sc_.nodes - 1) / 2)));
      Node& cn = node(v);
      if (!cn.corruptible || cn.dead) return;
      if (!cn.store->flipBitAtRest(faultRng_)) return;
      count(f);
      trace(kj::str("n", v, " bit flip at rest").cStr());
      // Restart it soon so recovery meets the flip.
      if (cn.up) crashNode(cn, "after bit flip");
      q_.after(faultRng_.between(10 * kMs, 500 * kMs), [this, v]() {
        Node& n = node(v);
        if (!n.up && !n.dead) startNode(n);
      });
      return;
    }
    case Fault::FsyncError: {
      if (!n.up) return;
      n.failNextFsync = true;
      return;
    }
    case Fault::IsolateLeader:
      isolateLeader();
      return;
    default:
      return;
  }
}

void World::isolateLeader() {
  // Figure 8's schedule, repeated: for a while every new leader is cut off with a
  // minority as soon as it takes office, so it appends only there, and usually dies.
  // Entries of several terms pile up on different minorities; a leader that later
  // commits one of them by counting replicas (not through an entry of its own term) is
  // crashed at once, so a rival holding a later-term entry there can overwrite it.
  if (sc_.nodes < 3) return;
  count(Fault::IsolateLeader);
  flakyUntil_ = q_.now() + faultRng_.between(300 * kMs, 3000 * kMs);
  trace("nemesis: flaky leaders");
  for (auto& ln : nodes_) {
    if (ln.up && ln.replica->raft().role() == Role::Leader) cutOffLeader(ln.id);
  }
}

void World::cutOffLeader(NodeId leader) {
  std::vector<bool> side(sc_.nodes + 1, false);
  side[leader] = true;
  uint32_t companions = static_cast<uint32_t>(faultRng_.below((sc_.nodes - 1) / 2 + 1));
  for (uint32_t k = 0; k < companions; ++k) side[faultRng_.between(1, sc_.nodes)] = true;
  for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
  for (uint32_t a = 1; a <= sc_.nodes; ++a)
    for (uint32_t b = 1; b <= sc_.nodes; ++b) blocked_[a][b] = side[a] != side[b];
  trace(kj::str("partition: leader n", leader, " cut off with ", companions, " others").cStr());
  uint64_t inc = node(leader).incarnation;
  bool crash = sc_.faults.has(Fault::Crash) && faultRng_.chance(0.7);
  // Crashing: soon, before its entries spread. Otherwise long enough for the majority
  // to elect someone else while clients still talk to the old leader.
  uint64_t hold = crash ? faultRng_.between(1 * kMs, 150 * kMs)
                        : faultRng_.between(1, 8) * sc_.electionTicks * kTickNs;
  q_.after(hold, [this, leader, inc, crash]() {
    if (!chaos_) return;
    Node& ln = node(leader);
    if (crash && ln.up && ln.incarnation == inc) {
      crashNode(ln, "cut-off leader");
      q_.after(faultRng_.between(5 * kMs, 300 * kMs), [this, leader]() {
        Node& n = node(leader);
        if (!n.up && !n.dead) startNode(n);
      });
    }
    q_.after(faultRng_.between(0, 100 * kMs), [this]() {
      if (!chaos_) return;
      for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
      trace("partition healed");
    });
  });
}

void World::watchLeaders() {
  for (auto& n : nodes_) {
    if (!n.up) continue;
    const Raft& r = n.replica->raft();
    bool leads = r.role() == Role::Leader;
    Index commit = r.commitIndex();
    if (leads && !n.wasLeader) {
      n.leaderCommitSeen = commit;  // inherited: what it commits from here on counts
      cutOffLeader(n.id);
    }
    n.wasLeader = leads;
    if (!leads) continue;
    if (commit > n.leaderCommitSeen) {
      n.leaderCommitSeen = commit;
      const Entry* e = r.entryAt(commit);
      if (e != nullptr && e->term < r.term() && sc_.faults.has(Fault::Crash)) {
        count(Fault::Crash);
        NodeId id = n.id;
        // Power loss: what it had sent but the network had not delivered is gone too,
        // and the leaders after it are left alone to finish the story.
        n.lostOutbox = n.incarnation;
        crashNode(n, "leader committed an older term's entry");
        flakyUntil_ = q_.now();
        q_.after(faultRng_.between(5 * kMs, 300 * kMs), [this, id]() {
          Node& m = node(id);
          if (!m.up && !m.dead) startNode(m);
        });
      }
    }
  }
}

void World::observeRoles() {
  for (auto& n : nodes_) {
    Role role = n.up ? n.replica->raft().role() : Role::Follower;
    Term term = n.up ? n.replica->raft().term() : 0;
    Role was = prevRole_[n.id];
    Term wasTerm = prevTerm_[n.id];
    prevRole_[n.id] = role;
    prevTerm_[n.id] = term;
    if (!n.up || stop_) continue;
    if (role == Role::Candidate && (was != Role::Candidate || wasTerm != term)) {
      checkDisruption(n.id, term, false);
    } else if (was == Role::Leader && role != Role::Leader && term == wasTerm) {
      checkDisruption(n.id, term + 1, true);
    }
    if (role == Role::Leader && (was != Role::Leader || wasTerm != term)) {
      leaderSince_[n.id] = q_.now();
    }
  }
}

bool World::quietSince(NodeId id, uint64_t since) const {
  const Node& n = nodes_[id - 1];
  return n.up && n.drift == 1.0 && nodeTrouble_[id] < since && n.pausedUntil <= q_.now();
}

void World::checkDisruption(NodeId who, Term newTerm, bool stepDown) {
  const char* what = stepDown ? "stepped down" : "started an election";
  // The window in which a fault can still explain an election: two of the longest
  // election timeouts (a slow clock stretches one to 3 x electionTicks ticks), plus
  // the longest late message.
  uint64_t window = 2 * 3 * sc_.electionTicks * kTickNs + 500 * kMs;
  if (q_.now() < window) return;
  uint64_t since = q_.now() - window;
  if (lastTransferNs_ >= since) return;
  NodeId leader = kNoNode;
  for (auto& n : nodes_) {
    if (n.up && n.replica->raft().role() == Role::Leader && n.replica->raft().term() + 1 == newTerm) {
      leader = n.id;
    }
  }
  if (stepDown) leader = who;
  if (leader == kNoNode || !quietSince(leader, since)) return;
  if (leaderSince_[leader] >= since) return;
  uint32_t healthy = 1;
  for (auto& f : nodes_) {
    if (f.id == leader || !quietSince(f.id, since)) continue;
    if (blocked_[leader][f.id] || blocked_[f.id][leader]) continue;
    if (linkTrouble_[leader][f.id] >= since || linkTrouble_[f.id][leader] >= since) continue;
    ++healthy;
  }
  if (healthy < sc_.nodes / 2 + 1) return;
  fail("availability", kj::str("n", who, " ", what, " (term ", newTerm, ") while leader n",
                               leader, " had a quorum that no fault touched for ",
                               window / kMs, " ms").cStr());
}

void World::healAll() {
  chaos_ = false;
  for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
  sc_.dropP = 0;
  sc_.duplicateP = 0;
  sc_.reorderP = 0;
  sc_.slowFsyncP = 0;
  trace("heal: liveness phase");
  for (auto& n : nodes_) {
    n.pausedUntil = 0;
    n.failNextFsync = false;
    n.drift = 1.0;  // every fault stops, clock drift included
    if (!n.up && !n.dead) startNode(n);
  }
  livenessDeadline_ = q_.now() + kLivenessBudgetNs;
  leaderDeadline_ = q_.now() + kLeaderAfterHealTimeouts * 2 * sc_.electionTicks * kTickNs;
}

// ------------------------------------------------------------------ run

void World::afterEvent() {
  if (stop_) return;
  // First: it may crash a node, and the checks below must see the world after that.
  if (chaos_ && q_.now() < flakyUntil_) watchLeaders();
  // Refilled in place: this runs after every event.
  std::vector<const Replica*>& reps = replicaView_;
  reps.clear();
  for (auto& n : nodes_) reps.push_back(n.up ? n.replica.get() : nullptr);
  checker_.afterEvent(reps);
  if (sc_.preVote && sc_.checkQuorum) observeRoles();
  for (auto& n : nodes_) {
    // An applied index that moved without an apply: a snapshot was installed. Its
    // state must be what the replicas that applied up to there had.
    if (!n.up) continue;
    Index applied = n.replica->kv().appliedIndex();
    if (applied != n.appliedSeen) {
      n.appliedSeen = applied;
      checker_.onState(n.id, applied, n.replica->kv().digest(), "installing a snapshot");
    }
  }
  if (q_.executed() % kFullCheckEvery == 0) checker_.fullCheck(reps);
  if (checker_.failed()) {
    fail(checker_.violation()->property, checker_.violation()->detail);
  }
}

RunResult World::run() {
  lastEffects_.assign(sc_.nodes, 0);
  trace(sc_.describe());
  for (auto& n : nodes_) startNode(n);
  for (auto& c : clients_) {
    q_.after(clientRng_.below(10 * kMs), [this, cid = c.id]() { clientNext(clients_[cid - 1]); });
  }
  if (chaos_) scheduleFault();
  bool finalReadsIssued = false;
  while (!stop_) {
    if (q_.now() > opts_.maxSimNs) {
      fail("liveness", "simulated time limit reached");
      break;
    }
    if (q_.now() >= stormWindowStart_ + kStormWindowNs) {
      stormWindowStart_ = q_.now();
      stormWindowEvents_ = 0;
    } else if (++stormWindowEvents_ > kMaxEventsPerStormWindow) {
      fail("liveness", kj::str("event storm: more than ", kMaxEventsPerStormWindow,
                               " events within ", kStormWindowNs / kMs,
                               " simulated ms (messages answering each other forever)").cStr());
      break;
    }
    if (q_.executed() >= kMaxEventsPerRun) {
      fail("liveness", kj::str("event budget of ", kMaxEventsPerRun,
                               " exhausted: the run makes no progress").cStr());
      break;
    }
    if (!q_.runOne()) {
      fail("liveness", "event queue ran dry");
      break;
    }
    afterEvent();
    if (stop_) break;
    if (chaos_ && (opsIssued_ >= sc_.ops || q_.now() > kMaxChaosNs)) healAll();
    if (!chaos_) {
      if (!leaderSeen_ && leaderExists()) leaderSeen_ = true;
      if (!leaderSeen_ && q_.now() > leaderDeadline_) {
        fail("availability", kj::str("no leader ", kLeaderAfterHealTimeouts,
                                     " election timeouts after healing").cStr());
        break;
      }
      if (q_.now() > livenessDeadline_) {
        std::string who;
        for (auto& c : clients_) {
          if (c.busy) who += kj::str(" c", c.id, c.opening ? "(session)" : "").cStr();
        }
        fail("liveness", kj::str("60 s after healing: leader=", leaderExists() ? "yes" : "no",
                                 ", clients still waiting:", who.c_str()).cStr());
        break;
      }
      if (allClientsIdle() && opsIssued_ >= sc_.ops && leaderExists()) {
        if (!finalReadsIssued) {
          // Read every key once more: acknowledged writes must all have survived.
          finalReadsIssued = true;
          for (uint32_t k = 0; k < sc_.keys; ++k) {
            Client& c = clients_[k % clients_.size()];
            if (c.busy) continue;
            c.finalRead = true;
            c.busy = true;
            c.opening = false;
            c.attempts = 0;
            c.cmd = KvCommand{};
            c.cmd.op = OpType::Get;
            c.cmd.key = "k" + std::to_string(k);
            c.hop = history_.invokeGet(c.id, c.cmd.key, q_.now());
            clientSend(c);
          }
          continue;
        }
        break;  // the final reads are done
      }
    }
  }
  result_.simNs = q_.now();
  result_.events = q_.executed();
  result_.maxCommit = checker_.maxCommitted();
  if (result_.ok) {
    checker_.fullCheck(replicas());
    if (checker_.failed()) fail(checker_.violation()->property, checker_.violation()->detail);
  }
  for (auto& op : history_.ops()) {
    if (op.outcome == Outcome::Ok) ++result_.opsOk;
    if (op.outcome == Outcome::Fail) ++result_.opsFail;
    if (op.outcome == Outcome::Unknown) ++result_.opsUnknown;
  }
  if (result_.ok) {
    LinearizabilityResult lin = checkLinearizability(history_);
    if (lin.verdict == Verdict::NotLinearizable) {
      fail("linearizability", lin.explanation);
    } else if (lin.verdict == Verdict::Unknown) {
      fail("linearizability", "checker budget exceeded: " + lin.explanation);
    }
  }
  if (!opts_.historyPath.empty()) {
    std::ofstream out(opts_.historyPath, std::ios::trunc);
    out << toJsonLines(history_);
  }
  for (auto& n : nodes_) {
    result_.faults[static_cast<size_t>(Fault::TornWrite)] += n.store->tornFiles();
  }
  result_.traceHash = traceHash_;
  if (traceFile_) traceFile_->flush();
  return result_;
}

RunResult runScenario(const Scenario& scenario, const RunOptions& options) {
  World world(scenario, options);
  RunResult result;
  // An assertion anywhere in the core, disk or simulator is a failed run, not a crash
  // of the runner: report it with the seed like any other violation.
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { result = world.run(); })) {
    result = world.partialResult();
    result.ok = false;
    result.property = "assertion";
    result.detail = kj::str(e->getFile(), ":", e->getLine(), ": ", e->getDescription()).cStr();
  }
  return result;
}

}  // namespace kvr::sim
