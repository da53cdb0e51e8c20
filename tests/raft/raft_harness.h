// A tiny in-memory cluster of kvr::Raft objects for unit tests: no replica, no storage.
// Ready.entries / hardState count as durable the moment they are taken (unless a node
// holds its writes), Ready.messages leave at once, Ready.afterPersist once the writes
// are durable. The network is one FIFO queue the test can inspect, filter and reorder.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/raft.h"

namespace kvr::test {

// Entries 1..n with the given terms (the way the Raft paper draws logs).
inline std::vector<Entry> logWithTerms(const std::vector<Term>& terms, Index first = 1) {
  std::vector<Entry> log;
  for (size_t i = 0; i < terms.size(); ++i) {
    log.push_back(
        Entry{terms[i], first + i, EntryKind::Command, "e" + std::to_string(first + i)});
  }
  return log;
}

inline RecoveredState recoveredWith(Term term, const std::vector<Term>& terms,
                                    Index commit = 0) {
  RecoveredState r;
  r.hardState.term = term;
  r.hardState.commit = commit;
  r.entries = logWithTerms(terms);
  return r;
}

inline ConfState votersUpTo(size_t n) {
  ConfState c;
  for (NodeId id = 1; id <= n; ++id) c.voters.push_back(id);
  return c;
}

class RaftCluster {
 public:
  struct Node {
    std::unique_ptr<Raft> raft;
    bool stopped = false;                   // neither ticks nor talks
    bool holdWrites = false;                // Ready writes stay non-durable until persist(id)
    std::optional<Entry> heldTail;          // last entry handed over but not yet durable
    std::vector<Message> heldAfterPersist;  // waiting for the held writes
    std::vector<ReadState> reads;
    std::vector<Entry> applied;  // committed entries handed out, in order
    std::vector<Snapshot> snapshotsInstalled;
    size_t snapshotsWanted = 0;  // takeSnapshotWanted() answers it acted on
    size_t readies = 0;
    // Storage: what survives a crash, and the writes handed over but not yet synced.
    RecoveredState durable;
    std::vector<Ready> unsynced;  // only the write parts are kept
    uint32_t restarts = 0;
    std::optional<ConfState> bootConf;  // a node added later: its starting configuration
  };

  explicit RaftCluster(size_t n, RaftConfig base = {},
                       std::map<NodeId, RecoveredState> recovered = {}, uint64_t seed = 1)
      : base_(base), seed_(seed), conf_(votersUpTo(n)) {
    for (NodeId id = 1; id <= n; ++id) {
      Node& n = nodes_[id];
      if (auto it = recovered.find(id); it != recovered.end()) n.durable = it->second;
      start(id);
    }
  }

  Raft& operator[](NodeId id) { return *node(id).raft; }
  Node& node(NodeId id) {
    auto it = nodes_.find(id);
    KJ_REQUIRE(it != nodes_.end(), "no such node", id);
    return it->second;
  }
  size_t size() const { return nodes_.size(); }

  // ---- network control
  std::deque<Message> inflight;                // sent, not yet delivered (FIFO)
  std::vector<Message> sent;                   // every message that left a node
  std::vector<Message> delivered;              // every message stepped into a node
  std::set<NodeId> isolated;                   // drop everything to or from these
  std::set<std::pair<NodeId, NodeId>> cut;     // drop (from, to)
  std::function<bool(const Message&)> dropIf;  // extra loss: true = drop
  uint64_t droppedByNetwork = 0;
  std::function<void(NodeId, const Ready&)> onReady;  // sees every Ready before the host acts

  void isolate(NodeId id) { isolated.insert(id); }
  // Cuts every link between the two groups, both ways.
  void partition(const std::vector<NodeId>& a, const std::vector<NodeId>& b) {
    for (NodeId x : a) {
      for (NodeId y : b) {
        cut.insert({x, y});
        cut.insert({y, x});
      }
    }
  }
  void heal() {
    isolated.clear();
    cut.clear();
    dropIf = nullptr;
  }
  void stop(NodeId id) { node(id).stopped = true; }
  void restart(NodeId id) { node(id).stopped = false; }

  // Crash: unsynced writes and unsent messages are lost; the node is down until reboot().
  void crash(NodeId id) {
    Node& n = node(id);
    n.stopped = true;
    n.unsynced.clear();
    n.heldTail.reset();
    n.heldAfterPersist.clear();
  }
  // A fresh Raft object from what the node's storage holds.
  void reboot(NodeId id) {
    ++node(id).restarts;
    start(id);
    node(id).stopped = false;
  }

