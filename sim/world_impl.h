// The simulated world's internals, shared by world.cc (nodes, network, clients, the
// run), nemesis.cc (the fault schedule) and world_checks.cc (checks made from outside
// the nodes). Not for use outside sim/.
#pragma once

#include "sim/world.h"

#include <deque>
#include <fstream>
#include <map>
#include <memory>

#include "core/hash.h"
#include "sim/disk_store.h"
#include "sim/mem_store.h"
#include "sim/timeline.h"

namespace kvr::sim {

namespace world {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kTickNs = 10 * kMs;
constexpr uint64_t kClusterId = 0x6b767261667431ull;
constexpr uint64_t kClientTimeoutNs = 400 * kMs;
constexpr uint64_t kHurriedClientTimeoutNs = 50 * kMs;
constexpr uint32_t kMaxAttemptsInChaos = 40;
constexpr uint64_t kLivenessBudgetNs = 60'000 * kMs;  // a healed cluster must finish within
constexpr uint64_t kFullCheckEvery = 512;
constexpr uint64_t kMaxChaosNs = 120'000 * kMs;  // chaos ends by then even if ops remain
// After healing, a leader must exist within this many of the longest election timeouts
// (a randomized timeout is at most 2 x electionTicks ticks). Generous: with a minority
// dead and a stale log among the rest, an election may need a few rounds.
constexpr uint64_t kLeaderAfterHealTimeouts = 30;
constexpr uint64_t kMaxEventsPerRun = 4'000'000;  // a run past this is a hang, not a verdict
// Events can be expensive (an Append of hundreds of entries bounced back and forth): the
// bytes put on the wire are budgeted too.
constexpr uint64_t kMaxWireBytesPerRun = 256ull << 20;
// A healthy cluster runs a few thousand events per simulated 10 ms.
constexpr uint64_t kStormWindowNs = 10 * kMs;
constexpr size_t kRecentPerNode = 32;    // messages kept per node for replay after a restart
constexpr size_t kReadAnswersKept = 64;  // read answers kept per node, by read id
constexpr uint64_t kMaxEventsPerStormWindow = 200'000;

}  // namespace world

using namespace world;  // NOLINT: the constants above are the world's vocabulary

class World {
 public:
  World(const Scenario& sc, const RunOptions& opts);
  RunResult run();
  // What is known of a run that stopped on an exception.
  // Writes the timeline page when RunOptions::timelinePath is set; a violation found
  // outside fail() (an exception) is marked from `result`.
  void writeTimeline(const RunResult& result);
  RunResult partialResult() {
    result_.simNs = q_.now();
    result_.events = q_.executed();
    result_.failedAtEvent = q_.executed();
    result_.traceHash = traceHash_;
    result_.probes = ProbeCounts::global().snapshot();
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
    // The node's store reads its snapshot files back (DiskStore; MemStore keeps none).
    SnapshotReader* snapshotReader() override {
      return world_.node(id_).store->snapshotReader();
    }

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
    double drift = 1.0;  // tick period multiplier
    bool flushScheduled = false;
    bool flushing = false;
    bool failNextFsync = false;
    uint64_t restartAt = 0;
    NodeId persistedVote = kNoNode;  // last vote handed to storage
    Term persistedTerm = 0;
    bool voteInFlush = false;        // the queued writes carry a new vote
    uint64_t fragileVotesUntil = 0;  // lone-voter story: vote flushes slow, often cut
    // The hard state its storage reported durable, and those handed over but not yet
    // durable (by batch seq): a leader's own vote must be durable (vote_durability).
    HardState durableHardState;
    std::deque<std::pair<uint64_t, HardState>> hardStatesInFlight;
    Index appliedSeen = 0;    // applied index after the last observed apply
    bool wasLeader = false;   // for the flaky-leader nemesis
    uint64_t lostOutbox = 0;  // messages sent by this incarnation are lost
    Index leaderCommitSeen = 0;
    // The highest committed entry its disk held durably at its last crash: a restart
    // that is not recovering must still hold it (durability).
    Index durableCommittedFloor = 0;
    bool recovering = false;  // its Raft was recovering at the last check
    // Membership: a spare slot is `dead` until it joins; a removed node is destroyed
    // (dead for good) a while after its removal commits, and its id is never reused.
    bool joined = false;
    bool removed = false;
    ConfState bootConf;         // a joining node's configuration; empty: the initial voters
    Index quorumCheckedTo = 0;  // commit index up to which the leader's quorum was checked
    Term quorumTerm = 0;        // the term quorumCheckedTo belongs to
  };
  struct Client {
    uint32_t id = 0;
    uint64_t session = 0;
    uint64_t nextRequest = 1;
    NodeId target = 1;
    bool sticky = false;  // after a timeout, retries the same node
    bool busy = false;
    bool opening = false;  // the current request opens a session
    KvCommand cmd;
    History::OpId hop = 0;
    uint64_t attemptSeq = 0;  // replies to older attempts are ignored
    uint32_t attempts = 0;
    bool finalRead = false;
  };

