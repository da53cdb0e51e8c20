// The fault schedule: random faults between events, and the targeted nemeses.
#include "sim/world_impl.h"

#include <kj/debug.h>

#include <algorithm>

namespace kvr::sim {

void World::scheduleFault(uint64_t delay) {
  q_.after(delay, [this]() {
    if (!chaos_ || stop_) return;
    // Fault event k draws from its own stream, the time of the next one first: a
    // schedule that drops events keeps the others' times and first choices.
    uint64_t k = faultEvents_++;
    faultRng_.reseed(faultStreamSeed_ ^ (k * 0x9e3779b97f4a7c15ull));
    uint64_t next = faultRng_.below(2 * sc_.faultEveryNs) + 1;
    if (!opts_.schedule || Schedule::kept(opts_.schedule->keepFaults, k)) {
      trace(kj::str("fault event ", k).cStr());
      injectFault();
      const auto& wanted = opts_.testFailAfterFaults;
      if (std::find(wanted.begin(), wanted.end(), k) != wanted.end() &&
          ++testFaultsSeen_ == wanted.size()) {
        fail("injected", "every fault event of --test-fail-after-faults was injected");
      }
    }
    scheduleFault(next);
  });
}

void World::injectFault() {
  // A targeted nemesis is playing out: nothing else may cut its story short.
  if (q_.now() < nemesisUntil_) return;
  // Pick among the enabled scheduled fault kinds.
  std::vector<Fault> kinds;
  // The leader nemesis twice: its two stories (flaky leaders, one long cut-off) are
  // where Figure 8, stale reads and divergent logs meeting snapshots come from.
  for (Fault f : {Fault::Partition, Fault::Crash, Fault::Pause, Fault::ClockDrift,
                  Fault::BitFlip, Fault::FsyncError, Fault::IsolateLeader, Fault::IsolateLeader,
                  Fault::LostWrite, Fault::MisdirectedWrite}) {
    if (sc_.faults.has(f)) kinds.push_back(f);
  }
  const NemesisKnobs& k = kn_.nemesis;
  if (faultRng_.chance(k.lullP)) {
    quietUntil_ = q_.now() + k.lull.draw(faultRng_);
    trace("workload lull");
    return;
  }
  // An operator's leadership transfer now and then, between the faults.
  if (faultRng_.chance(k.transferP)) {
    startTransfer();
    return;
  }
  if (kinds.empty()) return;
  Fault f = kinds[faultRng_.below(kinds.size())];
  NodeId victim = static_cast<NodeId>(faultRng_.between(1, slots()));
  Node& n = node(victim);
  switch (f) {
    case Fault::Partition: partitionFault(victim); return;
    case Fault::Crash: crashFault(victim); return;
    case Fault::Pause: {
      if (!n.up || n.pausedUntil > q_.now()) return;
      count(f);
      n.pausedUntil = q_.now() + k.pause.draw(faultRng_);
      noteNodeTrouble(victim, n.pausedUntil);
      trace(kj::str("n", victim, " paused").cStr());
      return;
    }
    case Fault::ClockDrift: {
      count(f);
      n.drift = k.driftBase + static_cast<double>(faultRng_.below(k.driftPermille)) / 1000.0;
      trace(kj::str("n", victim, " drift ", static_cast<uint64_t>(n.drift * 1000)).cStr());
      return;
    }
    case Fault::BitFlip:
    case Fault::LostWrite:
    case Fault::MisdirectedWrite:
      // Not while leaders are flaky: a damaged node sits out the elections (it cannot
      // vote until it caught up), and Figure 8's story needs every node to vote.
      if (q_.now() >= flakyUntil_) storageFault(f);
      return;
    case Fault::FsyncError: {
      if (!n.up) return;
      n.failNextFsync = true;
      return;
    }
    case Fault::IsolateLeader: isolateLeader(); return;
    default: return;
  }
}

void World::startTransfer() {
  for (auto& ln : nodes_) {
    if (!ln.up || ln.replica->raft().role() != Role::Leader || sc_.nodes == 1) continue;
    NodeId target = static_cast<NodeId>(faultRng_.between(1, slots()));
    if (target == ln.id) continue;
    lastTransferNs_ = q_.now();
    if (ln.replica->transferLeadership(target)) {
      ++result_.transfers;
      trace(kj::str("n", ln.id, " transfers leadership to n", target).cStr());
    }
    break;
  }
}

NodeId World::currentLeader() const {
  // The leader of the highest term: an older one may not know yet that it was deposed.
  NodeId leader = kNoNode;
  Term best = 0;
  for (auto& n : nodes_) {
    if (!n.up || n.replica->raft().role() != Role::Leader) continue;
    if (n.replica->raft().term() > best) {
      best = n.replica->raft().term();
      leader = n.id;
    }
  }
  return leader;
}

void World::healPartitionAfter(uint64_t delay, uint64_t gen) {
  if (gen == 0) gen = ++partitionGen_;
  q_.after(delay, [this, gen]() {
    // Only the partition it was scheduled for: a later one keeps its own duration.
    if (!chaos_ || gen != partitionGen_) return;
    unblockAll();
    trace("partition healed");
  });
}

void World::partitionFault(NodeId victim) {
  count(Fault::Partition);
  // 0 symmetric, 1 one-way out, 2 bridge, 3 (twice as likely) leader and a minority
  // for long, 4 one follower stops hearing the leader.
  uint32_t kind = static_cast<uint32_t>(faultRng_.below(6));
  if (kind == 5) kind = 3;
  unblockAll();
  if (kind == 4) {
    if (deafenFollower(victim)) return;
    kind = 1;
  }
  if (kind == 3) {
    // The leader and a minority, for several election timeouts, no crash: clients keep
    // using the old leader while the majority elects and serves through a new one.
    NodeId leader = currentLeader();
    if (leader != kNoNode && sc_.nodes >= 3) {
      cutOffLeader(leader, false);
      return;
    }
    kind = 0;
  }
  if (kind == 0) {
    // Symmetric split into two random sides.
    std::vector<bool> side(slots() + 1);
    for (uint32_t i = 1; i <= slots(); ++i) side[i] = faultRng_.chance(0.5);
    for (uint32_t a = 1; a <= slots(); ++a)
      for (uint32_t b = 1; b <= slots(); ++b) blocked_[a][b] = side[a] != side[b];
    trace("partition symmetric");
  } else if (kind == 1) {
    // One-way: the victim's messages to everyone are lost, theirs still arrive.
    for (uint32_t b = 1; b <= slots(); ++b) blocked_[victim][b] = b != victim;
    trace(kj::str("partition one-way from n", victim).cStr());
  } else {
    // Bridge: two sides that see only the victim, which sees both.
    std::vector<bool> side(slots() + 1);
    for (uint32_t i = 1; i <= slots(); ++i) side[i] = faultRng_.chance(0.5);
    for (uint32_t a = 1; a <= slots(); ++a)
      for (uint32_t b = 1; b <= slots(); ++b)
        blocked_[a][b] = a != victim && b != victim && side[a] != side[b];
    trace(kj::str("partition bridge via n", victim).cStr());
  }
  healPartitionAfter(kn_.nemesis.partitionHeal.draw(faultRng_));
}

void World::crashFault(NodeId victim) {
  // Half the time the nemesis goes for the leader: leadership changes are where
  // Raft's subtle rules (Figure 8, completeness) are exercised.
  if (faultRng_.chance(kn_.nemesis.crashLeaderP)) {
    for (auto& ln : nodes_) {
      if (ln.up && ln.replica->raft().role() == Role::Leader) victim = ln.id;
    }
  }
  Node& n = node(victim);
  if (!n.up) return;
  count(Fault::Crash);
  crashNode(n, "injected");
  q_.after(kn_.nemesis.crashRestart.draw(faultRng_), [this, victim]() {
    Node& n = node(victim);
    if (!n.up && !n.dead) startNode(n);
  });
}

void World::storageFault(Fault kind) {
  // Only the minority allowed to suffer storage damage: each damaged node recovers from
  // a leader, which a majority of undamaged nodes can always elect.
  NodeId v = static_cast<NodeId>(
      faultRng_.between(1, std::max<uint32_t>(1, (sc_.nodes - 1) / 2)));
  Node& cn = node(v);
  if (!cn.corruptible || cn.dead) return;
  // One damage per restart, on the files as they are while the node runs (whole
  // batches, no torn tail where a lost final write could hide). Two flips in one
  // record's two header copies, or a lost final write, cannot be told from a torn
  // write by any format (docs/STORAGE.md): the model leaves them out.
  if (!cn.up) return;
  bool done = kind == Fault::BitFlip     ? cn.store->flipBitAtRest(faultRng_)
              : kind == Fault::LostWrite ? cn.store->loseWriteAtRest(faultRng_)
                                         : cn.store->misdirectWriteAtRest(faultRng_);
  if (!done) return;
  count(kind);
  trace(kj::str("n", v, " ", faultName(kind), " at rest").cStr());
  // Restart it soon so recovery meets the flip.
  if (cn.up) crashNode(cn, "after bit flip");
  q_.after(kn_.nemesis.storageRestart.draw(faultRng_), [this, v]() {
    Node& n = node(v);
    if (!n.up && !n.dead) startNode(n);
  });
}

void World::isolateLeader() {
  // Figure 8's schedule, repeated: for a while every new leader is cut off with a
  // minority as soon as it takes office, so it appends only there, and usually dies.
  // Entries of several terms pile up on different minorities; a leader that later
  // commits one of them by counting replicas (not through an entry of its own term) is
  // crashed at once, so a rival holding a later-term entry there can overwrite it.
  //
  // Or, more often, once and for long: the leader and a minority are cut off for
  // several election timeouts while clients keep using it, and the majority elects and
  // serves through a new leader (reads on the old side must not see an old state).
  if (sc_.nodes < 3) return;
  count(Fault::IsolateLeader);
  bool flaky = faultRng_.chance(kn_.nemesis.flakyLeadersP);
  if (flaky) {
    flakyUntil_ = q_.now() + kn_.nemesis.flakyLeaders.draw(faultRng_);
    trace("nemesis: flaky leaders");
  }
  for (auto& ln : nodes_) {
    if (!ln.up || ln.replica->raft().role() != Role::Leader) continue;
    ln.wasLeader = true;  // watchLeaders must not cut it off a second time
    ln.leaderCommitSeen = ln.replica->raft().commitIndex();
    cutOffLeader(ln.id, flaky);
  }
}

bool World::deafenFollower(NodeId victim) {
  // The disruptive server (thesis §4.2.3, §9.6): a follower that no longer hears the
  // leader (one link lost one way) but talks to everyone else. Its election timer
  // fires; with the lease, its (pre-)votes must be refused while the leader is alive
  // and well. A workload lull keeps its log up to date, so only the lease stands
  // between it and a needless election.
  NodeId leader = currentLeader();
  if (leader == kNoNode || leader == victim || sc_.nodes < 3) return false;
  // Calm weather first, long enough that no earlier fault can explain an election,
  // then the one lost link, still in calm weather.
  uint64_t calmFor = disruptionWindow();
  uint64_t hold = kn_.nemesis.deafHoldTimeouts.draw(faultRng_) * sc_.electionTicks * kTickNs;
  uint64_t end = q_.now() + calmFor + hold;
  nemesisUntil_ = std::max(nemesisUntil_, end);
  calmUntil_ = std::max(calmUntil_, end);
  if (faultRng_.chance(kn_.nemesis.deafLullP)) quietUntil_ = std::max(quietUntil_, end);
  trace("nemesis: calm, then a lost link");
  q_.after(calmFor, [this, leader, victim, hold]() {
    if (!chaos_ || !node(leader).up) return;
    unblockAll();
    blocked_[leader][victim] = true;
    trace(kj::str("partition: n", victim, " no longer hears leader n", leader).cStr());
    healPartitionAfter(hold);
  });
  return true;
}

void World::cutOffLeader(NodeId leader, bool mayCrash) {
  KJ_ASSERT(sc_.nodes >= 3);
  std::vector<bool> side(slots() + 1, false);
  side[leader] = true;
  uint64_t inc = node(leader).incarnation;
  uint64_t gen = ++partitionGen_;
  const NemesisKnobs& k = kn_.nemesis;
  bool crash = mayCrash && sc_.faults.has(Fault::Crash) && faultRng_.chance(k.cutOffCrashP);
  // The leader's side stays a minority: at most (nodes - 1) / 2 nodes in all. A leader
  // kept alive gets at least one companion when there is room: its acks are what let a
  // deposed leader that skips the quorum check serve reads, and the companion's log is
  // the divergent suffix a later snapshot must replace.
  uint32_t room = (sc_.nodes - 1) / 2 - 1;
  uint32_t companions = static_cast<uint32_t>(faultRng_.below(room + 1));
  if (!crash && room > 0 && companions == 0) companions = 1;
  for (uint32_t k = 0; k < companions; ++k) {
    NodeId c = static_cast<NodeId>(faultRng_.between(1, sc_.nodes));
    while (side[c]) c = c % sc_.nodes + 1;  // distinct companions
    side[c] = true;
  }
  unblockAll();
  for (uint32_t a = 1; a <= slots(); ++a)
    for (uint32_t b = 1; b <= slots(); ++b) blocked_[a][b] = side[a] != side[b];
  trace(kj::str("partition: leader n", leader, " cut off with ", companions, " others").cStr());
  if (!crash) {
    // Clients on both sides: half keep using the old leader, half are near the
    // majority, which elects and serves through a new one.
    std::vector<NodeId> majority;
    for (NodeId id = 1; id <= slots(); ++id) {
      if (!side[id]) majority.push_back(id);
    }
    for (auto& c : clients_) {
      c.target = faultRng_.chance(k.cutOffClientsStayP)
                     ? leader
                     : majority[faultRng_.below(majority.size())];
    }
  }
  if (!crash && sc_.faults.has(Fault::ClockDrift) && faultRng_.chance(k.cutOffSlowClockP)) {
    // Its clock also runs slow (a VM starved of CPU, a timer source gone wrong), so its
    // check-quorum fires late: the window in which it still believes it leads overlaps
    // the new leader's term. Safety must not depend on clocks.
    Node& ln = node(leader);
    ln.drift = 1.0 + static_cast<double>(k.cutOffSlowClockPermille.draw(faultRng_)) / 1000.0;
    count(Fault::ClockDrift);
    trace(kj::str("n", leader, " drift ", static_cast<uint64_t>(ln.drift * 1000)).cStr());
  }
  // Crashing: soon, before its entries spread. Otherwise long enough for the majority
  // to elect someone else (its followers wait out the lease, then a randomized
  // timeout, then maybe a split vote) and serve while clients still talk to the old
  // leader.
  uint64_t hold = crash ? k.cutOffCrashAfter.draw(faultRng_)
                        : k.cutOffHoldTimeouts.draw(faultRng_) * sc_.electionTicks * kTickNs;
  if (!mayCrash) nemesisUntil_ = std::max(nemesisUntil_, q_.now() + hold);
  q_.after(hold, [this, leader, inc, crash, gen]() {
    if (!chaos_) return;
    Node& ln = node(leader);
    if (crash && ln.up && ln.incarnation == inc) {
      crashNode(ln, "cut-off leader");
      q_.after(kn_.nemesis.leaderRestart.draw(faultRng_), [this, leader]() {
        Node& n = node(leader);
        if (!n.up && !n.dead) startNode(n);
      });
    }
    if (!crash && faultRng_.chance(kn_.nemesis.cutOffSnapshotP)) {
      // The majority's leader compacts just before the heal: the old leader's
      // companions, whose logs hold a suffix of the old term, then need a snapshot that
      // ends inside that suffix (it must replace it, not keep it).
      for (auto& m : nodes_) {
        if (m.id != leader && m.up && m.replica->raft().role() == Role::Leader) {
          m.replica->requestSnapshot();
        }
      }
    }
    healPartitionAfter(kn_.nemesis.cutOffHealJitter.draw(faultRng_), gen);
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
      cutOffLeader(n.id, true);
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
        q_.after(kn_.nemesis.leaderRestart.draw(faultRng_), [this, id]() {
          Node& m = node(id);
          if (!m.up && !m.dead) startNode(m);
        });
      }
    }
  }
}