  // Takes a local snapshot at the node's applied index, like a host would.
  void compact(NodeId id, std::string data) {
    Node& n = node(id);
    Raft& r = *n.raft;
    Index at = r.appliedIndex();
    if (at <= r.snapshotIndex()) return;
    Snapshot snap;
    snap.meta.index = at;
    snap.meta.term = *r.termAt(at);
    snap.meta.conf = r.confAt(at);
    snap.data = std::make_shared<const std::string>(std::move(data));
    r.compacted(snap);
    auto& log = n.durable.entries;
    log.erase(log.begin(), std::find_if(log.begin(), log.end(),
                                        [at](const Entry& e) { return e.index > at; }));
    n.durable.snapshot = std::move(snap);
  }

  // ---- driving
  // Drains one node's Ready and acts on it like a host with instant storage.
  void pump(NodeId id) {
    Node& n = node(id);
    if (!n.raft->hasReady()) return;
    Ready rd = n.raft->takeReady();
    ++n.readies;
    if (onReady) onReady(id, rd);
    if (rd.snapshot) n.snapshotsInstalled.push_back(*rd.snapshot);
    for (auto& m : rd.messages) post(std::move(m));
    if (!rd.entries.empty()) n.heldTail = rd.entries.back();
    if (rd.mustPersist()) {
      Ready w;
      w.hardState = rd.hardState;
      w.snapshot = rd.snapshot;
      w.entries = rd.entries;
      n.unsynced.push_back(std::move(w));
    }
    for (auto& m : rd.afterPersist) n.heldAfterPersist.push_back(std::move(m));
    if (!n.holdWrites) persist(id);
    for (auto& r : rd.readStates) n.reads.push_back(r);
    if (!rd.committed.empty()) {
      for (auto& e : rd.committed) n.applied.push_back(e);
      n.raft->applied(rd.committed.back().index);
    }
    // A member needs entries whose payloads this log released: snapshot, like Replica.
    if (n.raft->takeSnapshotWanted()) {
      ++n.snapshotsWanted;
      compact(id, "wanted at " + std::to_string(n.raft->appliedIndex()));
    }
  }

  // Makes everything a node was handed durable and releases what waited for it.
  void persist(NodeId id) {
    Node& n = node(id);
    std::optional<HardState> hs;
    for (auto& w : n.unsynced) {
      sync(n.durable, w);
      if (w.hardState) hs = w.hardState;
    }
    n.unsynced.clear();
    if (n.heldTail) {
      n.raft->persisted(n.heldTail->index, n.heldTail->term);
      n.heldTail.reset();
    }
    if (hs) n.raft->persistedHardState(*hs);
    auto msgs = std::move(n.heldAfterPersist);
    n.heldAfterPersist.clear();
    for (auto& m : msgs) post(std::move(m));
  }

  void pumpAll() {
    for (auto& [id, n] : nodes_) {
      if (!n.stopped) pump(id);
    }
  }

  // Delivers (or drops) every message that is in flight now; replies queue behind.
  void deliverAll() {
    size_t count = inflight.size();
    for (size_t i = 0; i < count; ++i) {
      Message m = std::move(inflight.front());
      inflight.pop_front();
      deliver(std::move(m));
    }
  }

  void deliver(Message m) {
    if (dropped(m)) {
      ++droppedByNetwork;
      return;
    }
    auto it = nodes_.find(m.to);
    if (it == nodes_.end() || it->second.stopped) {
      ++droppedByNetwork;
      return;
    }
    delivered.push_back(m);
    it->second.raft->step(std::move(m));
  }

  bool quiet() const {
    if (!inflight.empty()) return false;
    for (auto& [id, n] : nodes_) {
      if (!n.stopped && n.raft->hasReady()) return false;
    }
    return true;
  }

  // Pumps and delivers until nothing moves. Leaders only heartbeat on ticks, so a
  // cluster without ticks always falls quiet.
  void settle() {
    for (int round = 0; round < 10'000; ++round) {
      pumpAll();
      if (inflight.empty()) {
        if (quiet()) return;
        continue;
      }
      deliverAll();
    }
    ADD_FAILURE() << "cluster did not fall quiet in 10000 rounds";
  }

  void tick(NodeId id, int times = 1) {
    for (int i = 0; i < times; ++i) {
      if (!node(id).stopped) node(id).raft->tick();
    }
  }
  void tickAll() {
    for (auto& [id, n] : nodes_) {
      if (!n.stopped) n.raft->tick();
    }
  }
  // One tick of every live node, then everything settles.
  void tickAllAndSettle(int times = 1) {
    for (int i = 0; i < times && !::testing::Test::HasFatalFailure(); ++i) {
      tickAll();
      settle();
    }
  }

