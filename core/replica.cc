#include "core/replica.h"

#include <kj/debug.h>

#include <algorithm>

#include "core/probe.h"

namespace kvr {

// The constructor draws from its own copy of rng (fork(), next()): by value on purpose.
// cppcheck-suppress passedByValue
Replica::Replica(ReplicaConfig config, Rng rng, Transport& transport, Storage& storage,
                 RecoveredState recovered)
    : config_(std::move(config)),
      transport_(transport),
      storage_(storage),
      raft_(config_.raft, rng.fork(), config_.initialConf, std::move(recovered)),
      kv_(config_.kv),
      shedAfterTicks_(config_.shedAfterTicks != 0
                          ? config_.shedAfterTicks
                          : std::max<uint64_t>(1, config_.requestTimeoutTicks / 4)),
      // Read contexts must not repeat across restarts: a ReadIndexResp delayed or
      // duplicated from an earlier incarnation would otherwise answer a new read with
      // an old index (seed 5142214). Each incarnation starts at a random point.
      readContextBase_(rng.next()),
      snapshotRng_(rng.fork()) {
  KJ_REQUIRE(config_.snapshotEveryEntries >= 1 && config_.requestTimeoutTicks >= 1);
  KJ_REQUIRE(config_.snapshotSpreadPercent <= 100, config_.snapshotSpreadPercent);
  drawSnapshotStretch();
  raft_.setSnapshotReader(storage_.snapshotReader());
  const Snapshot& snap = raft_.snapshot();
  if (snap.meta.index > 0) {
    KJ_REQUIRE(snap.data != nullptr, "snapshot without data");
    KJ_REQUIRE(kv_.restore(*snap.data), "stored snapshot does not decode", snap.meta.index);
    KJ_REQUIRE(kv_.appliedIndex() == snap.meta.index, "snapshot index mismatch");
    // Recovered from storage, so durable: its bytes stay on disk only.
    raft_.snapshotDurable(snap.meta);
  }
  lastSnapshotIndex_ = snap.meta.index;
  process();
}

KvReply Replica::statusReply(Status status) {
  KvReply r;
  r.status = status;
  return r;
}

KvReply Replica::notLeader() const {
  KvReply r;
  r.status = Status::NotLeader;
  r.leaderHint = raft_.leader() == raft_.id() ? kNoNode : raft_.leader();
  return r;
}

void Replica::tick() {
  ++now_;
  raft_.tick();
  expireRequests();
  process();
}

void Replica::receive(Message&& msg) {
  raft_.step(std::move(msg));
  process();
}

void Replica::submit(const KvCommand& cmd, ReadMode mode, ReplyFn done) {
  if (enqueue(cmd, mode, done)) process();
}

void Replica::submitBatch(std::vector<Request>& requests) {
  bool any = false;
  for (Request& r : requests) any = enqueue(*r.cmd, r.mode, r.done) || any;
  if (any) process();
}

// Shedding by queue age (issue 10). A request that waited this long in the queue is
// close to its client's patience (the node's request timeout is 2 s, a client attempt
// 1 s, and the default threshold is a quarter of the former): while the oldest one has,
// the queue is not keeping up, and one more request only waits longer, times out,
// comes back as a retry and makes the queue longer still. Busy instead costs no log
// entry, no fsync and no memory, is a definite "not applied", and the client backs off.
// The hard caps (kMaxPendingProposals/kMaxPendingReads, Raft's uncommitted bytes) stay
// for bursts that arrive faster than any request can age. pendingWrites_ is keyed by
// log index: its first entry is the oldest proposal, except for a leftover of an earlier
// term (a later, lower index proposed since), which ends at its deadline anyway.
template <typename Queue>
bool Replica::overloaded(const Queue& queue) const {
  if (queue.empty()) return false;
  // Every deadline is the tick the request was queued at plus the request timeout.
  const uint64_t deadline = queue.begin()->second.deadline;
  KJ_ASSERT(deadline >= config_.requestTimeoutTicks);
  const uint64_t submitted = deadline - config_.requestTimeoutTicks;
  KJ_ASSERT(submitted <= now_);
  if (now_ - submitted <= shedAfterTicks_) return false;
  hitProbe(Probe::RequestShed);
  return true;
}

bool Replica::enqueue(const KvCommand& cmd, ReadMode mode, ReplyFn& done) {
  std::string why;
  Status valid = validate(cmd, &why);
  if (valid != Status::Ok) {
    done(statusReply(valid));
    return false;
  }
  if (!cmd.isWrite()) {
    if (mode == ReadMode::Stale) {
      done(kv_.read(cmd));
      return false;
    }
    if (pendingReads_.size() >= limits::kMaxPendingReads || overloaded(pendingReads_)) {
      done(statusReply(Status::Busy));
      return false;
    }
    uint64_t seq = nextReadSeq_++;
    pendingReads_.emplace(seq, PendingRead{cmd, now_ + config_.requestTimeoutTicks, 0, false,
                                           std::move(done)});
    raft_.readIndex(readContextBase_ + seq);
    return true;
  }
  // Only a leader sheds writes: anyone else answers NotLeader below, which tells the
  // client where to go instead of to wait.
  if (pendingWrites_.size() >= limits::kMaxPendingProposals ||
      (raft_.role() == Role::Leader && overloaded(pendingWrites_))) {
    done(statusReply(Status::Busy));
    return false;
  }
  Index index = 0;
  // Encoded into a reused buffer, then copied once into the entry's shared payload.
  encodeCommand(cmd, &encodeScratch_);
  ProposeError err = raft_.propose(SharedBytes(encodeScratch_), &index);
  // A rare large command does not keep its buffer: the scratch stays small.
  if (encodeScratch_.capacity() > kMaxScratchKeptBytes) std::string().swap(encodeScratch_);
  if (err != ProposeError::None) {
    KvReply r;
    switch (err) {
      case ProposeError::NotLeader: r = notLeader(); break;
      case ProposeError::TransferInProgress: r.status = Status::TransferInProgress; break;
      case ProposeError::Busy: r.status = Status::Busy; break;
      case ProposeError::TooLarge: r.status = Status::TooLarge; break;
      case ProposeError::None: break;
    }
    done(std::move(r));
    return false;
  }
  addPendingWrite(index, std::move(done));
  return true;
}

void Replica::proposeConfChange(const ConfChange& cc, ConfChangeFn done) {
  if (pendingWrites_.size() >= limits::kMaxPendingProposals) {
    done(ConfChangeReply{Status::Busy, ConfChangeError::None, kNoNode, 0});
    return;
  }
  Index index = 0;
  ConfChangeError err = raft_.proposeConfChange(cc, &index);
  switch (err) {
    case ConfChangeError::None: break;
    case ConfChangeError::NotLeader:
      done(ConfChangeReply{Status::NotLeader, err, notLeader().leaderHint, 0});
      return;
    case ConfChangeError::TransferInProgress:
      done(ConfChangeReply{Status::TransferInProgress, err, kNoNode, 0});
      return;
    default: done(ConfChangeReply{Status::Invalid, err, kNoNode, 0}); return;
  }
  addPendingWrite(index, [done = std::move(done)](KvReply r) {
    done(ConfChangeReply{r.status, ConfChangeError::None, r.leaderHint, r.index});
  });
  process();
}

void Replica::addPendingWrite(Index index, ReplyFn done) {
  auto stale = pendingWrites_.find(index);
  if (stale != pendingWrites_.end()) {
    // An earlier term's proposal at this index was cut from our log when we lost
    // leadership; it never committed (else we, a later leader, would hold it).
    KJ_ASSERT(stale->second.term < raft_.term(), "two proposals at one index in one term",
              index);
    auto old = std::move(stale->second.done);
    pendingWrites_.erase(stale);
    old(notLeader());
  }
  PendingWrite write{raft_.term(), now_ + config_.requestTimeoutTicks, std::move(done)};
  if (spareWriteNodes_.empty()) {
    pendingWrites_.emplace(index, std::move(write));
    return;
  }
  auto node = std::move(spareWriteNodes_.back());
  spareWriteNodes_.pop_back();
  node.key() = index;
  node.mapped() = std::move(write);
  const bool inserted = pendingWrites_.insert(std::move(node)).inserted;
  KJ_ASSERT(inserted, "a pending write at this index survived", index);
}

void Replica::onPersisted(uint64_t seq) {
  KJ_REQUIRE(!inFlight_.empty() && inFlight_.front().seq == seq,
             "storage completed batches out of order", seq);
  InFlightBatch batch = std::move(inFlight_.front());
  inFlight_.pop_front();
  if (batch.lastIndex > 0) raft_.persisted(batch.lastIndex, batch.lastTerm);
  if (batch.hardState) raft_.persistedHardState(*batch.hardState);
  if (batch.localSnapshot) {
    const SnapshotMeta meta = batch.localSnapshot->meta;
    lastSnapshotIndex_ = std::max(lastSnapshotIndex_, meta.index);
    if (batch.localSnapshot->data != nullptr) {
      raft_.compacted(std::move(*batch.localSnapshot));
      raft_.snapshotDurable(meta);
    } else {
      raft_.compactedOnDisk(meta, batch.localSnapshotBytes);
    }
    snapshotInFlight_ = false;
  }
  if (batch.installedSnapshot) raft_.snapshotDurable(*batch.installedSnapshot);
  sendAll(batch.messages);
  process();
}

bool Replica::transferLeadership(NodeId target) {
  bool ok = raft_.transferLeadership(target);
  process();
  return ok;
}

void Replica::shutdown() { failAllPending(Status::ShuttingDown); }

ReplicaStatus Replica::status() const {
  ReplicaStatus s;
  s.id = raft_.id();
  s.role = raft_.role();
  s.term = raft_.term();
  s.leader = raft_.leader();
  s.commit = raft_.commitIndex();
  s.applied = kv_.appliedIndex();
  s.lastIndex = raft_.lastIndex();
  s.snapshotIndex = raft_.snapshotIndex();
  s.payloadFloor = raft_.payloadFloor();
  s.recovering = raft_.recovering();
  s.recoverUntil = raft_.recoverUntil();
  return s;
}

void Replica::sendAll(std::vector<Message>& messages) {
  for (auto& m : messages) transport_.send(std::move(m));
  messages.clear();
}

// Readies drained per process() call: each is bounded in size, and a host that gets
// control back between calls can serve its other events (what is left stays ready).
constexpr int kMaxReadiesPerProcess = 64;

void Replica::process() {
  for (int round = 0; round < kMaxReadiesPerProcess && raft_.hasReady(); ++round) {
    Ready rd = raft_.takeReady();
    if (rd.snapshot) {
      // Its bytes leave memory only once this batch is durable (Raft::snapshotDurable).
      KJ_ASSERT(rd.snapshot->data != nullptr, "installed snapshot without its bytes");
      KJ_REQUIRE(kv_.restore(*rd.snapshot->data),
                 "leader sent a snapshot that does not decode");
      lastSnapshotIndex_ = rd.snapshot->meta.index;
      bytesAppliedSinceSnapshot_ = 0;
      // Writes pending at covered indexes have an unknown fate here.
      while (!pendingWrites_.empty() &&
             pendingWrites_.begin()->first <= rd.snapshot->meta.index) {
        auto done = std::move(pendingWrites_.begin()->second.done);
        pendingWrites_.erase(pendingWrites_.begin());
        done(statusReply(Status::Timeout));
      }
    }
    if (rd.mustPersist()) {
      PersistBatch batch;
      batch.seq = nextSeq_++;
      batch.hardState = rd.hardState;
      batch.snapshot = rd.snapshot;
      batch.resetLog = rd.snapshot.has_value();
      batch.endRecovery = rd.endRecovery;
      InFlightBatch pending{
          batch.seq, 0, 0, rd.hardState, std::nullopt, std::nullopt, std::move(rd.afterPersist),
          0};
      if (rd.snapshot) pending.installedSnapshot = rd.snapshot->meta;
      if (!rd.entries.empty()) {
        pending.lastIndex = rd.entries.back().index;
        pending.lastTerm = rd.entries.back().term;
      }
      batch.entries = std::move(rd.entries);
      inFlight_.push_back(std::move(pending));
      storage_.persist(std::move(batch));
    } else if (!rd.afterPersist.empty()) {
      if (inFlight_.empty()) {
        sendAll(rd.afterPersist);
      } else {
        auto& msgs = inFlight_.back().messages;
        for (auto& m : rd.afterPersist) msgs.push_back(std::move(m));
      }
    }
    sendAll(rd.messages);
    if (!rd.committed.empty()) {
      applyCommitted(rd.committed);
      raft_.applied(rd.committed.back().index);
    }
    for (const ReadState& rs : rd.readStates) {
      auto it = pendingReads_.find(rs.context - readContextBase_);
      if (it == pendingReads_.end()) continue;  // already timed out
      if (rs.failed) {
        auto done = std::move(it->second.done);
        pendingReads_.erase(it);
        done(notLeader());
        continue;
      }
      it->second.readIndex = rs.index;
      it->second.ready = true;
    }
    serveReads();
    maybeSnapshot();
  }
  // A node that is no longer a member and no longer leads (a removed leader that handed
  // over) hears from no leader again, so nothing will tell it whether its pending
  // requests apply: answer them now, outcome unknown (Timeout: the client retries at the
  // new leader with the same request id), not only at their deadline.
  if (raft_.role() != Role::Leader && !raft_.isMember(raft_.id()) && pendingRequests() > 0) {
    failAllPending(Status::Timeout);
  }
}

void Replica::applyCommitted(const std::vector<Entry>& committed) {
  for (const Entry& e : committed) {
    KJ_ASSERT(e.index == kv_.appliedIndex() + 1, "apply out of order", e.index,
              kv_.appliedIndex());
    KvReply reply;
    const KvReply* applied = nullptr;
    bytesAppliedSinceSnapshot_ += e.data.size();
    if (e.kind == EntryKind::Command) {
      // Decoded into a reused command (decodeCommand sets every field): its strings keep
      // their capacity from entry to entry instead of an allocation per value.
      KvCommand& cmd = applyScratch_;
      KJ_REQUIRE(decodeCommand(e.data, &cmd), "committed entry does not decode", e.index);
      reply = kv_.apply(e.index, cmd);
      applied = &reply;
      if (cmd.value.capacity() + cmd.key.capacity() + cmd.expected.capacity() +
              cmd.rangeEnd.capacity() >
          kMaxScratchKeptBytes) {
        cmd = KvCommand();  // a rare large command does not keep its buffers
      }
    } else {
      kv_.skip(e.index);
      if (e.kind == EntryKind::Config) {
        reply.index = e.index;
        applied = &reply;  // a membership change: done once committed and applied
      }
    }
    if (observer_) observer_(raft_.id(), e, e.kind == EntryKind::Command ? applied : nullptr);
    auto it = pendingWrites_.find(e.index);
    if (it != pendingWrites_.end()) {
      // The map's node is kept for the next write (addPendingWrite): one fewer
      // allocation and free per write.
      auto node = pendingWrites_.extract(it);
      PendingWrite pending = std::move(node.mapped());
      if (spareWriteNodes_.size() < kMaxSpareWriteNodes) {
        node.mapped().done = nullptr;
        spareWriteNodes_.push_back(std::move(node));
      }
      if (pending.term == e.term && applied != nullptr) {
        pending.done(reply);
      } else {
        pending.done(notLeader());  // our entry was replaced: it will never apply
      }
    }
  }
}

void Replica::serveReads() {
  for (auto it = pendingReads_.begin(); it != pendingReads_.end();) {
    if (it->second.ready && it->second.readIndex <= kv_.appliedIndex()) {
      KvReply r = kv_.read(it->second.cmd);
      auto done = std::move(it->second.done);
      it = pendingReads_.erase(it);
      done(std::move(r));
    } else {
      ++it;
    }
  }
}

void Replica::requestSnapshot() {
  snapshotRequested_ = true;
  maybeSnapshot();
}

void Replica::drawSnapshotStretch() {
  snapshotStretchPercent_ = snapshotRng_.below(uint64_t(config_.snapshotSpreadPercent) + 1);
}

void Replica::maybeSnapshot() {
  // A member needs entries whose payloads the log released (Raft::releasePayloads).
  if (raft_.takeSnapshotWanted()) snapshotRequested_ = true;
  Index applied = kv_.appliedIndex();
  if (snapshotInFlight_ || applied <= lastSnapshotIndex_) return;
  if (!snapshotRequested_) {
    // 128-bit: no product here can overflow, whatever the configuration says.
    using Wide = unsigned __int128;
    const Wide stretch = 100 + snapshotStretchPercent_;
    const Wide every = Wide(config_.snapshotEveryEntries) * stretch / 100;
    if (Wide(applied - lastSnapshotIndex_) < every) return;
    if (config_.snapshotLogShare != 0 &&
        Wide(bytesAppliedSinceSnapshot_) * config_.snapshotLogShare * 100 <
            Wide(kv_.dataBytes()) * stretch)
      return;
  }
  snapshotRequested_ = false;
  drawSnapshotStretch();
  bytesAppliedSinceSnapshot_ = 0;
  auto term = raft_.termAt(applied);
  KJ_ASSERT(term.has_value(), "applied entry has no term", applied);
  // The configuration as of the snapshot's index: a newer, uncommitted one may still be
  // truncated from the log.
  const SnapshotMeta meta{applied, *term, raft_.confAt(applied)};
  // A frozen view, not the bytes: serializing a large store would stop this loop.
  std::shared_ptr<KvFrozen> frozen = kv_.freeze();
  snapshotInFlight_ = true;
  if (storage_.prepareSnapshot(meta, frozen)) {
    preparing_ = Preparing{meta, std::move(frozen)};
    return;
  }
  persistLocalSnapshot(meta, frozen->materialize());
}

void Replica::persistLocalSnapshot(const SnapshotMeta& meta,
                                   std::shared_ptr<const std::string> data,
                                   std::shared_ptr<SnapshotSource> source, uint64_t bytes) {
  KJ_REQUIRE(data != nullptr ||
                 (source != nullptr && bytes > 0 && storage_.snapshotReader() != nullptr),
             "local snapshot without data", meta.index);
  Snapshot snap;
  snap.meta = meta;
  snap.data = std::move(data);
  PersistBatch batch;
  batch.seq = nextSeq_++;
  batch.snapshot = snap;
  batch.snapshotSource = std::move(source);
  inFlight_.push_back(
      InFlightBatch{batch.seq, 0, 0, std::nullopt, std::move(snap), std::nullopt, {}, bytes});
  storage_.persist(std::move(batch));
}

void Replica::onSnapshotPrepared(Index index) {
  KJ_REQUIRE(preparing_.has_value() && preparing_->meta.index == index,
             "storage prepared a snapshot it was not asked for", index);
  Preparing p = std::move(*preparing_);
  preparing_.reset();
  KJ_ASSERT(snapshotInFlight_);
  if (index <= lastSnapshotIndex_) {
    // A leader's snapshot was installed meanwhile and covers this one.
    snapshotInFlight_ = false;
  } else {
    // Made on the storage's thread already; ordered before this call by the host.
    if (std::shared_ptr<const std::string> bytes = p.source->materialized()) {
      persistLocalSnapshot(p.meta, std::move(bytes));
    } else if (p.source->streamedBytes() > 0 && storage_.snapshotReader() != nullptr) {
      // Streamed to its file: the bytes never come into memory.
      const uint64_t streamed = p.source->streamedBytes();
      persistLocalSnapshot(p.meta, nullptr, std::move(p.source), streamed);
    } else {
      persistLocalSnapshot(p.meta, p.source->materialize());
    }
  }
  process();
}

void Replica::expireRequests() {
  for (auto it = pendingWrites_.begin(); it != pendingWrites_.end();) {
    if (it->second.deadline <= now_) {
      auto done = std::move(it->second.done);
      it = pendingWrites_.erase(it);
      done(statusReply(Status::Timeout));
    } else {
      ++it;
    }
  }
  for (auto it = pendingReads_.begin(); it != pendingReads_.end();) {
    if (it->second.deadline <= now_) {
      auto done = std::move(it->second.done);
      it = pendingReads_.erase(it);
      done(statusReply(Status::Timeout));
    } else {
      ++it;
    }
  }
}

void Replica::failAllPending(Status status) {
  auto writes = std::move(pendingWrites_);
  pendingWrites_.clear();
  auto reads = std::move(pendingReads_);
  pendingReads_.clear();
  for (auto& [i, w] : writes) {
    w.done(statusReply(status));
  }
  for (auto& [i, rd] : reads) {
    rd.done(statusReply(status));
  }
}

}  // namespace kvr
