// Raft's recovering state (docs/STORAGE.md). A node whose storage lost entries it may
// have acknowledged starts recovering: it neither campaigns nor grants (pre-)votes,
// because its log no longer shows what it promised. It follows leaders as usual (its
// term and vote survived: disk/ keeps them in every record header and in the recovery
// mark) and leaves the state once its log durably matches the log of a leader of its
// current term up to recoverUntil_, the highest index its storage ever held: every
// entry it may have acknowledged that was committed is then back in its log (leader
// completeness), so its vote means again what Raft needs it to mean.
#include <kj/debug.h>

#include "core/probe.h"
#include "core/raft.h"

namespace kvr {

void Raft::noteLeaderMatch(Index index) {
  if (!recovering_) return;
  if (recoverMatchTerm_ != term_) {
    recoverMatchTerm_ = term_;
    recoverMatch_ = 0;
  }
  recoverMatch_ = std::max(recoverMatch_, index);
  maybeFinishRecovery();
}

Index Raft::recoveryVerified() const {
  // Committed entries match every leader's log; beyond them, only what this term's
  // leader confirmed through an Append.
  return std::min(lastIndex(),
                  std::max(commit_, recoverMatchTerm_ == term_ ? recoverMatch_ : 0));
}

void Raft::maybeFinishRecovery() {
  if (!recovering_) return;
  if (std::min(recoveryVerified(), stable_) < recoverUntil_) return;
  KJ_ASSERT(stable_ >= recoverUntil_ && lastIndex() >= recoverUntil_);
  recovering_ = false;
  endRecoveryPending_ = true;
  hitProbe(Probe::RecoveryFinished);
}

void Raft::markRecoveringResponse(Message& resp) const {
  if (!recovering_) return;
  resp.context = kRecoveringResponse;
  resp.commit = commit_;
}

void Raft::askLeaderToVerify(NodeId leader) {
  // The leader believes we hold more than an Append of its verified (its match for us
  // predates the damage) and sends none while it does: tell it where we stand.
  Message r;
  r.type = MsgType::AppendResp;
  r.to = leader;
  r.term = term_;
  r.reject = true;
  r.index = commit_;
  r.rejectHint = commit_;
  markRecoveringResponse(r);
  send(std::move(r));
}

void Raft::forgetLostMatch(Progress& pr, const Message& resp) {
  // The follower no longer holds what it acknowledged: lower our match for it to what
  // it says is committed in its log (a stale rejection only makes us re-probe).
  if (resp.commit >= pr.match) return;
  pr.match = resp.commit;
  pr.next = std::min(pr.next, pr.match + 1);
  pr.state = ProgressState::Probe;
  pr.inflight.clear();
  pr.probeSent = false;
}

}  // namespace kvr
