// Leader election: who may win, one vote per term, the up-to-date check, and that a
// vote leaves the node only after the hard state holding it is durable.
#include <gtest/gtest.h>

#include "tests/raft/raft_harness.h"

namespace kvr::test {
namespace {

Message voteRequest(NodeId from, NodeId to, Term term, Index lastIdx, Term lastTrm,
                    MsgType type = MsgType::Vote) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  m.index = lastIdx;
  m.logTerm = lastTrm;
  return m;
}

Raft makeNode(NodeId id, size_t voters, RecoveredState r = {}, RaftConfig c = {}) {
  c.id = id;
  return Raft(c, Rng(id), votersUpTo(voters), std::move(r));
}

// The VoteResp a node sends after stepping `m`, from the one Ready it produces.
struct VoteAnswer {
  Ready ready;
  std::optional<Message> resp;
};
VoteAnswer answerVote(Raft& r, Message m) {
  r.step(std::move(m));
  VoteAnswer a{r.takeReady(), std::nullopt};
  // A pre-vote promises nothing durable, so its answer may leave at once.
  for (auto& msg : a.ready.messages) {
    if (msg.type == MsgType::PreVoteResp) a.resp = msg;
  }
  for (auto& msg : a.ready.afterPersist) {
    if (msg.type == MsgType::VoteResp) a.resp = msg;
  }
  return a;
}

TEST(RaftElection, SingleNodeElectsItselfAndCommitsItsNoop) {
  RaftCluster c(1);
  for (int i = 0; i < 100 && c[1].role() != Role::Leader; ++i) c.tickAllAndSettle();
  ASSERT_EQ(c[1].role(), Role::Leader);
  EXPECT_EQ(c[1].term(), 1u);
  EXPECT_EQ(c[1].leader(), 1u);
  c.settle();
  EXPECT_EQ(c[1].commitIndex(), 1u);
  ASSERT_EQ(c.node(1).applied.size(), 1u);
  EXPECT_EQ(c.node(1).applied[0].kind, EntryKind::Noop);
}

void expectOneLeaderElected(size_t n, uint64_t seed) {
  RaftCluster c(n, {}, {}, seed);
  std::map<Term, NodeId> leaderOfTerm;
  for (int t = 0; t < 200; ++t) {
    c.tickAllAndSettle();
    for (NodeId l : c.leaders()) {
      auto [it, fresh] = leaderOfTerm.emplace(c[l].term(), l);
      ASSERT_EQ(it->second, l) << "two leaders in term " << c[l].term();
      (void)fresh;
    }
  }
  auto leaders = c.leaders();
  ASSERT_EQ(leaders.size(), 1u) << "cluster of " << n << ", seed " << seed;
  NodeId l = leaders[0];
  for (NodeId id = 1; id <= n; ++id) {
    EXPECT_EQ(c[id].term(), c[l].term());
    EXPECT_EQ(c[id].leader(), l) << "node " << id;
    EXPECT_EQ(c[id].commitIndex(), c[l].lastIndex());
  }
}

TEST(RaftElection, ThreeNodesElectExactlyOneLeader) {
  for (uint64_t seed = 1; seed <= 5; ++seed) expectOneLeaderElected(3, seed);
}

TEST(RaftElection, FiveNodesElectExactlyOneLeader) {
  for (uint64_t seed = 1; seed <= 5; ++seed) expectOneLeaderElected(5, seed);
}

TEST(RaftElection, OneVotePerTerm) {
  Raft r = makeNode(1, 3);
  auto first = answerVote(r, voteRequest(2, 1, 1, 0, 0));
  ASSERT_TRUE(first.resp);
  EXPECT_FALSE(first.resp->reject);
  EXPECT_EQ(r.vote(), 2u);

  // A second candidate in the same term, with an equally good log, is refused.
  auto second = answerVote(r, voteRequest(3, 1, 1, 0, 0));
  ASSERT_TRUE(second.resp);
  EXPECT_TRUE(second.resp->reject);
  EXPECT_EQ(r.vote(), 2u);

  // The first candidate asking again (a retry) gets the same answer.
  auto retry = answerVote(r, voteRequest(2, 1, 1, 0, 0));
  ASSERT_TRUE(retry.resp);
  EXPECT_FALSE(retry.resp->reject);

  // A later term frees the vote.
  auto next = answerVote(r, voteRequest(3, 1, 2, 0, 0));
  ASSERT_TRUE(next.resp);
  EXPECT_FALSE(next.resp->reject);
  EXPECT_EQ(r.vote(), 3u);
  EXPECT_EQ(r.term(), 2u);
}

TEST(RaftElection, CandidateWithOlderLogIsRefused) {
  // Voter log: 1:1 2:1 3:2.
  RecoveredState rec = recoveredWith(2, {1, 1, 2});
  struct Case {
    Index lastIdx;
    Term lastTrm;
    bool granted;
  } cases[] = {
      {5, 1, false},  // longer but older last term
      {2, 2, false},  // same last term, shorter
      {0, 0, false},  // empty log
      {3, 2, true},   // identical
      {4, 2, true},   // same term, longer
      {1, 3, true},   // newer last term, shorter
  };
  Term term = 3;
  for (auto& tc : cases) {
    Raft r = makeNode(1, 3, rec);
    auto a = answerVote(r, voteRequest(2, 1, term, tc.lastIdx, tc.lastTrm));
    ASSERT_TRUE(a.resp);
    EXPECT_EQ(!a.resp->reject, tc.granted)
        << "candidate last (" << tc.lastIdx << ", " << tc.lastTrm << ")";
    EXPECT_EQ(r.vote(), tc.granted ? 2u : kNoNode);
    // Pre-votes follow the same rule and never change the voter's term.
    Raft p = makeNode(1, 3, rec);
    auto pa = answerVote(p, voteRequest(2, 1, term, tc.lastIdx, tc.lastTrm, MsgType::PreVote));
    ASSERT_TRUE(pa.resp);
    EXPECT_EQ(!pa.resp->reject, tc.granted);
    EXPECT_EQ(p.term(), 2u);
    EXPECT_EQ(p.vote(), kNoNode);
  }
}

TEST(RaftElection, VoteLeavesOnlyAfterItsHardStateIsPersisted) {
  Raft r = makeNode(1, 3);
  r.step(voteRequest(2, 1, 4, 0, 0));
  Ready rd = r.takeReady();
  for (auto& m : rd.messages) {
    EXPECT_NE(m.type, MsgType::VoteResp) << "a vote must wait for the durable hard state";
  }
  ASSERT_EQ(rd.afterPersist.size(), 1u);
  EXPECT_EQ(rd.afterPersist[0].type, MsgType::VoteResp);
  EXPECT_FALSE(rd.afterPersist[0].reject);
  ASSERT_TRUE(rd.hardState.has_value()) << "the vote's hard state must be in the same Ready";
  EXPECT_EQ(rd.hardState->term, 4u);
  EXPECT_EQ(rd.hardState->vote, 2u);
  EXPECT_TRUE(rd.mustPersist());
}

TEST(RaftElection, CandidateVotesForItselfInTheSameReadyAsItsVoteRequests) {
  RaftConfig cfg;
  cfg.preVote = false;
  Raft r = makeNode(1, 3, {}, cfg);
  for (int i = 0; i < 100 && r.role() != Role::Candidate; ++i) r.tick();
  ASSERT_EQ(r.role(), Role::Candidate);
  Ready rd = r.takeReady();
  ASSERT_TRUE(rd.hardState.has_value());
  EXPECT_EQ(rd.hardState->vote, 1u);
  EXPECT_EQ(rd.hardState->term, 1u);
  size_t votes = 0;
  for (auto& m : rd.afterPersist) votes += m.type == MsgType::Vote ? 1 : 0;
  for (auto& m : rd.messages) EXPECT_NE(m.type, MsgType::Vote);
  EXPECT_EQ(votes, 2u);
}

TEST(RaftElection, HeldVotesDelayTheElection) {
  // The harness holds node 2's writes: its vote cannot leave until they are durable.
  RaftConfig cfg;
  cfg.preVote = false;
  RaftCluster c(3, cfg);
  c.node(2).holdWrites = true;
  c.stop(3);
  c.campaign(1);
  EXPECT_EQ(c[1].role(), Role::Candidate);
  EXPECT_EQ(c[2].vote(), 1u);
  c.persist(2);
  c.settle();
  EXPECT_EQ(c[1].role(), Role::Leader);
}

}  // namespace
}  // namespace kvr::test
