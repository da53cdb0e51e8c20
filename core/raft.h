// The Raft state machine: no I/O, no clock, no threads. The host feeds it ticks,
// messages and proposals, drains a Ready (what to persist, what to send, what to apply),
// and reports back which of its writes became durable.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/env.h"
#include "core/limits.h"
#include "core/membership.h"
#include "core/rng.h"
#include "core/types.h"

namespace kvr {

enum class Role : uint8_t { Follower = 0, PreCandidate = 1, Candidate = 2, Leader = 3 };
const char* roleName(Role r);

struct RaftConfig {
  NodeId id = kNoNode;
  uint32_t electionTicks = 10;  // randomized in [electionTicks, 2 * electionTicks)
  uint32_t heartbeatTicks = 1;
  bool preVote = true;
  bool checkQuorum = true;
  uint32_t maxInflight = 64;               // Append messages in flight per follower
  size_t maxAppendBytes = 1024 * 1024;     // payload bytes per Append message
  size_t snapshotChunkBytes = 256 * 1024;  // bytes per Snapshot message
  uint64_t compactionKeepEntries = 1000;   // entries kept behind a local snapshot
};

// A linearizable read that may now be served once applied >= index.
struct ReadState {
  uint64_t context = 0;
  Index index = 0;
  bool failed = false;  // leadership lost or no leader: the read must be retried
};

// Outputs of one or more steps. Persist first, then send `afterPersist`.
struct Ready {
  std::optional<HardState> hardState;
  std::optional<Snapshot> snapshot;   // received from the leader: reset log and state machine
  std::vector<Entry> entries;         // to append (overwriting from entries[0].index)
  std::vector<Message> messages;      // may leave now
  std::vector<Message> afterPersist;  // may leave only once this Ready's writes are durable
  std::vector<Entry> committed;       // durable locally and committed: apply in order
  std::vector<ReadState> readStates;
  bool endRecovery = false;  // left the recovering state: persist with the hard state
  bool mustPersist() const { return hardState || snapshot || !entries.empty() || endRecovery; }
};

enum class ProposeError : uint8_t { None = 0, NotLeader, TransferInProgress, Busy, TooLarge };

class Raft {
 public:
  Raft(const RaftConfig& config, const Rng& rng, const ConfState& bootstrapConf,
       RecoveredState recovered);

  // ---- inputs ----
  void tick();
  void step(Message msg);
  // Appends a command entry at the leader. On success *index is its log index.
  ProposeError propose(SharedBytes data, Index* index);
  // Requests a linearizable read; the answer comes back as a ReadState with `context`.
  void readIndex(uint64_t context);
  bool transferLeadership(NodeId target);
  // Appends a membership change at the leader (one server at a time, at most one
  // uncommitted, only once an entry of the leader's term is committed). The new
  // configuration takes effect at once; *index is its Config entry.
  ConfChangeError proposeConfChange(const ConfChange& cc, Index* index);
  // Storage made entries up to (index, term) durable.
  void persisted(Index index, Term term);
  // Storage made a Ready's hard state durable (report every one, in order).
  void persistedHardState(const HardState& hs);
  // A local snapshot covering up to meta.index is durable: drop old log entries.
  void compacted(Snapshot snapshot);
  // The same for a local snapshot whose `bytes` bytes only the storage holds (it wrote
  // the file without holding them in memory): chunks are read back through the reader.
  void compactedOnDisk(const SnapshotMeta& meta, uint64_t bytes);
  // Where to read a durable snapshot's bytes back (Storage::snapshotReader); null: keep
  // them in memory. Set once, before snapshotDurable is first called.
  void setSnapshotReader(SnapshotReader* reader) { reader_ = reader; }
  // The storage holds snapshot `meta` durably (a local one, an installed one, or the one
  // recovered at start, once the state machine restored it): with a reader, its bytes
  // leave memory and the chunks sent to followers are read back from the storage.
  void snapshotDurable(const SnapshotMeta& meta);
  // The state machine has applied up to `index` (limits what Ready.committed repeats).
  void applied(Index index);

  bool hasReady() const;
  Ready takeReady();

