// The interaction environment behind tests/raft/interaction/testdata/*.txt: a cluster of
// real kvr::Raft objects driven one input at a time by the commands of a data-driven
// file, every step printed in a stable, compact form. See README.md ("Raft interaction
// tests") for the command list.
//
// The host it plays is deliberately slow and explicit: a Ready's writes go to an
// "unsynced" list and become durable only on `persist` (or inside `stabilize`), its
// `now` messages go to one FIFO network queue, its `afterPersist` messages wait for the
// next `persist` of that node, and nothing is delivered until `deliver-msgs` says so.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/raft.h"
#include "tests/raft/interaction/datadriven.h"

namespace kvr::test {

class InteractionEnv {
 public:
  // Runs one command and returns its output.
  std::string handle(const dd::Command& c);

  // Formatting, shared with nothing else but kept public for reuse.
  static std::string fmtEntry(const Entry& e);
  static std::string fmtEntries(const std::vector<Entry>& es);
  static std::string fmtMessage(const Message& m);
  static std::string fmtHardState(const HardState& hs);

 private:
  // Writes handed to storage by one Ready, not yet durable, and what waits for them.
  struct Batch {
    std::optional<HardState> hardState;
    std::optional<Snapshot> snapshot;
    std::vector<Entry> entries;
    std::vector<Message> afterPersist;
  };
  struct Node {
    NodeId id = kNoNode;
    std::unique_ptr<Raft> raft;
    bool down = false;
    uint32_t restarts = 0;
    RecoveredState durable;
    std::deque<Batch> unsynced;
    // A toy state machine: the data of applied commands, joined by ','.
    std::string smBase;  // from the snapshot it started from
    Index smBaseIndex = 0;
    std::vector<std::pair<Index, std::string>> smApplied;
    // What was last printed about the node, to print changes only.
    Role shownRole = Role::Follower;
    Term shownTerm = 0;
    NodeId shownLeader = kNoNode;
  };
  struct Error {
    std::string what;
  };

  // commands
  std::string cmdAddNodes(const dd::Command& c);
  std::string cmdSetState(const dd::Command& c);
  std::string cmdCampaign(const dd::Command& c);
  std::string cmdPropose(const dd::Command& c);
  std::string cmdTick(const dd::Command& c, bool all);
  std::string cmdDeliver(const dd::Command& c);
  std::string cmdMsgs(const dd::Command& c);
  std::string cmdProcessReady(const dd::Command& c);
  std::string cmdPersist(const dd::Command& c);
  std::string cmdStabilize(const dd::Command& c);
  std::string cmdPartition(const dd::Command& c);
  std::string cmdCrash(const dd::Command& c);
  std::string cmdRestart(const dd::Command& c);
  std::string cmdReadIndex(const dd::Command& c);
  std::string cmdTransfer(const dd::Command& c);
  std::string cmdStatus(const dd::Command& c);
  std::string cmdLog(const dd::Command& c);
  std::string cmdStorage(const dd::Command& c);
  std::string cmdState(const dd::Command& c);
  std::string cmdCompact(const dd::Command& c);

  // steps, each appending what it printed to `out`
  void processReady(Node& n, std::string& out);
  void persist(Node& n, std::string& out);
  // Delivers (or drops) the queued messages selected by `select`; returns how many left
  // the queue.
  size_t deliver(const std::function<bool(const Message&)>& select,
                 const std::set<NodeId>& dropTo, std::string& out);
  void noteChanges(Node& n, const std::string& indent, std::string& out);

  // helpers
  Node& node(NodeId id);
  Node& upNode(NodeId id);
  NodeId parseId(const std::string& s);
  std::vector<NodeId> parseIds(const dd::Command& c, bool allIfNone);
  uint64_t parseNumber(const std::string& s, const char* what);
  void start(Node& n);
  void resetStateMachine(Node& n);
  std::string stateMachineAt(const Node& n, Index index) const;
  std::string statusLine(Node& n);
  std::string fmtLogTerms(const std::vector<Entry>& log, Index snapIndex, Term snapTerm,
                          bool hasSnap) const;
  bool linkCut(NodeId from, NodeId to) const;

  RaftConfig config_;
  uint64_t seed_ = 1;
  ConfState conf_;
  std::map<NodeId, Node> nodes_;
  std::deque<Message> network_;      // sent, not yet delivered, in send order
  std::map<NodeId, int> partition_;  // node -> group; empty = no partition
};

}  // namespace kvr::test
