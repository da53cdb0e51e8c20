// The recovering state after storage damage (core/raft_recovery.cc): the term poll that
// keeps a node whose newest term was lost from taking a stale leader's Appends as the
// verification of its log (seed 175838).
#include <gtest/gtest.h>

#include <vector>

#include "tests/raft/raft_harness.h"

namespace kvr::test {
namespace {

// Node 1 of five voters restarts recovering: its disk lost the batch that raised its
// term from 2 to 4 and replaced entries 4..5; it holds the older term-2 suffix again.
Raft recoveringNode(uint64_t seed = 7) {
  RecoveredState r = recoveredWith(2, {1, 1, 2, 2, 2}, 2);
  r.recovering = true;
  r.recoverUntil = 5;
  RaftConfig cfg;
  cfg.id = 1;
  return Raft(cfg, Rng(seed), votersUpTo(5), std::move(r));
}

std::vector<Message> sentOfType(Raft& r, MsgType type) {
  std::vector<Message> out;
  Ready rd = r.takeReady();
  for (auto* batch : {&rd.messages, &rd.afterPersist}) {
    for (auto& m : *batch) {
      if (m.type == type) out.push_back(m);
    }
  }
  return out;
}

Message msgFrom(NodeId from, MsgType type, Term term) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = 1;
  m.term = term;
  return m;
}

// The term-2 leader's Append (replayed, or from a leader that has not heard of term 4)
// covering the whole recovered log.
Message staleAppend() {
  Message m = msgFrom(2, MsgType::Append, 2);
  m.index = 5;
  m.logTerm = 2;
  m.commit = 2;
  return m;
}

Message pollAnswer(NodeId from, Term term, uint64_t nonce) {
  Message m = msgFrom(from, MsgType::TermPollResp, term);
  m.context = nonce;
  return m;
}

TEST(RaftRecovery, PollsTheOtherVotersTermsWithOneNonce) {
  Raft r = recoveringNode();
  ASSERT_TRUE(r.recovering());
  auto polls = sentOfType(r, MsgType::TermPoll);
  ASSERT_EQ(polls.size(), 4u);
  for (const auto& p : polls) {
    EXPECT_NE(p.context, 0u);
    EXPECT_EQ(p.context, polls[0].context);
  }
  // Another incarnation polls with another nonce: no answer to this one counts there.
  Raft again = recoveringNode(8);
  auto later = sentOfType(again, MsgType::TermPoll);
  ASSERT_FALSE(later.empty());
  EXPECT_NE(later[0].context, polls[0].context);
}

TEST(RaftRecovery, StaleLeaderDoesNotEndRecoveryBeforeThePoll) {
  Raft r = recoveringNode();
  r.step(staleAppend());
  // Without the poll this matched a leader "of its current term" up to its target.
  EXPECT_TRUE(r.recovering());
}

TEST(RaftRecovery, PollAnswersRaiseTheTermAndStaleAppendsNoLongerVerify) {
  Raft r = recoveringNode();
  uint64_t nonce = sentOfType(r, MsgType::TermPoll).at(0).context;
  r.step(pollAnswer(3, 4, nonce + 1));  // an answer to another poll: ignored
  EXPECT_EQ(r.term(), 2u);
  r.step(pollAnswer(3, 4, nonce));
  EXPECT_EQ(r.term(), 4u);
  r.step(pollAnswer(4, 3, nonce));  // two of the four others: enough with five voters
  r.step(staleAppend());            // now below our term: refused
  EXPECT_TRUE(r.recovering());

  // The leader of term 4 replaced entries 4..5; its Append makes our log match.
  Message fresh = msgFrom(3, MsgType::Append, 4);
  fresh.index = 3;
  fresh.logTerm = 2;
  fresh.commit = 5;
  fresh.entries = logWithTerms({4, 4}, 4);
  r.step(fresh);
  Ready rd = r.takeReady();
  ASSERT_EQ(rd.entries.size(), 2u);
  r.persisted(5, 4);
  EXPECT_FALSE(r.recovering());
  EXPECT_EQ(r.termAt(5), std::optional<Term>(4));
}

TEST(RaftRecovery, OneAnswerIsNotEnoughWithFiveVoters) {
  Raft r = recoveringNode();
  uint64_t nonce = sentOfType(r, MsgType::TermPoll).at(0).context;
  r.step(pollAnswer(3, 2, nonce));
  r.step(staleAppend());
  EXPECT_TRUE(r.recovering());
  r.step(pollAnswer(3, 2, nonce));  // the same member twice counts once
  r.step(staleAppend());
  EXPECT_TRUE(r.recovering());
  r.step(pollAnswer(5, 2, nonce));
  r.step(staleAppend());  // the others are at term 2 too: this leader is current
  EXPECT_FALSE(r.recovering());
}

TEST(RaftRecovery, LostPollsAreSentAgainUntilAnswered) {
  Raft r = recoveringNode();
  uint64_t nonce = sentOfType(r, MsgType::TermPoll).at(0).context;
  r.step(pollAnswer(2, 2, nonce));
  for (int i = 0; i < 10; ++i) r.tick();  // electionTicks: the default RaftConfig's
  auto again = sentOfType(r, MsgType::TermPoll);
  ASSERT_EQ(again.size(), 3u);  // not to node 2, which answered
  for (const auto& p : again) {
    EXPECT_NE(p.to, 2u);
    EXPECT_EQ(p.context, nonce);
  }
}

TEST(RaftRecovery, ARecoveringNodeDoesNotAnswerPollsAHealthyOneDoes) {
  Raft r = recoveringNode();
  (void)r.takeReady();
  Message poll = msgFrom(2, MsgType::TermPoll, 1);
  poll.context = 99;
  r.step(poll);
  EXPECT_TRUE(sentOfType(r, MsgType::TermPollResp).empty());

  RaftConfig cfg;
  cfg.id = 1;
  Raft healthy(cfg, Rng(1), votersUpTo(5), recoveredWith(6, {1, 1}));
  (void)healthy.takeReady();
  Term before = healthy.term();
  healthy.step(poll);  // a lower term: answered all the same, and nothing changes here
  auto answers = sentOfType(healthy, MsgType::TermPollResp);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].term, 6u);
  EXPECT_EQ(answers[0].context, 99u);
  EXPECT_EQ(healthy.term(), before);
}

TEST(RaftRecovery, NothingLostBeyondTheCommittedPrefixNeedsNoPoll) {
  RecoveredState rec = recoveredWith(2, {1, 1, 2, 2, 2}, 5);
  rec.recovering = true;
  rec.recoverUntil = 5;
  RaftConfig cfg;
  cfg.id = 1;
  Raft r(cfg, Rng(3), votersUpTo(5), std::move(rec));
  EXPECT_FALSE(r.recovering());
}

}  // namespace
}  // namespace kvr::test