  // nodes
  void startNode(Node& n);
  void crashNode(Node& n, const char* why);
  // The highest entry of n's durable log (or its snapshot) the checker knows committed.
  Index durableCommittedIndex(const Node& n) const;
  // Starts the node again after `delay`, unless it is up by then or gone for good.
  void restartAfter(NodeId id, uint64_t delay) {
    q_.after(delay, [this, id]() {
      Node& n = node(id);
      if (!n.up && !n.dead) startNode(n);
    });
  }
  void scheduleTick(Node& n);
  void persist(NodeId id, PersistBatch&& batch);
  void scheduleFlush(Node& n);
  void flush(Node& n, uint64_t incarnation);
  Node& node(NodeId id) { return nodes_[id - 1]; }
  bool reachable(NodeId from, NodeId to) const;
  void unblockAll() {
    for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
  }

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
  // How long before an election a fault can still explain it (checkDisruption).
  uint64_t disruptionWindow() const { return 2 * 3 * sc_.electionTicks * kTickNs + 500 * kMs; }
  bool quietSince(NodeId id, uint64_t since) const;
  void checkPersistenceRule(NodeId from, const Message& m);
  // A linearizable read must see every entry committed before it arrived: the state it
  // is answered from (the server's applied index) must reach `committedAtArrival`.
  void checkReadServer(NodeId server, Index committedAtArrival, History::OpId op);
  void checkRecoveryEnd(Node& n);
  void checkSnapshotConf(NodeId id, const SnapshotMeta& meta);
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
  void scheduleFault(uint64_t delay);
  void injectFault();
  void startTransfer();
  void partitionFault(NodeId victim);
  void crashFault(NodeId victim);
  void storageFault(Fault kind);  // bit flip, lost or misdirected write at rest
  void healAll();
  void isolateLeader();
  void cutOffLeader(NodeId leader, bool mayCrash);
  bool deafenFollower(NodeId victim);
  NodeId currentLeader() const;
  // Ends the partition made last (generation `gen`, or a new one) after `delay`.
  void healPartitionAfter(uint64_t delay, uint64_t gen = 0);
  void watchLeaders();
  void count(Fault f) {
    ++result_.faults[static_cast<size_t>(f)];
    if (timeline_) markOnTimeline(f);
  }
  void markOnTimeline(Fault f);
  // membership (sim/membership.cc)
  uint32_t slots() const { return sc_.nodes + sc_.spares; }
  void scheduleMembership();
  void membershipStep();
  bool startMembershipStory(NodeId leader, const ConfState& conf);
  void tryBadChange(Replica& leader, const ConfState& conf);
  void joinNode(NodeId id, const ConfState& conf);
  void retireNode(NodeId id);
  bool isVoterNow(NodeId id) const;  // in the current leader's configuration
  void checkCommitQuorum(Node& leader);
  bool startConfRace(NodeId leader, const ConfState& conf);
  void startLoneVoterStory(NodeId voter);
  bool startChangePile(NodeId leader, const ConfState& conf);
  // the stale voter (sim/stale_voter.cc)
  bool startStaleVoter(NodeId leader, const ConfState& conf);
  void staleVoterStep();
  // the cut-off removal (sim/cutoff_removal.cc)
  bool startCutoffRemoval(NodeId leader, const ConfState& conf);
  void cutoffRemovalStep();
  void isolateFromAll(NodeId id);
  void holdCalm(uint64_t until);  // no random fault until then
  void confRaceStep();
  void splitSides(const std::vector<NodeId>& side);
  bool memberStoryEnabled();
  void scheduleMemberStory(uint64_t delay);
  void memberStoryStep();
  // Calls `start` after `delay`, and again 0.1-1 s later while it declines, at most
  // `maxTries` times in all (counted in `tries`).
  void retryStory(uint32_t& tries, uint32_t maxTries, Rng& rng, uint64_t delay,
                  bool (World::*start)());
  // The leader a story may start from: none while another story or nemesis plays, or
  // while one of the initial nodes is down or recovering.
  NodeId storyLeader() const;
  // the Figure 8 story (sim/figure8.cc)
  Node* figure8Node(NodeId id, const char* ifDown);  // null (and the story ends) if down
  bool figure8Enabled();
  void scheduleFigure8(uint64_t delay);
  bool startFigure8();
  void figure8Step();
  void endFigure8(const char* how);
  uint64_t figure8PhaseBudget() const;
  NodeId newLeaderAbove(Term term, NodeId except) const;
  void stripOwnTermEntries(Message& msg);
  void cutOffEach(const std::vector<NodeId>& cut);   // each alone; the rest connected
  void onlyGroup(const std::vector<NodeId>& group);  // the group, cut off from the rest
  // a divergent suffix meets a snapshot (sim/suffix_story.cc)
  bool suffixEnabled();
  void scheduleSuffix(uint64_t delay);
  bool startSuffix();
  void suffixStep();
  void endSuffix(const char* how);
  // a lost write only the high-water mark tells of (sim/hwm_story.cc)
  struct LostWriteStory;
  void scheduleLostWrite(LostWriteStory& story, uint64_t delay);
  void lostWritePoll(LostWriteStory& story);