  // Ticks `id` alone until it starts campaigning, then lets the election run.
  void campaign(NodeId id) {
    Raft& r = (*this)[id];
    for (int i = 0; i < 1000 && r.role() == Role::Follower; ++i) r.tick();
    settle();
  }
  // Elects `id` and lets its no-op commit everywhere reachable.
  void elect(NodeId id) {
    campaign(id);
    ASSERT_EQ((*this)[id].role(), Role::Leader) << "node " << id << " failed to win";
    settleCommit(id);
  }

  // Settles, then one tick of `leader` tells the followers that no Append told the new
  // commit index (Raft::notifyCommit), and that settles too.
  void settleCommit(NodeId leader) {
    settle();
    tick(leader);
    settle();
  }

  // The leaders of the highest term any node believes it leads in.
  std::vector<NodeId> leaders() const {
    std::vector<NodeId> out;
    for (auto& [id, n] : nodes_) {
      if (n.raft->role() == Role::Leader) out.push_back(id);
    }
    return out;
  }

  std::optional<ReadState> readFor(NodeId id, uint64_t context) {
    for (auto& r : node(id).reads) {
      if (r.context == context) return r;
    }
    return std::nullopt;
  }

  size_t countSent(const std::function<bool(const Message&)>& pred) const {
    size_t c = 0;
    for (auto& m : sent) c += pred(m) ? 1 : 0;
    return c;
  }
  size_t countDelivered(const std::function<bool(const Message&)>& pred) const {
    size_t c = 0;
    for (auto& m : delivered) c += pred(m) ? 1 : 0;
    return c;
  }

  // The in-memory log of a node from firstIndex() to lastIndex(); an entry whose payload
  // the log released (Raft::payloadFloor) gets back the payload the node applied there.
  std::vector<Entry> logOf(NodeId id) {
    Raft& r = (*this)[id];
    const auto& applied = node(id).applied;
    std::vector<Entry> log;
    for (Index i = r.firstIndex(); i <= r.lastIndex(); ++i) {
      Entry e = *r.entryAt(i);
      if (e.kind == EntryKind::Command && i <= r.payloadFloor()) {
        auto it = std::find_if(applied.rbegin(), applied.rend(), [&](const Entry& a) {
          return a.index == i && a.term == e.term;
        });
        KJ_ASSERT(it != applied.rend(), "released an entry it never applied", i);
        e.data = it->data;
      }
      log.push_back(std::move(e));
    }
    return log;
  }

  // A new, empty node that starts from `conf` (the configuration that adds it).
  void addNode(NodeId id, const ConfState& conf) {
    KJ_REQUIRE(nodes_.count(id) == 0, "node exists", id);
    Node& n = nodes_[id];
    n.bootConf = conf;
    start(id);
  }
  ConfChangeError change(NodeId leader, ConfChangeType type, NodeId id) {
    ConfChange cc{type, id, "raft" + std::to_string(id), "client" + std::to_string(id)};
    return (*this)[leader].proposeConfChange(cc, nullptr);
  }

  ProposeError propose(NodeId id, std::string data, Index* index = nullptr) {
    return (*this)[id].propose(std::move(data), index);
  }

 private:
  void start(NodeId id) {
    Node& n = node(id);
    RaftConfig c = base_;
    c.id = id;
    n.raft = std::make_unique<Raft>(c, Rng(seed_ * 1000 + id + 7919 * n.restarts),
                                    n.bootConf ? *n.bootConf : conf_, n.durable);
  }
  static void sync(RecoveredState& d, const Ready& w) {
    if (w.snapshot) {
      d.snapshot = *w.snapshot;
      d.entries.clear();
    }
    if (!w.entries.empty()) {
      Index first = w.entries.front().index;
      while (!d.entries.empty() && d.entries.back().index >= first) d.entries.pop_back();
      d.entries.insert(d.entries.end(), w.entries.begin(), w.entries.end());
    }
    if (w.hardState) d.hardState = *w.hardState;
  }

  void post(Message m) {
    sent.push_back(m);
    inflight.push_back(std::move(m));
  }
  bool dropped(const Message& m) const {
    if (isolated.count(m.from) || isolated.count(m.to)) return true;
    if (cut.count({m.from, m.to})) return true;
    return dropIf && dropIf(m);
  }

  RaftConfig base_;
  uint64_t seed_;
  ConfState conf_;
  std::map<NodeId, Node> nodes_;
};

inline bool isType(const Message& m, MsgType t) { return m.type == t; }

}  // namespace kvr::test
