#include "sim/checker.h"

#include <kj/debug.h>
#include <kj/string.h>

#include "core/hash.h"

namespace kvr::sim {

bool Checker::isCommitted(const Entry& entry) const {
  auto it = committed_.find(entry.index);
  return it != committed_.end() && it->second.id == EntryId{entry.term, hashBytes(entry.data)};
}

bool Checker::isCommitted(const Raft& raft, Index index) const {
  const Entry* e = raft.entryAt(index);
  if (e == nullptr) return false;
  auto it = committed_.find(index);
  return it != committed_.end() && it->second.id == idOf(raft, *e);
}

Checker::EntryId Checker::idOf(const Raft& raft, const Entry& e) const {
  if (e.kind != EntryKind::Command || e.index > raft.payloadFloor()) {
    return EntryId{e.term, hashBytes(e.data)};
  }
  auto it = applied_.find(e.index);
  if (it != applied_.end() && it->second.term == e.term) return it->second;
  return EntryId{e.term, std::nullopt};
}

uint64_t hashBytes(std::string_view bytes) { return hash64(bytes); }

Checker::Checker(uint32_t nodes) : nodes_(nodes) {}

void Checker::fail(std::string property, std::string detail) {
  if (!violation_) violation_ = Violation{std::move(property), std::move(detail)};
}

void Checker::afterEvent(const std::vector<const Replica*>& replicas) {
  for (size_t i = 0; i < replicas.size() && !violation_; ++i) {
    if (replicas[i] != nullptr) checkNode(static_cast<NodeId>(i + 1), replicas[i]->raft());
  }
}

void Checker::afterEvent(const std::vector<const Raft*>& rafts) {
  for (size_t i = 0; i < rafts.size() && !violation_; ++i) {
    if (rafts[i] != nullptr) checkNode(static_cast<NodeId>(i + 1), *rafts[i]);
  }
}

void Checker::checkNode(NodeId id, const Raft& raft) {
  NodeState& ns = nodes_[id - 1];
  if (raft.role() == Role::Leader) {
    auto [it, inserted] = leaders_.emplace(raft.term(), id);
    if (!inserted && it->second != id) {
      fail("election_safety",
           kj::str("nodes ", it->second, " and ", id, " both led term ", raft.term()).cStr());
      return;
    }
    if (ns.leaderTermChecked != raft.term()) {
      ns.leaderTermChecked = raft.term();
      checkLeaderCompleteness(id, raft);
    }
  }
  // Newly committed entries on this node join the global committed record, which
  // they must agree with.
  Index commit = raft.commitIndex();
  if (commit < ns.checkedCommit) ns.checkedCommit = 0;  // restarted node
  for (Index idx = std::max(ns.checkedCommit + 1, raft.firstIndex()); idx <= commit; ++idx) {
    const Entry* e = raft.entryAt(idx);
    if (e == nullptr) continue;
    EntryId eid = idOf(raft, *e);
    auto [it, inserted] = committed_.emplace(idx, CommittedEntry{eid, raft.term()});
    if (!inserted && !(it->second.id == eid)) {
      fail("committed_entry_lost",
           kj::str("node ", id, " committed index ", idx, " with term ", e->term, " but term ",
                   it->second.id.term, " was committed there before")
               .cStr());
      return;
    }
  }
  ns.checkedCommit = commit;
}

void Checker::checkLeaderCompleteness(NodeId id, const Raft& raft) {
  // Every entry committed in an earlier term must be in the new leader's log (Raft §5.4).
  // (A leader of an old term can still take office late, from delayed votes.)
  for (auto& [idx, ce] : committed_) {
    const EntryId& eid = ce.id;
    if (ce.commitTerm >= raft.term()) continue;
    if (idx < raft.firstIndex()) continue;  // compacted into its snapshot
    const Entry* e = raft.entryAt(idx);
    if (e == nullptr || !(idOf(raft, *e) == eid)) {
      fail("leader_completeness",
           kj::str("node ", id, " leads term ", raft.term(), " without committed entry ", idx,
                   " (term ", eid.term, ")")
               .cStr());
      return;
    }
  }
}

void Checker::fullCheck(const std::vector<const Replica*>& replicas) {
  for (size_t i = 0; i < replicas.size() && !violation_; ++i) {
    if (replicas[i] == nullptr) continue;
    const Raft& a = replicas[i]->raft();
    NodeId ida = static_cast<NodeId>(i + 1);
    // Committed entries never change or vanish from a log that still holds them.
    for (auto& [idx, ce] : committed_) {
      const EntryId& eid = ce.id;
      if (idx < a.firstIndex()) continue;
      if (idx > a.lastIndex()) break;
      const Entry* e = a.entryAt(idx);
      if (idx <= a.commitIndex() && !(idOf(a, *e) == eid)) {
        fail("committed_entry_lost",
             kj::str("node ", ida, " holds term ", e->term, " at committed index ", idx,
                     " (expected term ", eid.term, ")")
                 .cStr());
        return;
      }
    }
    // Log matching: if two logs hold an entry with the same index and term, they are
    // identical in all entries up to it.
    for (size_t j = i + 1; j < replicas.size(); ++j) {
      if (replicas[j] == nullptr) continue;
      const Raft& b = replicas[j]->raft();
      Index lo = std::max(a.firstIndex(), b.firstIndex());
      Index hi = std::min(a.lastIndex(), b.lastIndex());
      bool matched = false;  // scanning down: once a matching (index, term) is seen
      for (Index idx = hi; idx >= lo && idx > 0; --idx) {
        const Entry* ea = a.entryAt(idx);
        const Entry* eb = b.entryAt(idx);
        if (ea->term == eb->term) {
          matched = true;
          // Payloads compared as bytes while both logs hold them (no hashing per full
          // check); by the hash recorded at apply once either released its own.
          const bool held = idx > a.payloadFloor() && idx > b.payloadFloor();
          const bool same = held ? ea->data == eb->data : idOf(a, *ea) == idOf(b, *eb);
          if (ea->kind != eb->kind || !same) {
            fail("log_matching", kj::str("nodes ", ida, " and ", j + 1, " hold different ",
                                         "entries at index ", idx, " term ", ea->term)
                                     .cStr());
            return;
          }
        } else if (matched) {
          fail("log_matching", kj::str("nodes ", ida, " and ", j + 1, " agree above index ",
                                       idx, " but differ at it")
                                   .cStr());
          return;
        }
      }
    }
  }
}

void Checker::onApply(NodeId node, const Entry& entry, const KvReply* reply, uint64_t effects) {
  if (violation_) return;
  EntryId eid{entry.term, hashBytes(entry.data)};
  auto [it, inserted] = applied_.emplace(entry.index, eid);
  if (!inserted && !(it->second == eid)) {
    fail("state_machine_safety",
         kj::str("node ", node, " applied term ", entry.term, " at index ", entry.index,
                 "; another node applied term ", it->second.term, " there")
             .cStr());
    return;
  }
  if (entry.kind != EntryKind::Command || reply == nullptr) return;
  KvCommand cmd;
  if (!decodeCommand(entry.data, &cmd)) {
    fail("state_machine_safety",
         kj::str("node ", node, " applied an undecodable entry at ", entry.index).cStr());
    return;
  }
  if (cmd.op == OpType::OpenSession) return;
  auto& last = nodes_[node - 1].lastRequest;
  auto lit = last.find(cmd.clientId);
  bool duplicate = lit != last.end() && cmd.requestId <= lit->second;
  if (duplicate && effects != 0) {
    fail("at_most_once", kj::str("node ", node, " applied request ", cmd.requestId,
                                 " of client ", cmd.clientId, " again at index ", entry.index)
                             .cStr());
    return;
  }
  if (!duplicate && reply->status != Status::SessionExpired) last[cmd.clientId] = cmd.requestId;
}

void Checker::onState(NodeId node, Index index, uint64_t digest, const char* when) {
  if (violation_ || index == 0) return;
  auto [it, inserted] = digests_.emplace(index, std::make_pair(digest, node));
  if (!inserted && it->second.first != digest) {
    fail("replica_divergence",
         kj::str("node ", node, "'s state after index ", index, " (", when,
                 ") differs from node ", it->second.second, "'s at the same index")
             .cStr());
  }
}

void Checker::onRestart(NodeId node, Index) {
  // The node rebuilds its state from its snapshot and replays from there; its
  // per-client record is rebuilt by the replays (snapshot state included via dedup).
  nodes_[node - 1] = NodeState{};
}

}  // namespace kvr::sim