  // checking
  void afterEvent();
  void observeTimeline();
  bool withinBudget();
  bool chaosOver() const;  // false (and failed) when the run exceeds a budget
  bool livenessStep();     // true when the liveness phase is over (or failed)
  void issueFinalReads();
  RunResult finishRun();
  void trace(const std::string& line);
  void mix(uint64_t v) { traceHash_ = hashCombine(traceHash_, v); }
  std::vector<const Replica*> replicas() const;
  void fail(std::string property, std::string detail);
  bool allClientsIdle() const;
  bool leaderExists() const;

  Scenario sc_;
  const Knobs& kn_ = sc_.knobs;  // its fixed chances and durations (sim/knobs.h)
  RunOptions opts_;
  Rng rng_;
  Rng faultRng_;
  Rng netRng_;
  Rng clientRng_;
  Rng fsRng_;
  Rng memberRng_;  // membership changes (sim/membership.cc): a stream of their own
  // The change race (sim/membership.cc): an old leader's promotion against a new
  // leader's removal of it, with the schedule that breaks a change made before the new
  // leader's own-term commit.
  // The stale voter (sim/stale_voter.cc): a voter that missed a learner's promotion
  // must still vote for it.
  struct StaleVoter {
    int phase = 0;  // 0 off, 1 promotion pending, 2 feeding the promoted node, 3 watching
    NodeId leader = kNoNode, stale = kNoNode, other = kNoNode, promoted = kNoNode;
    Index promoteIndex = 0;
    Index otherLast = 0;  // the other voter's last index when it was cut off
    uint64_t until = 0;   // the current phase's deadline
    uint64_t watchFrom = 0;
  } stale_;
  // The cut-off removal (sim/cutoff_removal.cc): a voter removed while cut off must not
  // disturb the members once it hears them again.
  struct CutoffRemoval {
    int phase = 0;  // 0 off, 1 removal pending, 2 campaigning alone, 3 healed
    uint32_t runs = 0;
    NodeId victim = kNoNode;
    std::shared_ptr<bool> removed;  // set by the removal's reply
    uint64_t until = 0;
  } cutoff_;
  struct ConfRace {
    int phase = 0;  // 0 off, 1 waiting for a new leader on the majority side
    NodeId oldLeader = kNoNode, learner = kNoNode;
    Term term = 0;
    uint64_t until = 0;
    uint64_t gen = 0;
  } race_;
  // The learner stories (sim/membership.cc): a stream of their own.
  Rng memberStoryRng_;
  struct MemberStory {
    uint32_t tries = 0;
    uint32_t wanted = 0;          // learners the next story needs (0: not drawn yet)
    uint64_t holdMembership = 0;  // the membership nemesis changes nothing until then
  } memberStory_;
  Rng fig8Rng_;  // the Figure 8 story (sim/figure8.cc): a stream of its own
  struct Fig8 {
    enum Phase { Off, Depose, OldLeader, Rival, RivalLeads, Return, Overwrite };
    Phase phase = Off;
    uint32_t tries = 0;
    NodeId l = kNoNode, r = kNoNode;  // the old leader and its rival
    Term termP = 0, termA = 0, termB = 0, termC = 0;
    Index firstA = 0;  // the first entry of the old leader's term in its log
    std::vector<NodeId> witnesses;
    uint64_t holdUntil = 0, phaseUntil = 0, storyUntil = 0;
  } fig8_;
  Rng suffixRng_;  // the suffix story (sim/suffix_story.cc): a stream of its own
  struct Suffix {
    enum Phase { Off, Grow, Catch, Compact };
    Phase phase = Off;
    uint32_t tries = 0;
    NodeId leader = kNoNode, newLeader = kNoNode;
    std::vector<NodeId> side;  // the leader and its companions
    Term term = 0;
    Index base = 0;    // the commit index when the leader was cut off
    Index target = 0;  // the index the new leader snapshots at
    uint64_t phaseUntil = 0;
  } suffix_;
  // The lost-write stories (sim/hwm_story.cc), each from a stream of its own.
  struct LostWriteStory {
    Rng rng;
    bool (NodeStore::*lose)(Index committed);
    const char* what;
    uint64_t restartMinNs, restartMaxNs;
    uint32_t hits = 0, polls = 0;
  };
  LostWriteStory hwm_, overwrite_;
  NodeId pinnedTarget_ = kNoNode;  // while set, every client retry goes to this node
  EventQueue q_;
  std::vector<Node> nodes_;
  std::vector<Client> clients_;
  std::vector<std::vector<bool>> blocked_;  // blocked_[from][to]
  History history_;
  Checker checker_;
  RunResult result_;
  uint64_t traceHash_ = 0;
  std::unique_ptr<std::ofstream> traceFile_;
  uint32_t opsIssued_ = 0;  // drawn, whether issued or dropped by the schedule
  uint64_t faultEvents_ = 0;
  size_t testFaultsSeen_ = 0;  // of RunOptions::testFailAfterFaults
  // Seeds of the per-event streams (Schedule): one per fault event, one per operation.
  uint64_t faultStreamSeed_ = 0;
  uint64_t opStreamSeed_ = 0;
  bool chaos_ = true;
  bool finalPhase_ = false;
  uint64_t livenessDeadline_ = 0;
  uint64_t leaderDeadline_ = 0;
  bool leaderSeen_ = false;
  bool finalReadsIssued_ = false;
  uint64_t flakyUntil_ = 0;
  uint64_t partitionGen_ = 0;
  uint64_t nemesisUntil_ = 0;  // no random fault until then (a targeted one is running)
  // Until then no message, disk or crash fault either: a targeted nemesis wants a clean
  // background so the availability check can decide.
  uint64_t calmUntil_ = 0;
  bool calm() const { return q_.now() < calmUntil_; }
  uint64_t quietUntil_ = 0;
  std::map<std::pair<NodeId, Term>, NodeId> votes_;  // (voter, term) -> candidate granted
  // Per node: the last messages addressed to it, for replay after it restarts.
  std::vector<std::deque<std::pair<NodeId, std::string>>> recentTo_;
  // Per node, by read id: the read answers sent to its current incarnation, and those
  // sent to earlier ones (replayed when a read with the same id is asked again).
  using ReadAnswers = std::map<uint64_t, std::pair<NodeId, std::string>>;
  std::vector<ReadAnswers> readAnswers_;
  std::vector<ReadAnswers> staleReadAnswers_;
  uint64_t wireBytes_ = 0;
  uint64_t stormWindowStart_ = 0;
  uint64_t stormWindowEvents_ =
      0;  // clients issue nothing new until then (a workload lull)  // until then, every new leader is cut off (isolate_leader)
  bool delayTrouble_ = false;          // the last sampled delay was a fault
  std::vector<uint64_t> nodeTrouble_;  // per node: last time (or until) a fault touched it
  std::vector<std::vector<uint64_t>> linkTrouble_;  // [from][to]: last lost/late message
  uint64_t lastTransferNs_ = 0;
  std::vector<Role> prevRole_;
  std::vector<Term> prevTerm_;
  std::vector<uint64_t> leaderSince_;
  bool stop_ = false;
  std::vector<uint64_t> lastEffects_;  // per node: the KV effect counter at its last apply
  std::vector<const Replica*> replicaView_;
  std::unique_ptr<Timeline> timeline_;  // when RunOptions::timelinePath is set
  // The highest commit index any node has reached (committed entries stay committed).
  Index highestCommit_ = 0;
  // Every committed Config entry's configuration, by index (from the apply observer).
  std::map<Index, ConfState> committedConfs_;
};

}  // namespace kvr::sim
