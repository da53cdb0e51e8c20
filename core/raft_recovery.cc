// Raft's recovering state (docs/STORAGE.md). A node whose storage lost entries it may
// have acknowledged starts recovering: it neither campaigns nor grants (pre-)votes,
// because its log no longer shows what it promised. It follows leaders as usual and
// leaves the state once its log durably matches the log of a leader of its current
// term up to recoverUntil_, the highest index its storage ever held: every entry it may
// have acknowledged that was committed is then back in its log (leader completeness),
// so its vote means again what Raft needs it to mean.
//
// That needs a current term at least the term of every committed entry, and the damage
// may have taken the records that held our newest term (the lost sector held the hard
// state and entries of one batch: seed 175838). A leader of the recovered, older term
// (a stale one, or its replayed messages) would then "verify" a log that lacks a
// committed entry. So the node first polls the others' terms, with a nonce fresh for
// this incarnation so no replayed answer counts: an entry committed in term T is held
// by a majority whose terms are >= T, and answers from all but quorum - 1 of the other
// voters reach at least one of them (we may have been one of the majority, so our own
// term does not count). A higher answer raises our term like any message.
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

bool Raft::termPollSatisfied() const {
  if (!isVoter(config_.id)) return true;  // a non-voter's acks committed nothing
  size_t others = conf_.voters.size() - 1;
  size_t needed = others - (quorum() - 1);
  size_t answered = 0;
  for (NodeId id : termPollAnswers_) {
    if (id != config_.id && isVoter(id)) ++answered;
  }
  return answered >= needed;
}

void Raft::sendTermPoll() {
  termPollElapsed_ = 0;
  for (NodeId v : conf_.voters) {
    if (v == config_.id || termPollAnswers_.count(v)) continue;
    Message m = outgoing(MsgType::TermPoll, v);
    m.context = termPollNonce_;
    send(std::move(m));
  }
}

void Raft::answerTermPoll(const Message& poll) {
  // Answered at any term. Not while we recover ourselves: our term may then be below
  // one we held.
  if (recovering_) return;
  Message r = outgoing(MsgType::TermPollResp, poll.from);
  r.context = poll.context;
  send(std::move(r));
}

void Raft::handleTermPollResp(const Message& resp) {
  if (!recovering_ || resp.context != termPollNonce_) return;  // late, or replayed
  if (resp.term > term_) {
    hitProbe(Probe::RecoveryTermRaised);
    becomeFollower(resp.term, kNoNode);
  }
  termPollAnswers_.insert(resp.from);
  maybeFinishRecovery();
}

void Raft::maybeFinishRecovery() {
  if (!recovering_) return;
  // The committed prefix matches every leader's log; beyond it, trust a leader's
  // verification only once our term is known to be current enough.
  Index verified = termPollSatisfied() ? recoveryVerified() : std::min(commit_, lastIndex());
  if (std::min(verified, stable_) < recoverUntil_) return;
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
  Message r = outgoing(MsgType::AppendResp, leader);
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
