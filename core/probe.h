// Coverage probes (FoundationDB calls them code probes): named places in the core and
// the disk code where a rare but important path runs. The simulator reports how many
// seeds reach each one, and its seed tests fail when one is never reached: a rule whose
// path no seed takes is a rule the simulator does not test.
//
// Process-wide counters, relaxed atomics (disk/ runs on libuv's thread pool in the real
// node). Counting never changes what the code does, so traces stay the same.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace kvr {

enum class Probe : uint8_t {
  CommitOldTermViaNewer,     // a leader's commit covered an entry of an earlier term
  SuffixTruncated,           // a follower cut an uncommitted conflicting suffix
  SnapshotOverConflict,      // a snapshot replaced a log that disagreed at its index
  SnapshotKeptSuffix,        // a snapshot matched the log: the suffix after it stayed
  VoteRefusedByLease,        // a (pre-)vote ignored because a live leader is known
  VoteRefusedStaleLog,       // a vote refused by the up-to-date check
  StepDownCheckQuorum,       // a leader cut off from a majority stepped down
  ReadIndexRejected,         // a follower's read index refused by a deposed leader
  ReadDeferredToTermCommit,  // a new leader held a read until its term committed
  FollowerRead,              // a read served by a follower through the leader
  TransferTimeoutNow,        // a leadership transfer reached TimeoutNow
  RejectBackupByTerm,        // the leader skipped back a whole term on a rejection
  SessionRetryAnswered,      // a retried request answered from the session table
  SessionEvicted,            // a session expired to make room
  WalTornTailTruncated,      // recovery cut a torn tail off the newest WAL segment
  WalCorruptionFound,        // recovery found a damaged record it may not cut as torn
  SnapshotDamageFound,       // the snapshot in effect was damaged: log and snapshot wiped
  VoteRefusedRecovering,     // a (pre-)vote refused because this node is recovering
  RecoveryFinished,          // a recovering node caught up with a leader and rejoined
  ConfReverted,              // a Config entry cut from a log: the older configuration is back
  LeaderRemovedStepDown,     // a leader that removed itself stepped down once that committed
  LearnerSnapshot,           // a non-voter (learner or joining node) installed a snapshot
  ConfChangeNotReady,        // a change refused until the new leader commits in its term
  PromoteRefusedLag,         // a promotion refused because the learner lags
  VoteIgnoredNonVoter,       // a vote request from a non-voter behind us, dropped
  RecoveryTermRaised,        // a recovering node's term poll found a term above its own
  SnapshotChunkFromStorage,  // a snapshot chunk sent to a follower was read back from disk
  RequestShed,               // a request answered Busy: the oldest pending one waited too long
  SnapshotForReleasedLog,    // a member needed entries whose payloads were released: snapshot
};
constexpr size_t kProbeCount = 29;

const char* probeName(Probe p);
// Whether the default swarm (kvsim --seeds 1..300) must reach it. The one exception is
// a snapshot sent to a follower whose log already matches at its index: with this
// core's exact back-up that takes a duplicated Append racing a compaction, about one
// seed in 300, so it is reported but not required.
bool probeRequired(Probe p);

class ProbeCounts {
 public:
  static ProbeCounts& global();
  void hit(Probe p) { counts_[static_cast<size_t>(p)].fetch_add(1, std::memory_order_relaxed); }
  uint64_t get(Probe p) const {
    return counts_[static_cast<size_t>(p)].load(std::memory_order_relaxed);
  }
  std::array<uint64_t, kProbeCount> snapshot() const;
  void reset();

 private:
  std::array<std::atomic<uint64_t>, kProbeCount> counts_{};
};

inline void hitProbe(Probe p) { ProbeCounts::global().hit(p); }

}  // namespace kvr