  // ---- observation ----
  NodeId id() const { return config_.id; }
  Role role() const { return role_; }
  Term term() const { return term_; }
  NodeId vote() const { return vote_; }
  NodeId leader() const { return leader_; }
  Index commitIndex() const { return commit_; }
  Index appliedIndex() const { return applied_; }
  Index stableIndex() const { return stable_; }
  Index lastIndex() const { return logOffset_ + log_.size(); }
  Term lastTerm() const;
  // First index still held in the in-memory log (entries before it were compacted).
  Index firstIndex() const { return logOffset_ + 1; }
  Index snapshotIndex() const { return snapshot_.meta.index; }
  const Snapshot& snapshot() const { return snapshot_; }
  // The configuration in force: the newest Config entry in the log, committed or not,
  // else the snapshot's, else bootstrap.
  const ConfState& conf() const { return conf_; }
  Index confIndex() const { return confIndex_; }  // its Config entry (0: snapshot/bootstrap)
  // The configuration as of `index` (>= snapshotIndex()): for a local snapshot's metadata.
  ConfState confAt(Index index) const;
  bool isMember(NodeId id) const { return isMemberOf(conf_, id); }
  // The leader's view of a member's log (0 when unknown or not leader).
  Index matchOf(NodeId id) const;
  // Term of the entry at `index`, or nullopt if unknown (compacted or beyond the end).
  std::optional<Term> termAt(Index index) const;
  const Entry* entryAt(Index index) const;
  NodeId transferTarget() const { return transferTarget_; }
  // Command entries up to here (and after the compacted prefix) keep their index, term
  // and kind but no longer their payload: they are applied here and every member holds
  // them (releasePayloads). Only the terms are needed of them, unless a member loses its
  // log: it then gets a snapshot at or past this index.
  Index payloadFloor() const { return payloadFloor_; }
  // A member needs entries whose payloads are gone and no snapshot covers them: the host
  // should take a local snapshot (Replica does). Reading clears it.
  bool takeSnapshotWanted() { return std::exchange(snapshotWanted_, false); }
  // Messages dropped because they were malformed or from a non-member.
  uint64_t droppedMessages() const { return dropped_; }
  // Recovering (after storage damage, RecoveredState::recovering): no campaign, no
  // (pre-)vote granted, until the log durably matches a leader's up to recoverUntil().
  bool recovering() const { return recovering_; }
  Index recoverUntil() const { return recoverUntil_; }

 private:
  enum class ProgressState : uint8_t { Probe, Replicate, Snapshot };
  struct Progress {
    Index match = 0;
    Index next = 1;
    ProgressState state = ProgressState::Probe;
    bool probeSent = false;      // Probe: one Append in flight until a reply/heartbeat
    std::deque<Index> inflight;  // Replicate: last index of each Append in flight
    bool recentActive = false;   // an answer since the last election-timeout boundary
    // Snapshot state:
    Index snapIndex = 0;
    uint64_t snapOffset = 0;  // bytes the follower has acknowledged
    uint32_t snapIdleTicks = 0;
    Index commitSent = 0;       // the highest commit index an Append or heartbeat carried to it
    uint32_t silentRounds = 0;  // whole election timeouts without an answer, in a row
  };
  struct ReadRound {
    uint64_t id;
    Index index;
    std::set<NodeId> acks;
    std::vector<std::pair<NodeId, uint64_t>>
        reads;  // (requester, context); requester == self for local
  };
  struct IncomingSnapshot {
    NodeId from = kNoNode;
    Term term = 0;
    SnapshotMeta meta;
    uint64_t size = 0;
    std::string data;
  };

  // roles
  void becomeFollower(Term term, NodeId leader);
  void becomePreCandidate();
  void becomeCandidate();
  void becomeLeader();
  void campaign(bool preVote, bool transfer);
  bool mayCampaign() const;
  void resetElectionTimer();
  bool isVoter(NodeId id) const;
  size_t quorum() const { return conf_.voters.size() / 2 + 1; }
  // Whether `ids` hold a majority of the voters (learners and non-members never count).
  bool hasQuorum(const std::set<NodeId>& ids) const;
  // membership
  Index confBound() const;
  void refreshConf(bool force);
  void syncProgress(bool probeNew);
  void maybeStepDownRemoved();
  void setCommit(Index index);

  // message handlers
  void stepLeader(Message& msg);
  void stepFollower(Message& msg);
  void stepCandidate(Message& msg);
  void handleVoteRequest(const Message& msg);
  void handleAppend(Message& msg);
  void handleHeartbeat(const Message& msg);
  void handleSnapshotChunk(Message& msg);
  void handleAppendResp(const Message& msg);
  void handleHeartbeatResp(Message& msg);
  void handleSnapshotResp(const Message& msg);
  void handleReadIndexRequest(NodeId from, uint64_t context);
  bool wellFormed(const Message& msg) const;
  // recovering state (core/raft_recovery.cc)
  void noteLeaderMatch(Index index);
  void maybeFinishRecovery();
  // Highest index our log is known to share with this term's leader.
  Index recoveryVerified() const;
  void markRecoveringResponse(Message& resp) const;
  void forgetLostMatch(Progress& pr, const Message& resp);
  void askLeaderToVerify(NodeId leader);
  void sendTermPoll();
  void answerTermPoll(const Message& poll);
  void handleTermPollResp(const Message& resp);
  // Enough members answered this recovery's term poll that our term is at least the
  // term of every entry that can have been committed (core/raft_recovery.cc).
  bool termPollSatisfied() const;

