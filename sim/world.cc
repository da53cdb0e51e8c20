#include "sim/world_impl.h"

#include <cstdio>
#include <fstream>

#include <kj/debug.h>

#include "core/hash.h"
#include "core/membership.h"
#include "schemas/codec.h"
#include "sim/linearizability.h"

namespace kvr::sim {

World::World(const Scenario& sc, const RunOptions& opts)
    : sc_(sc),
      opts_(opts),
      rng_(sc.seed),
      faultRng_(rng_.fork()),
      netRng_(rng_.fork()),
      clientRng_(rng_.fork()),
      fsRng_(rng_.fork()),
      memberRng_(sc.seed ^ 0x6a6f696e73ull),
      memberStoryRng_(sc.seed ^ 0x6c6561726e6572ull),
      fig8Rng_(sc.seed ^ 0x666967757265ull),
      suffixRng_(sc.seed ^ 0x737566666978ull),
      hwm_{Rng(sc.seed ^ 0x68776d6c6f7374ull), &NodeStore::loseNewestEntriesAtRest,
           "its newest entries record", 10 * kMs, 300 * kMs},
      overwrite_{Rng(sc.seed ^ 0x6f7665727772ull), &NodeStore::loseNewestOverwriteAtRest,
                 "its newest overwrite", 1 * kMs, 50 * kMs},
      checker_(sc.nodes + sc.spares) {
  faultStreamSeed_ = rng_.next();
  opStreamSeed_ = rng_.next();
  if (!opts_.tracePath.empty()) {
    traceFile_ = std::make_unique<std::ofstream>(opts_.tracePath, std::ios::trunc);
    KJ_REQUIRE(traceFile_->good(), "cannot open trace file", opts_.tracePath.c_str());
  }
  if (!opts_.timelinePath.empty()) timeline_ = std::make_unique<Timeline>(slots());
  nodes_.resize(slots());
  blocked_.assign(slots() + 1, std::vector<bool>(slots() + 1, false));
  nodeTrouble_.assign(slots() + 1, 0);
  linkTrouble_.assign(slots() + 1, std::vector<uint64_t>(slots() + 1, 0));
  prevRole_.assign(slots() + 1, Role::Follower);
  recentTo_.resize(slots() + 1);
  readAnswers_.resize(slots() + 1);
  staleReadAnswers_.resize(slots() + 1);
  prevTerm_.assign(slots() + 1, 0);
  leaderSince_.assign(slots() + 1, 0);
  // Unrecoverable storage faults stay within a minority, so the cluster can live.
  uint32_t corruptible = (sc_.nodes - 1) / 2;
  for (uint32_t i = 0; i < slots(); ++i) {
    Node& n = nodes_[i];
    n.id = i + 1;
    n.corruptible = i < corruptible;
    n.dead = i >= sc_.nodes;  // a spare: down until it joins
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
    clients_[i].target = static_cast<NodeId>(clientRng_.between(1, slots()));
    clients_[i].sticky = clientRng_.chance(sc_.stickyClients);
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
  if (timeline_) timeline_->violation(q_.now(), result_.property, result_.detail);
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
      fail("storage", kj::str("node ", n.id,
                              " (no corruption injected) cannot recover: ", e->getDescription())
                          .cStr());
    } else if (!e->getDescription().startsWith("disk: refusing to start: ") ||
               !n.store->corrupted()) {
      // Only its own disk's damage may keep a node down: any other exception in recovery
      // is a bug, not a finding to discard.
      fail("storage", kj::str("node ", n.id, " failed to recover, and not by refusing a ",
                              "damaged disk: ", e->getDescription())
                          .cStr());
    }
    return;
  }
  for (const std::string& repair : n.store->lastRepairs()) {
    trace(kj::str("n", n.id, " repaired: ", repair.c_str()).cStr());
  }
  if (rec.recovering) {
    // It may have lost committed entries it held: it must fetch them before it votes
    // again (checkRecoveryEnd).
    trace(kj::str("n", n.id, " recovering until index ", rec.recoverUntil).cStr());
  } else {
    Index last = rec.entries.empty() ? rec.snapshot.meta.index : rec.entries.back().index;
    if (last < n.durableCommittedFloor) {
      fail("durability",
           kj::str("node ", n.id, " restarted (not recovering) with its log ending at ", last,
                   " but it held committed entry ", n.durableCommittedFloor, " durably")
               .cStr());
      return;
    }
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
  cfg.snapshotSpreadPercent = sc_.snapshotSpreadPercent;
  cfg.requestTimeoutTicks = 60;
  if (n.bootConf.voters.empty()) {
    for (uint32_t i = 1; i <= sc_.nodes; ++i) cfg.initialConf.voters.push_back(i);
  } else {
    cfg.initialConf = n.bootConf;
  }
  Index snapIndex = rec.snapshot.meta.index;
  noteNodeTrouble(n.id, q_.now());
  n.up = true;
  n.recovering = rec.recovering;
  n.flushScheduled = false;
  n.flushing = false;
  ++n.incarnation;
  checker_.onRestart(n.id, snapIndex);
  n.replica = std::make_unique<Replica>(cfg, rng_.fork(), *n.transport, *n.storage,
                                        std::move(rec));
  NodeId id = n.id;
  n.replica->setApplyObserver([this, id](NodeId, const Entry& e, const KvReply* reply) {
    const Replica& r = *node(id).replica;
    uint64_t effects = r.kv().effects() - lastEffects_[id - 1];
    lastEffects_[id - 1] = r.kv().effects();
    checker_.onApply(id, e, reply, effects);
    if (e.kind == EntryKind::Config && !committedConfs_.count(e.index)) {
      ConfState c;
      if (decodeConf(e.data, &c)) committedConfs_.emplace(e.index, std::move(c));
    }
    checker_.onState(id, e.index, r.kv().digest(), "applying");
    node(id).appliedSeen = e.index;
  });
  lastEffects_[id - 1] = n.replica->kv().effects();
  // Restarted from its own snapshot: the state there must be what every replica had.
  n.appliedSeen = n.replica->kv().appliedIndex();
  n.persistedVote = n.replica->raft().vote();
  n.persistedTerm = n.replica->raft().term();
  n.durableHardState = HardState{n.persistedTerm, n.persistedVote, 0};
  n.hardStatesInFlight.clear();
  n.voteInFlush = false;
  n.wasLeader = false;
  n.leaderCommitSeen = 0;
  checker_.onState(id, n.appliedSeen, n.replica->kv().digest(), "restarting from its snapshot");
  if (chaos_ && sc_.replayP > 0 && faultRng_.chance(kn_.nemesis.replayToRestartedP)) {
    replayToRestarted(n.id);
  }
  // What the previous incarnations were told about their reads is now stale.
  // The oldest answer per id stays: the older, the staler the state it points at.
  for (auto& [ctx, answer] : readAnswers_[n.id])
    staleReadAnswers_[n.id].emplace(ctx, std::move(answer));
  readAnswers_[n.id].clear();
  while (staleReadAnswers_[n.id].size() > kReadAnswersKept) {
    staleReadAnswers_[n.id].erase(staleReadAnswers_[n.id].begin());
  }
  trace(kj::str("n", n.id, " start term=", n.replica->raft().term(),
                " vote=", n.replica->raft().vote(), " snapshot=", snapIndex,
                " last=", n.replica->raft().lastIndex())
            .cStr());
  scheduleTick(n);
}

Index World::durableCommittedIndex(const Node& n) const {
  const RecoveredState& d = n.store->durableState();
  for (auto it = d.entries.rbegin(); it != d.entries.rend(); ++it) {
    if (checker_.isCommitted(*it)) return std::max(d.snapshot.meta.index, it->index);
  }
  return d.snapshot.meta.index;
}

void World::crashNode(Node& n, const char* why) {
  if (!n.up) return;
  trace(kj::str("n", n.id, " crash (", why, ")").cStr());
  noteNodeTrouble(n.id, q_.now());
  n.up = false;
  n.replica = nullptr;
  n.pausedUntil = 0;
  n.durableCommittedFloor = std::max(n.durableCommittedFloor, durableCommittedIndex(n));
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
  if (batch.snapshot) checkSnapshotConf(id, batch.snapshot->meta);
  if (batch.hardState && batch.hardState->vote != kNoNode &&
      (batch.hardState->vote != n.persistedVote || batch.hardState->term != n.persistedTerm)) {
    n.voteInFlush = true;
  }
  if (batch.hardState) {
    n.persistedVote = batch.hardState->vote;
    n.persistedTerm = batch.hardState->term;
    n.hardStatesInFlight.emplace_back(batch.seq, *batch.hardState);
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
  q_.after(kn_.disk.groupCommitNs, [this, id, inc]() { flush(node(id), inc); });
}

void World::flush(Node& n, uint64_t inc) {
  if (!n.up || n.incarnation != inc) return;
  n.flushScheduled = false;
  if (!n.store->hasQueued()) return;
  std::vector<uint64_t> seqs = n.store->beginFlush();
  n.flushing = true;
  const DiskKnobs& dk = kn_.disk;
  uint64_t latency = dk.fsyncBaseNs + netRng_.below(netRng_.chance(dk.fsyncFastP)
                                                        ? dk.fsyncFastNs
                                                        : dk.fsyncSlowNs);
  if (!calm() && sc_.slowFsyncP > 0 && faultRng_.chance(sc_.slowFsyncP)) {
    latency += dk.slowFsyncExtra.draw(faultRng_);
    count(Fault::SlowFsync);
    noteNodeTrouble(n.id, q_.now() + latency);  // acks and heartbeat replies wait for it
  }
  NodeId id = n.id;
  // A flush that makes a vote durable is where a vote sent too early would be lost:
  // crash there far more often than at an ordinary flush (and nearly always in the
  // lone-voter story, whose slow vote flush leaves time to act on the vote early).
  const bool fragile = n.voteInFlush && q_.now() < n.fragileVotesUntil;
  if (fragile) latency += dk.fragileVoteExtra.draw(faultRng_);
  double crashP = fragile         ? dk.crashInFragileVoteFlushP
                  : n.voteInFlush ? dk.crashInVoteFlushP
                                  : dk.crashInFlushP;
  n.voteInFlush = false;
  if (chaos_ && !calm() && sc_.faults.has(Fault::Crash) && faultRng_.chance(crashP)) {
    // Power loss between the write and its fsync: the moment the persistence rule is
    // about (a vote or an ack must not have left before this completes).
    q_.after(faultRng_.below(latency), [this, id, inc]() {
      Node& n = node(id);
      if (!n.up || n.incarnation != inc || !chaos_) return;
      count(Fault::Crash);
      crashNode(n, "during fsync");
      // Back quickly, while the messages of the moment are still in flight.
      q_.after(kn_.disk.restartAfterFlushCrash.draw(faultRng_), [this, id]() {
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
      n.restartAt = q_.now() + kn_.disk.restartAfterFsyncErrorNs;
      q_.at(n.restartAt, [this, id]() {
        Node& n = node(id);
        if (!n.up && !n.dead) startNode(n);
      });
      return;
    }
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { n.store->finishFlush(); })) {
      fail("storage", kj::str("node ", id,
                              " fsync failed without an injected fault: ", e->getDescription())
                          .cStr());
      return;
    }
    n.flushing = false;
    if (!n.replica->raft().recovering() && n.durableCommittedFloor > 0) {
      // A follower may durably overwrite an entry that a later term has committed
      // meanwhile, on a stale leader's Append: that leader's term is older than the
      // commit's, so its Append still reaches a node that never saw the newer term (seed
      // 115844). Only a node that is not recovering keeps its floor this way; a
      // recovering one must first hold again what it held before the damage.
      n.durableCommittedFloor = std::min(n.durableCommittedFloor, durableCommittedIndex(n));
    }
    mix(0xf105 + id);
    if (traceFile_ && !seqs.empty()) {
      trace(kj::str("n", id, " durable seq ", seqs.front(), "..", seqs.back()).cStr());
    }
    for (uint64_t s : seqs) {
      if (!n.up || n.incarnation != inc) break;
      while (!n.hardStatesInFlight.empty() && n.hardStatesInFlight.front().first <= s) {
        n.durableHardState = n.hardStatesInFlight.front().second;
        n.hardStatesInFlight.pop_front();
      }
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
  if (!calm() && sc_.faults.has(Fault::Delay) && netRng_.chance(kn_.net.delayTailP)) {
    // Heavy tail: a few messages take far longer.
    base *= kn_.net.delayTailFactor.draw(netRng_);
    count(Fault::Delay);
    delayTrouble_ = true;
  }
  if (!calm() && sc_.reorderP > 0 && netRng_.chance(sc_.reorderP)) {
    base += netRng_.below(kn_.net.reorderMaxNs);
    count(Fault::Reorder);
    delayTrouble_ = true;
  }
  return base;
}

void World::sendMessage(NodeId from, Message&& msg) {
  ++result_.messages;
  NodeId to = msg.to;
  KJ_REQUIRE(to >= 1 && to <= slots(), "message to an unknown node", to);
  if (fig8_.phase != Fig8::Off && from == fig8_.l) stripOwnTermEntries(msg);
  // Every message crosses the wire codec, so encoding is tested with everything else.
  std::string bytes = codec::encodeMessageBytes(kClusterId, msg);
  wireBytes_ += bytes.size();
  uint64_t inc = node(from).incarnation;
  checkPersistenceRule(from, msg);
  mix(hashBytes(bytes));
  if (traceFile_) {
    trace(kj::str("n", from, " -> n", to, " ", msgTypeName(msg.type), " t", msg.term, " i",
                  msg.index, " c", msg.commit, msg.reject ? " reject" : "",
                  " n=", msg.entries.size())
              .cStr());
  }
  if (!reachable(from, to)) {
    noteLinkTrouble(from, to);
    return;
  }
  if (!calm() && sc_.dropP > 0 && netRng_.chance(sc_.dropP)) {
    count(Fault::Drop);
    noteLinkTrouble(from, to);
    return;
  }
  int copies = 1;
  if (!calm() && sc_.duplicateP > 0 && netRng_.chance(sc_.duplicateP)) {
    copies = 2;
    count(Fault::Duplicate);
  }
  if (sc_.replayP > 0) {
    auto& recent = recentTo_[to];
    recent.emplace_back(from, bytes);
    if (recent.size() > kRecentPerNode) recent.pop_front();
    if (msg.type == MsgType::ReadIndexResp) {
      // Kept by read id: a later incarnation that reuses an id gets this answer late.
      auto& answers = readAnswers_[to];
      answers[msg.context] = {from, bytes};
      if (answers.size() > kReadAnswersKept) answers.erase(answers.begin());
    }
  }
  if (chaos_ && !calm() && sc_.replayP > 0 && msg.type == MsgType::ReadIndex) {
    // The worst moment for an old answer: right when a read with its id is asked.
    auto& stale = staleReadAnswers_[from];
    auto it = stale.find(msg.context);
    if (it != stale.end()) {
      count(Fault::Replay);
      auto [sender, answer] = std::move(it->second);
      stale.erase(it);
      q_.after(sampleDelay() / 2,
               [this, sender = sender, from, b = std::move(answer)]() mutable {
                 deliver(sender, node(sender).incarnation, from, std::move(b));
               });
    }
  }
  if (chaos_ && !calm() && sc_.replayP > 0 && netRng_.chance(sc_.replayP)) {
    // A stale copy, delivered long after everything around it (old votes, Appends and
    // read answers must be recognised as old).
    count(Fault::Replay);
    q_.after(kn_.net.replayLate.draw(netRng_), [this, from, inc, to, b = bytes]() mutable {
      deliver(from, inc, to, std::move(b));
    });
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
    fail("codec",
         kj::str("a message our own encoder wrote does not decode: ", error.c_str()).cStr());
    return;
  }
  mix(hashBytes(bytes) + to);
  const Raft& r = n.replica->raft();
  const bool leading = r.role() == Role::Leader;
  const Term before = r.term();
  // A removed node asking for votes with a log behind ours (thesis §4.2.3).
  const bool behind = msg.logTerm < r.lastTerm() ||
                      (msg.logTerm == r.lastTerm() && msg.index < r.lastIndex());
  const bool removedBehind = msg.type == MsgType::Vote && behind;
  n.replica->receive(std::move(msg));
  if (r.term() <= before || !node(from).removed || isMemberOf(r.conf(), from)) return;
  if (leading) {
    // Issue 11: a removed node stops disturbing the cluster. Its log lacks at least the
    // leader's own-term entries, so nothing it says may depose the leader.
    fail("availability", kj::str("n", from, ", removed from the cluster, deposed leader n", to,
                                 " (term ", before, " -> ", r.term(), ")")
                             .cStr());
  } else if (removedBehind) {
    // Nor may it raise a member's term: the next leader would have to exceed it.
    fail("availability", kj::str("n", from, ", removed from the cluster and behind n", to,
                                 "'s log, raised its term (", before, " -> ", r.term(), ")")
                             .cStr());
  }
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
  uint64_t k = opsIssued_++;
  clientRng_.reseed(opStreamSeed_ ^ (k * 0x9e3779b97f4a7c15ull));
  if (opts_.schedule && !Schedule::kept(opts_.schedule->keepOps, k)) {
    // Dropped by the schedule: this client goes on to its next operation.
    q_.after(clientRng_.below(2 * kMs) + 1,
             [this, cid = c.id]() { clientNext(clients_[cid - 1]); });
    return;
  }
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
    if (clientRng_.chance(kn_.client.casExpectAbsentP)) {
      cmd.expectAbsent = true;
      c.hop = history_.invokeCas(c.id, key, std::nullopt, value, now);
    } else {
      cmd.expected = kj::str("v", clientRng_.between(1, sc_.clients), ".",
                             clientRng_.between(1, c.nextRequest + 2))
                         .cStr();
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
  q_.after(sampleDelay(), [this, cid, seq, target, cmd, hop = c.hop]() {
    Node& n = node(target);
    if (!n.up || n.pausedUntil > q_.now()) return;  // the client will time out
    if (chaos_ && sc_.clientLossP > 0 && netRng_.chance(sc_.clientLossP)) {
      count(Fault::ClientLoss);
      return;
    }
    bool read = cmd.op == OpType::Get;
    Index committed = highestCommit_;
    n.replica->submit(
        cmd, ReadMode::Linearizable,
        [this, cid, seq, target, read, committed, hop](KvReply reply) {
          trace(kj::str("n", target, " answers c", cid, ": ", statusName(reply.status)).cStr());
          if (read && (reply.status == Status::Ok || reply.status == Status::NotFound)) {
            checkReadServer(target, committed, hop);
          }
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
  // While the suffix story grows a cut-off leader's log, clients give up fast: a write
  // is retried (each attempt is one more entry there), a read is given up.
  bool hurry = suffix_.phase == Suffix::Grow;
  q_.after(hurry ? kHurriedClientTimeoutNs : kClientTimeoutNs, [this, cid, seq, hurry]() {
    Client& c = clients_[cid - 1];
    if (!c.busy || c.attemptSeq != seq) return;
    if (hurry && !c.opening && !c.cmd.isWrite()) {
      history_.giveUp(c.hop, "timed out; moved on");
      clientFinish(c);
      return;
    }
    if (hurry) {
      clientRetry(c, c.target, 0);
      return;
    }
    // A sticky client (it knows one endpoint) tries the same node again: a cut-off
    // leader keeps appending its retries, so its minority's divergent suffix grows, and
    // keeps reading there while the others move on and write through a new leader.
    // Sticky only through the chaos: a real client with one endpoint would hang on a
    // dead node for good, which says nothing about the cluster.
    bool same = c.sticky && chaos_ && !node(c.target).dead;
    if (same && !c.opening && c.cmd.isWrite() && clientRng_.chance(kn_.client.stickyGiveUpP)) {
      // Or it gives up on the write (outcome unknown) and goes on with its next
      // operation at the same node: its reads there, while a cut-off leader still
      // believes it leads, are what a read path without a quorum check serves stale.
      history_.giveUp(c.hop, "timed out; moved on");
      trace(kj::str("c", c.id, " moves on").cStr());
      clientFinish(c);
      return;
    }
    clientRetry(c, same ? c.target : kNoNode, 0);
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
  c.target = hint != kNoNode ? hint : static_cast<NodeId>(clientRng_.between(1, slots()));
  if (pinnedTarget_ != kNoNode) c.target = pinnedTarget_;
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
    case Status::CasMismatch: finishOp(c, reply); return;
    case Status::NotLeader:
      clientRetry(c, reply.leaderHint,
                  reply.leaderHint != kNoNode ? 0 : kn_.client.retryBackoffNs);
      return;
    case Status::Timeout:
    case Status::Busy:
    case Status::TransferInProgress:
    case Status::ShuttingDown: clientRetry(c, kNoNode, kn_.client.retryBackoffNs); return;
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
                                      " for ", describeOperation(history_.op(c.hop)).c_str())
                                  .cStr());
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
    q_.after(clientRng_.below(2 * kMs),
             [this, cid = c.id]() { clientNext(clients_[cid - 1]); });
    return;
  }
  switch (c.cmd.op) {
    case OpType::Put: history_.completePut(c.hop, now); break;
    case OpType::Get:
      history_.completeGet(c.hop, now,
                           reply.status == Status::Ok ? std::optional<std::string>(reply.value)
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

// ------------------------------------------------------------------ run

RunResult World::run() {
  lastEffects_.assign(slots(), 0);
  ProbeCounts::global().reset();  // the probes this run reaches
  trace(sc_.describe());
  for (auto& n : nodes_) {
    if (!n.dead) startNode(n);
  }
  if (timeline_) observeTimeline();  // the nodes as they start, not as before time 0
  for (auto& c : clients_) {
    q_.after(clientRng_.below(10 * kMs),
             [this, cid = c.id]() { clientNext(clients_[cid - 1]); });
  }
  if (chaos_) scheduleFault(faultRng_.below(2 * sc_.faultEveryNs) + 1);
  if (chaos_ && sc_.membership()) scheduleMembership();
  if (chaos_ && figure8Enabled()) scheduleFigure8(fig8Rng_.between(200 * kMs, 3000 * kMs));
  if (chaos_ && suffixEnabled()) scheduleSuffix(suffixRng_.between(200 * kMs, 3000 * kMs));
  if (chaos_ && memberStoryEnabled()) {
    scheduleMemberStory(memberStoryRng_.between(500 * kMs, 4000 * kMs));
  }
  if (chaos_) scheduleLostWrite(hwm_, hwm_.rng.between(200 * kMs, 3000 * kMs));
  if (chaos_) scheduleLostWrite(overwrite_, overwrite_.rng.between(200 * kMs, 3000 * kMs));
  while (!stop_ && withinBudget()) {
    if (!q_.runOne()) {
      fail("liveness", "event queue ran dry");
      break;
    }
    afterEvent();
    if (stop_) break;
    if (chaos_ && chaosOver()) healAll();
    if (!chaos_ && livenessStep()) break;
  }
  return finishRun();
}

bool World::chaosOver() const {
  if (opts_.schedule && opts_.schedule->chaosEndNs > 0) {
    return q_.now() >= opts_.schedule->chaosEndNs;
  }
  return opsIssued_ >= sc_.ops || q_.now() > kMaxChaosNs;
}

bool World::withinBudget() {
  if (q_.now() > opts_.maxSimNs) {
    fail("liveness", "simulated time limit reached");
    return false;
  }
  if (q_.now() >= stormWindowStart_ + kStormWindowNs) {
    stormWindowStart_ = q_.now();
    stormWindowEvents_ = 0;
  } else if (++stormWindowEvents_ > kMaxEventsPerStormWindow) {
    fail("liveness",
         kj::str("event storm: more than ", kMaxEventsPerStormWindow, " events within ",
                 kStormWindowNs / kMs, " simulated ms (messages answering each other forever)")
             .cStr());
    return false;
  }
  if (wireBytes_ > kMaxWireBytesPerRun) {
    fail("liveness", kj::str("wire budget of ", kMaxWireBytesPerRun >> 20,
                             " MiB of messages exhausted after ", q_.executed(),
                             " events: the run makes no progress")
                         .cStr());
    return false;
  }
  if (q_.executed() >= kMaxEventsPerRun) {
    fail("liveness",
         kj::str("event budget of ", kMaxEventsPerRun, " exhausted: the run makes no progress")
             .cStr());
    return false;
  }
  return true;
}

bool World::livenessStep() {
  if (!leaderSeen_ && leaderExists()) leaderSeen_ = true;
  if (!leaderSeen_ && q_.now() > leaderDeadline_) {
    fail("availability",
         kj::str("no leader ", kLeaderAfterHealTimeouts, " election timeouts after healing")
             .cStr());
    return true;
  }
  if (q_.now() > livenessDeadline_) {
    std::string who;
    for (auto& c : clients_) {
      if (c.busy) who += kj::str(" c", c.id, c.opening ? "(session)" : "").cStr();
    }
    fail("liveness", kj::str("60 s after healing: leader=", leaderExists() ? "yes" : "no",
                             ", clients still waiting:", who.c_str())
                         .cStr());
    return true;
  }
  if (!allClientsIdle() || opsIssued_ < sc_.ops || !leaderExists()) return false;
  if (finalReadsIssued_) return true;  // the final reads are done
  issueFinalReads();
  return false;
}

void World::issueFinalReads() {
  // Read every key once more: acknowledged writes must all have survived.
  finalReadsIssued_ = true;
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
}

RunResult World::finishRun() {
  result_.probes = ProbeCounts::global().snapshot();
  result_.simNs = q_.now();
  result_.events = q_.executed();
  result_.maxCommit = checker_.maxCommitted();
  result_.faultEvents = faultEvents_;
  result_.opsDrawn = opsIssued_;
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
  writeTimeline(result_);
  return result_;
}

void World::writeTimeline(const RunResult& result) {
  if (!timeline_) return;
  if (!result.ok) timeline_->violation(q_.now(), result.property, result.detail);
  timeline_->finish(q_.now());
  std::ofstream out(opts_.timelinePath, std::ios::trunc);
  out << renderTimelineHtml(*timeline_, history_, sc_.describe());
  KJ_REQUIRE(out.good(), "cannot write the timeline", opts_.timelinePath.c_str());
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
    world.writeTimeline(result);
  }
  return result;
}

}  // namespace kvr::sim
