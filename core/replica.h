// The replica driver: one Raft state machine plus one KV state machine, wired to the
// host's storage and transport. Everything here is deterministic: given the same calls in
// the same order (and the same Rng seed), it makes the same calls out.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "core/command.h"
#include "core/env.h"
#include "core/kv.h"
#include "core/raft.h"
#include "core/rng.h"

namespace kvr {

struct ReplicaConfig {
  RaftConfig raft;
  KvConfig kv;
  ConfState initialConf;                   // used when storage holds no snapshot yet
  uint64_t snapshotEveryEntries = 10'000;  // take a local snapshot after this many applied
  // ... and only once the entries applied since the last one add up to at least
  // 1/snapshotLogShare of the store's bytes (0: no such floor). Every snapshot rewrites
  // the whole store: without the floor a store of 1M pairs (270 MB) was rewritten every
  // 10,000 puts (2.6 MB), 100 bytes to disk per byte logged, and the WAL's fsyncs queued
  // behind those writes. With 8, a snapshot costs at most 8 bytes per byte logged, and
  // the log kept in memory between snapshots stays under an eighth of the store.
  uint32_t snapshotLogShare = 8;
  // Both thresholds above are stretched, per snapshot, by a share drawn uniformly from
  // [0, snapshotSpreadPercent]% (the injected generator). Replicas apply the same entries,
  // so without it every member starts its snapshot at the same index, and on shared
  // CPUs their serializations stall every loop at once (1M-key load: 59-71 ms of loop
  // lag on all three nodes together). 0: no stretch.
  uint32_t snapshotSpreadPercent = 0;
  uint64_t requestTimeoutTicks = 100;  // a pending client request times out after this
  // Load shedding by queue age: while the oldest pending write has waited more than this
  // many ticks, a new write (OpenSession included) is answered Busy at once, without
  // being proposed; the same for linearizable reads and the oldest pending read. 0: a
  // quarter of requestTimeoutTicks (at least 1); requestTimeoutTicks or more: never (the
  // oldest times out first). Membership changes are not shed (only the hard cap).
  uint64_t shedAfterTicks = 0;
};

struct ReplicaStatus {
  NodeId id = kNoNode;
  Role role = Role::Follower;
  Term term = 0;
  NodeId leader = kNoNode;
  Index commit = 0;
  Index applied = 0;
  Index lastIndex = 0;
  Index snapshotIndex = 0;
  Index payloadFloor = 0;   // Raft::payloadFloor: entries up to here hold only their term
  bool recovering = false;  // storage damage: no votes until caught up (docs/STORAGE.md)
  Index recoverUntil = 0;
};

using ReplyFn = std::function<void(KvReply)>;

// The outcome of a membership change. Ok: its Config entry committed and applied here.
// Invalid: refused, changing nothing (`error` says why). NotLeader, TransferInProgress:
// refused here, retry at the leader / shortly. Timeout: unknown (it may still commit).
// ShuttingDown: unknown.
struct ConfChangeReply {
  Status status = Status::Ok;
  ConfChangeError error = ConfChangeError::None;
  NodeId leaderHint = kNoNode;
  Index index = 0;  // its Config entry
};
using ConfChangeFn = std::function<void(ConfChangeReply)>;
// Called for every entry the replica applies, in order (checkers use it).
using ApplyObserver =
    std::function<void(NodeId node, const Entry& entry, const KvReply* reply)>;

class Replica {
 public:
  Replica(ReplicaConfig config, Rng rng, Transport& transport, Storage& storage,
          RecoveredState recovered);
  KJ_DISALLOW_COPY(Replica);

  // ---- inputs ----
  void tick();
  void receive(Message&& msg);
  // A client request. `done` is called exactly once (perhaps before submit returns).
  void submit(const KvCommand& cmd, ReadMode mode, ReplyFn done);
  // Many client requests at once (a client's batch), each as submit() would take it, in
  // order; the Raft output is taken once after all of them, so their entries share one
  // persist batch and one Append per follower, and their linearizable reads one read
  // index round. Each `done` is called exactly once.
  struct Request {
    const KvCommand* cmd;
    ReadMode mode;
    ReplyFn done;
  };
  void submitBatch(std::vector<Request>& requests);
  void onPersisted(uint64_t seq);
  // The storage wrote the file of the local snapshot at `index` that it took with
  // Storage::prepareSnapshot (core/env.h); the replica now persists it.
  void onSnapshotPrepared(Index index);
  // Takes a local snapshot of what is applied now (and compacts the log behind it) as
  // soon as none is in flight, whatever snapshotEveryEntries says: an operator's
  // compaction, and the simulator's way to make a lagging follower need a snapshot.
  void requestSnapshot();
  // Asks the leader to hand leadership to `target`. False if this node is not leader.
  bool transferLeadership(NodeId target);
  // Proposes a membership change (core/membership.h). `done` is called exactly once.
  void proposeConfChange(const ConfChange& cc, ConfChangeFn done);
  // Fails every pending request with ShuttingDown (the host is stopping).
  void shutdown();

