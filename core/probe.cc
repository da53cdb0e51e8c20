#include "core/probe.h"

namespace kvr {

namespace {
constexpr const char* kProbeNames[kProbeCount] = {"commit_old_term_via_newer",
                                                  "suffix_truncated",
                                                  "snapshot_over_conflict",
                                                  "snapshot_kept_suffix",
                                                  "vote_refused_by_lease",
                                                  "vote_refused_stale_log",
                                                  "step_down_check_quorum",
                                                  "read_index_rejected",
                                                  "read_deferred_to_term_commit",
                                                  "follower_read",
                                                  "transfer_timeout_now",
                                                  "reject_backup_by_term",
                                                  "session_retry_answered",
                                                  "session_evicted",
                                                  "wal_torn_tail_truncated",
                                                  "wal_corruption_found",
                                                  "snapshot_damage_found",
                                                  "vote_refused_recovering",
                                                  "recovery_finished",
                                                  "conf_reverted",
                                                  "leader_removed_step_down",
                                                  "learner_snapshot",
                                                  "conf_change_not_ready",
                                                  "promote_refused_lag",
                                                  "vote_ignored_nonvoter",
                                                  "recovery_term_raised",
                                                  "snapshot_chunk_from_storage",
                                                  "request_shed",
                                                  "snapshot_for_released_log"};
}

const char* probeName(Probe p) { return kProbeNames[static_cast<size_t>(p)]; }

bool probeRequired(Probe p) { return p != Probe::SnapshotKeptSuffix; }

ProbeCounts& ProbeCounts::global() {
  static ProbeCounts counts;
  return counts;
}

std::array<uint64_t, kProbeCount> ProbeCounts::snapshot() const {
  std::array<uint64_t, kProbeCount> out{};
  for (size_t i = 0; i < kProbeCount; ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

void ProbeCounts::reset() {
  for (auto& c : counts_) c.store(0, std::memory_order_relaxed);
}

}  // namespace kvr