  // log
  bool matchTerm(Index index, Term term) const;
  bool isUpToDate(Index lastIdx, Term lastTrm) const;
  // Largest index <= index whose term <= term (etcd's findConflictByTerm).
  Index findConflictByTerm(Index index, Term term) const;
  void appendLocal(std::vector<Entry>&& entries);  // truncates conflicting suffix
  void truncateFrom(Index index);
  void installSnapshot(Snapshot snapshot);
  void compactTo(Snapshot snapshot, uint64_t bytes);
  // Drops the payloads of Command entries up to min(heldByAll_, applied_, commit_).
  void releasePayloads();
  void noteHeldByAll(Index index);
  void countHeldByAll();  // leader

  // leader
  void appendAndBroadcast(Entry entry);
  void sendAppend(NodeId to, bool allowEmpty);
  void sendSnapshotChunk(NodeId to, Progress& pr);
  void broadcastHeartbeat(uint64_t readRound);
  void maybeCommit();
  void notifyCommit();
  void releaseReadRounds();
  void failReads();
  // Answers a read: a ReadState for our own, a ReadIndexResp for a follower's.
  void answerRead(NodeId requester, uint64_t context, Index index, bool failed);
  // A message of ours: `type` to `to` at our term (a vote request sets its own).
  Message outgoing(MsgType type, NodeId to) const;
  void send(Message msg);
  void flushLeaderOutput();
  Index stableCommitted() const;

  RaftConfig config_;
  Rng rng_;
  ConfState bootstrapConf_;
  ConfState conf_;
  Index confIndex_ = 0;
  std::vector<Index> confEntries_;  // indexes of the Config entries in log_, ascending

  // persistent (mirrored to storage through Ready)
  Term term_ = 0;
  NodeId vote_ = kNoNode;
  Snapshot snapshot_;           // data null once snapshotDurable dropped it (reader_ then set)
  uint64_t snapshotBytes_ = 0;  // the size of snapshot_'s data, in memory or not
  SnapshotReader* reader_ = nullptr;
  Index logOffset_ = 0;  // index of the entry just before log_[0]
  Term logOffsetTerm_ = 0;
  std::deque<Entry> log_;  // entries logOffset_ + 1 .. lastIndex()
  // Every member that can still catch up from the log held it up to here (a leader's
  // count, countHeldByAll, or what one told us); never lowered: a member that later loses
  // entries it held, or comes back from behind the compacted log, gets a snapshot.
  Index heldByAll_ = 0;
  Index payloadFloor_ = 0;    // see payloadFloor()
  Index termFirstIndex_ = 0;  // leader: its term's first entry (the no-op)
  bool snapshotWanted_ = false;

  // volatile
  Role role_ = Role::Follower;
  NodeId leader_ = kNoNode;
  Index commit_ = 0;
  Index applied_ = 0;
  Index stable_ = 0;              // highest index known durable in local storage
  Index unstableFrom_ = 1;        // first index not yet handed to the host in a Ready
  Index handedCommitted_ = 0;     // highest committed index handed out for apply
  bool snapshotPending_ = false;  // a received snapshot is waiting to go out in a Ready
  uint32_t electionElapsed_ = 0;
  uint32_t heartbeatElapsed_ = 0;
  uint32_t randomizedElectionTicks_ = 0;
  std::set<NodeId> votesGranted_;
  std::set<NodeId> votesRejected_;
  std::map<NodeId, Progress> progress_;
  NodeId transferTarget_ = kNoNode;
  uint32_t transferElapsed_ = 0;
  size_t uncommittedBytes_ = 0;
  uint64_t dropped_ = 0;
  bool recovering_ = false;
  // A single voter's candidacy in this term: it leads once its vote is durable.
  Term electedAloneTerm_ = 0;
  Index recoverUntil_ = 0;
  Index recoverMatch_ = 0;  // our log matches the current term's leader's up to here
  Term recoverMatchTerm_ = 0;
  bool endRecoveryPending_ = false;
  uint64_t termPollNonce_ = 0;        // this incarnation's poll: answers must echo it
  std::set<NodeId> termPollAnswers_;  // members that answered it
  uint32_t termPollElapsed_ = 0;      // ticks since the poll was last sent

  // reads
  uint64_t nextReadRound_ = 1;
  std::deque<ReadRound> readRounds_;
  std::vector<std::pair<NodeId, uint64_t>> unsentReads_;    // waiting for the next round
  std::vector<std::pair<NodeId, uint64_t>> deferredReads_;  // waiting for a commit in this term
  std::optional<IncomingSnapshot> incoming_;

  // outputs accumulated since the last takeReady
  HardState lastHardState_;
  std::vector<Message> outNow_;
  std::vector<Message> outAfterPersist_;
  std::vector<ReadState> outReads_;
  bool broadcastPending_ = false;  // new entries: send Appends at the next takeReady
  // Commit advanced since the last tick: at the tick, tell the followers that no Append
  // or heartbeat has told yet (notifyCommit).
  bool commitNoticeDue_ = false;
};

}  // namespace kvr