  // ---- observation ----
  ReplicaStatus status() const;
  const Raft& raft() const { return raft_; }
  const KvStore& kv() const { return kv_; }
  void setApplyObserver(ApplyObserver observer) { observer_ = std::move(observer); }
  size_t pendingRequests() const { return pendingWrites_.size() + pendingReads_.size(); }

 private:
  struct PendingWrite {
    Term term;
    uint64_t deadline;  // the tick it was proposed at + requestTimeoutTicks
    ReplyFn done;
  };
  struct PendingRead {
    KvCommand cmd;
    uint64_t deadline;    // the tick it arrived at + requestTimeoutTicks
    Index readIndex = 0;  // 0 until the read index is known
    bool ready = false;
    ReplyFn done;
  };
  struct InFlightBatch {
    uint64_t seq;
    Index lastIndex;  // highest entry index in the batch (0 = none)
    Term lastTerm;
    std::optional<HardState> hardState;     // the hard state the batch writes
    std::optional<Snapshot> localSnapshot;  // a local snapshot made durable by this batch
    std::optional<SnapshotMeta> installedSnapshot;  // a leader's snapshot this batch stores
    std::vector<Message> messages;                  // released once durable
    uint64_t localSnapshotBytes = 0;                // its size, when its bytes are only on disk
  };

  void process();
  // submit() without taking Raft's output; true if there may be output to take.
  bool enqueue(const KvCommand& cmd, ReadMode mode, ReplyFn& done);
  void applyCommitted(const std::vector<Entry>& committed);
  void serveReads();
  void maybeSnapshot();
  void drawSnapshotStretch();  // for the next snapshot (snapshotSpreadPercent)
  // With `data`, or (data null) from a file the storage streamed from `source`, `bytes` long.
  void persistLocalSnapshot(const SnapshotMeta& meta, std::shared_ptr<const std::string> data,
                            std::shared_ptr<SnapshotSource> source = nullptr,
                            uint64_t bytes = 0);
  void expireRequests();
  void failAllPending(Status status);
  void sendAll(std::vector<Message>& messages);
  void addPendingWrite(Index index, ReplyFn done);
  // Whether the oldest request of `queue` has waited more than shedAfterTicks_ (a new one
  // is then answered Busy: the queue is not keeping up).
  template <typename Queue>
  bool overloaded(const Queue& queue) const;
  KvReply notLeader() const;
  static KvReply statusReply(Status status);

  ReplicaConfig config_;
  Transport& transport_;
  Storage& storage_;
  Raft raft_;
  KvStore kv_;
  uint64_t shedAfterTicks_;
  // Read contexts: a random start per incarnation, plus the read's sequence number, which
  // keys pendingReads_ (so its first entry is the oldest read).
  uint64_t readContextBase_;
  Rng snapshotRng_;                      // draws snapshotStretchPercent_
  uint64_t snapshotStretchPercent_ = 0;  // of the next snapshot's thresholds
  uint64_t nextReadSeq_ = 0;
  ApplyObserver observer_;
  uint64_t now_ = 0;  // ticks since start
  uint64_t nextSeq_ = 1;
  bool snapshotInFlight_ = false;   // from freezing until the snapshot batch is durable
  bool snapshotRequested_ = false;  // requestSnapshot(): the next one is due now
  struct Preparing {
    SnapshotMeta meta;
    std::shared_ptr<KvFrozen> source;
  };
  std::optional<Preparing> preparing_;  // handed to Storage::prepareSnapshot
  Index lastSnapshotIndex_ = 0;
  uint64_t bytesAppliedSinceSnapshot_ = 0;  // entry bytes applied since the last one taken
  std::deque<InFlightBatch> inFlight_;
  std::map<Index, PendingWrite> pendingWrites_;  // by log index: the first is the oldest
  // Nodes of pendingWrites_ whose writes were answered at apply, reused by the next
  // writes instead of a new allocation each; at most kMaxSpareWriteNodes.
  static constexpr size_t kMaxSpareWriteNodes = 256;
  std::vector<std::map<Index, PendingWrite>::node_type> spareWriteNodes_;
  // Buffers reused from command to command, dropped when one grew past this.
  static constexpr size_t kMaxScratchKeptBytes = 64 * 1024;
  std::string encodeScratch_;                     // enqueue() encodes each command here
  KvCommand applyScratch_;                        // applyCommitted() decodes each command here
  std::map<uint64_t, PendingRead> pendingReads_;  // by sequence number: the first is the oldest
};

}  // namespace kvr