void World::replayToRestarted(NodeId id) {
  // Answers meant for the previous incarnation arriving at the new one (a peer's queue
  // flushed into the new connection): read answers, acks and votes it never asked for.
  auto& recent = recentTo_[id];
  // Often all of them, so an answer to an early request of the old incarnation (a read
  // index for its read 1) is among them.
  uint32_t n = static_cast<uint32_t>(faultRng_.chance(kn_.nemesis.replayAllP)
                                         ? recent.size()
                                         : faultRng_.below(recent.size() + 1));
  for (uint32_t k = 0; k < n; ++k) {
    auto& [from, bytes] = recent[faultRng_.below(recent.size())];
    count(Fault::Replay);
    uint64_t inc = node(from).incarnation;
    q_.after(kn_.nemesis.replayToRestartedLate.draw(faultRng_),
             [this, from = from, inc, id, b = bytes]() mutable {
               deliver(from, inc, id, std::move(b));
             });
  }
}

void World::healAll() {
  chaos_ = false;
  result_.chaosEndNs = q_.now();
  unblockAll();
  sc_.dropP = 0;
  sc_.duplicateP = 0;
  sc_.reorderP = 0;
  sc_.slowFsyncP = 0;
  trace("heal: liveness phase");
  if (sc_.faults.has(Fault::Crash) && sc_.nodes >= 3 &&
      faultRng_.chance(kn_.nemesis.powerOutageP)) {
    // A power outage ends the chaos: every node goes down at once and all come back
    // together, their clocks in step. Only randomized election timeouts get them out
    // of split votes from there (a fixed timeout livelocks).
    trace("power outage: all nodes restart together");
    for (auto& n : nodes_) {
      if (n.up) crashNode(n, "power outage");
    }
  }
  for (auto& n : nodes_) {
    n.pausedUntil = 0;
    n.failNextFsync = false;
    n.drift = 1.0;  // every fault stops, clock drift included
    if (!n.up && !n.dead) startNode(n);
  }
  livenessDeadline_ = q_.now() + kLivenessBudgetNs;
  leaderDeadline_ = q_.now() + kLeaderAfterHealTimeouts * 2 * sc_.electionTicks * kTickNs;
}

}  // namespace kvr::sim
