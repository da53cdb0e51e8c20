// Safety invariants checked while a cluster runs (the simulator calls these on every
// event; property tests on their own harness too). The first violation is kept.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/replica.h"

namespace kvr::sim {

struct Violation {
  std::string property;  // e.g. "election_safety"
  std::string detail;
};

class Checker {
 public:
  explicit Checker(uint32_t nodes);

  // After every event: `replicas[i]` is node i+1, or nullptr while it is down.
  void afterEvent(const std::vector<const Replica*>& replicas);
  // The same over bare Raft state machines (for tests without replicas): `rafts[i]` is
  // node i+1, or nullptr while it is down.
  void afterEvent(const std::vector<const Raft*>& rafts);
  // Pairwise log matching and committed-prefix checks over whole logs (costlier).
  void fullCheck(const std::vector<const Replica*>& replicas);
  // Every applied entry, from the replica's apply observer. `effects` is the KV
  // store's effect counter after the apply minus before.
  void onApply(NodeId node, const Entry& entry, const KvReply* reply, uint64_t effects);
  // A node's KV state (data and sessions) at applied index `index` has digest
  // `digest`: the first one seen at an index is the reference every later one must equal.
  void onState(NodeId node, Index index, uint64_t digest, const char* when);
  // A node restarted from its disk: it will re-apply from its snapshot.
  void onRestart(NodeId node, Index snapshotIndex);

  const std::optional<Violation>& violation() const { return violation_; }
  bool failed() const { return violation_.has_value(); }
  Index maxCommitted() const { return committed_.empty() ? 0 : committed_.rbegin()->first; }
  // Whether the entry at `index` of `raft`'s log is the entry known committed there.
  bool isCommitted(const Raft& raft, Index index) const;
  // Whether `entry` (with its payload) is the entry known committed at its index.
  bool isCommitted(const Entry& entry) const;
  // The term of the entry known committed at `index` (0: none known).
  Term committedTerm(Index index) const {
    auto it = committed_.find(index);
    return it == committed_.end() ? 0 : it->second.id.term;
  }

 private:
  // An entry's term and payload hash. The hash is unknown for an entry whose payload its
  // log released (Raft::payloadFloor) before this node's apply was seen; it then matches
  // on the term alone (onApply compared its payload when it was applied).
  struct EntryId {
    Term term;
    std::optional<uint64_t> hash;
    bool operator==(const EntryId& o) const {
      return term == o.term && (!hash || !o.hash || *hash == *o.hash);
    }
  };
  struct CommittedEntry {
    EntryId id;
    Term commitTerm;  // term of the first node seen holding it committed (>= the real one)
  };
  struct NodeState {
    Index checkedCommit = 0;
    Term leaderTermChecked = 0;
    std::map<uint64_t, uint64_t> lastRequest;  // client -> highest request id applied
  };

  void fail(std::string property, std::string detail);
  void checkNode(NodeId id, const Raft& raft);
  void checkLeaderCompleteness(NodeId id, const Raft& raft);
  // The id of `e`, an entry of `raft`'s log: for one whose payload it released, the hash
  // of what was applied at its index, if that had its term.
  EntryId idOf(const Raft& raft, const Entry& e) const;

  std::vector<NodeState> nodes_;
  std::map<Term, NodeId> leaders_;
  std::map<Index, CommittedEntry> committed_;  // every entry known committed
  std::map<Index, EntryId> applied_;           // what was applied at each index (any node)
  std::map<Index, std::pair<uint64_t, NodeId>> digests_;  // state digest after each index
  std::optional<Violation> violation_;
};

uint64_t hashBytes(std::string_view bytes);

}  // namespace kvr::sim
