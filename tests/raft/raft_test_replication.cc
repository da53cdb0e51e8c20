// Log replication: Figure 7 repair, the Figure 8 commitment rule, pipelining, batching,
// and the leader counting itself only once its own write is durable.
#include <gtest/gtest.h>

#include <set>

#include "tests/raft/raft_harness.h"

namespace kvr::test {
namespace {

bool isAppendTo(const Message& m, NodeId to) { return m.type == MsgType::Append && m.to == to; }

// Raft paper, Figure 7: the leader of term 8 and followers (a)-(f).
TEST(RaftReplication, Figure7FollowersConvergeOnTheLeadersLog) {
  const std::vector<Term> leaderLog = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
  const std::vector<std::vector<Term>> followers = {
      {1, 1, 1, 4, 4, 5, 5, 6, 6},           // (a) missing an entry
      {1, 1, 1, 4},                          // (b) missing many
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6},     // (c) an extra uncommitted entry
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},  // (d) extra entries of a later term
      {1, 1, 1, 4, 4, 4, 4},                 // (e) missing and extra
      {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3},     // (f) a whole divergent history
  };
  std::map<NodeId, RecoveredState> rec;
  rec[1] = recoveredWith(7, leaderLog);
  for (size_t i = 0; i < followers.size(); ++i) {
    rec[NodeId(i + 2)] = recoveredWith(7, followers[i]);
    // Give divergent entries distinct payloads so "identical" means identical.
    for (auto& e : rec[NodeId(i + 2)].entries) {
      if (e.index > leaderLog.size() || leaderLog[e.index - 1] != e.term)
        e.data = e.data.str() + "-stale";
    }
  }
  RaftCluster c(7, {}, rec);
  c.elect(1);  // (c) and (d) refuse their votes; (a), (b), (e), (f) elect node 1
  ASSERT_EQ(c[1].role(), Role::Leader);
  ASSERT_EQ(c[1].term(), 8u);

  const auto expected = c.logOf(1);
  ASSERT_EQ(expected.size(), 11u);  // the figure's log plus the term-8 no-op
  EXPECT_EQ(c[1].commitIndex(), 11u);
  for (NodeId id = 2; id <= 7; ++id) {
    EXPECT_EQ(c.logOf(id), expected) << "follower (" << char('a' + id - 2) << ")";
    EXPECT_EQ(c[id].commitIndex(), 11u);
  }
  // Fast back-up: at most one rejected round trip per conflicting term (plus one for
  // a follower that is merely short).
  for (NodeId id = 2; id <= 7; ++id) {
    const auto& log = followers[id - 2];
    std::set<Term> conflictingTerms;
    for (size_t i = 0; i < log.size(); ++i) {
      if (i >= leaderLog.size() || leaderLog[i] != log[i]) conflictingTerms.insert(log[i]);
    }
    size_t rejects = c.countSent([id](const Message& m) {
      return m.type == MsgType::AppendResp && m.from == id && m.reject;
    });
    EXPECT_LE(rejects, 1 + conflictingTerms.size())
        << "follower (" << char('a' + id - 2) << ")";
  }
}

// Raft paper, Figure 8: S5 holds index 2 from term 3, so index 2 from term 2 must not
// commit by being on a majority; only a term-4 entry on a majority commits it.
TEST(RaftReplication, Figure8OlderTermEntryCommitsOnlyWithACurrentTermEntry) {
  std::map<NodeId, RecoveredState> rec;
  rec[1] = recoveredWith(3, {1, 2}, 1);
  rec[2] = recoveredWith(3, {1, 2}, 1);
  rec[3] = recoveredWith(3, {1}, 1);
  rec[4] = recoveredWith(3, {1}, 1);
  rec[5] = recoveredWith(3, {1, 3}, 1);
  RaftConfig cfg;
  cfg.maxAppendBytes = 1;  // one entry per Append, so index 2 and 3 travel apart
  RaftCluster c(5, cfg, rec);
  c.stop(2);
  c.stop(5);
  // Index 3 (the term-4 no-op) never reaches S3 or S4.
  c.dropIf = [&c](const Message& m) {
    return m.type == MsgType::Append && !m.entries.empty() && m.entries.back().index >= 3 &&
           c[m.to].lastIndex() >= 2;
  };
  c.campaign(1);
  ASSERT_EQ(c[1].role(), Role::Leader);
  ASSERT_EQ(c[1].term(), 4u);
  c.settle();
  // Index 2 is now on S1, S3 and S4: a majority, but of an older term.
  ASSERT_EQ(c[3].lastIndex(), 2u);
  ASSERT_EQ(c[4].lastIndex(), 2u);
  ASSERT_EQ(c[3].termAt(2), 2u);
  EXPECT_EQ(c[1].commitIndex(), 1u)
      << "an entry of an earlier term committed by counting replicas";
  for (int i = 0; i < 5; ++i) c.tickAllAndSettle();
  EXPECT_EQ(c[1].commitIndex(), 1u);

  c.dropIf = nullptr;
  c.tickAllAndSettle();
  EXPECT_EQ(c[1].commitIndex(), 3u);
  EXPECT_EQ(c[3].termAt(3), 4u);
  EXPECT_EQ(c[4].termAt(3), 4u);
}

TEST(RaftReplication, PipelineKeepsAtMostMaxInflightAppendsPerFollower) {
  RaftConfig cfg;
  cfg.maxInflight = 4;
  RaftCluster c(3, cfg);
  c.elect(1);
  c.sent.clear();
  std::vector<Message> heldAcks;  // node 2's acknowledgements, delayed
  bool holding = true;
  c.dropIf = [&heldAcks, &holding](const Message& m) {
    if (holding && m.from == 2 && m.type == MsgType::AppendResp) {
      heldAcks.push_back(m);
      return true;
    }
    return false;
  };
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(c.propose(1, "p" + std::to_string(i)), ProposeError::None);
    c.settle();  // one Ready, and so one chance to send, per proposal
  }
  auto dataAppendsTo = [&c](NodeId to) {
    return c.countSent(
        [to](const Message& m) { return isAppendTo(m, to) && !m.entries.empty(); });
  };
  EXPECT_EQ(dataAppendsTo(2), 4u) << "the window to node 2 must close at maxInflight";
  EXPECT_EQ(dataAppendsTo(3), 20u);
  EXPECT_EQ(c[1].commitIndex(), c[1].lastIndex()) << "node 3 keeps the cluster committing";

  // Acknowledge one Append: exactly one slot opens, and it carries everything pending.
  // (Acks of empty commit-carrying Appends are held too: those use no window slot.)
  ASSERT_GE(heldAcks.size(), 4u);
  ASSERT_EQ(heldAcks.front().index, c[1].commitIndex() - 19);
  holding = false;
  c.deliver(heldAcks.front());
  c.settle();
  EXPECT_EQ(dataAppendsTo(2), 5u);
  EXPECT_EQ(c[2].lastIndex(), c[1].lastIndex());

  // The late acknowledgements are stale now and change nothing.
  for (size_t i = 1; i < heldAcks.size(); ++i) c.deliver(heldAcks[i]);
  c.settle();
  c.tickAllAndSettle();
  EXPECT_EQ(c.logOf(2), c.logOf(1));
  EXPECT_EQ(c[2].commitIndex(), c[1].commitIndex());
}

TEST(RaftReplication, ProposalsBeforeOneReadyShareOneAppendPerFollower) {
  RaftCluster c(3);
  c.elect(1);
  const Index before = c[1].lastIndex();
  for (int i = 0; i < 50; ++i)
    ASSERT_EQ(c.propose(1, "b" + std::to_string(i)), ProposeError::None);
  std::vector<Ready> seen;
  c.onReady = [&seen](NodeId id, const Ready& rd) {
    if (id == 1) seen.push_back(rd);
  };
  c.pump(1);
  ASSERT_EQ(seen.size(), 1u);
  const Ready& rd = seen[0];
  ASSERT_EQ(rd.entries.size(), 50u);
  EXPECT_EQ(rd.entries.front().index, before + 1);
  size_t appends = 0;
  for (auto& m : rd.messages) {
    if (m.type != MsgType::Append) continue;
    ++appends;
    EXPECT_EQ(m.entries.size(), 50u) << "to node " << m.to;
  }
  EXPECT_EQ(appends, 2u);
  c.settleCommit(1);
  EXPECT_EQ(c[1].commitIndex(), before + 50);
  EXPECT_EQ(c.node(2).applied.size(), before + 50);
}

// A commit index that no Append carried reaches idle followers at the leader's next
// tick, in one empty Append each, and only once (Raft::notifyCommit).
TEST(RaftReplication, IdleFollowersLearnTheCommitAtTheNextTickOnce) {
  RaftConfig quietHeartbeats;
  quietHeartbeats.heartbeatTicks = 5;  // no heartbeat (which carries it too) in the window
  RaftCluster c(3, quietHeartbeats);
  c.elect(1);
  Index idx = 0;
  ASSERT_EQ(c.propose(1, "x", &idx), ProposeError::None);
  c.settle();
  ASSERT_EQ(c[1].commitIndex(), idx);
  EXPECT_LT(c[2].commitIndex(), idx) << "told before the tick";
  EXPECT_LT(c[3].commitIndex(), idx) << "told before the tick";
  auto emptyAppends = [&c](size_t from) {
    size_t n = 0;
    for (size_t i = from; i < c.sent.size(); ++i) {
      if (c.sent[i].type == MsgType::Append && c.sent[i].entries.empty()) ++n;
    }
    return n;
  };
  size_t mark = c.sent.size();
  c.settleCommit(1);
  EXPECT_EQ(c[2].commitIndex(), idx);
  EXPECT_EQ(c[3].commitIndex(), idx);
  EXPECT_EQ(emptyAppends(mark), 2u);
  mark = c.sent.size();
  c.settleCommit(1);  // nothing new to tell
  EXPECT_EQ(emptyAppends(mark), 0u);
  // An Append with entries carried the new commit index before the tick: no notice.
  Index idy = 0;
  ASSERT_EQ(c.propose(1, "y", &idy), ProposeError::None);
  c.settle();
  ASSERT_EQ(c[1].commitIndex(), idy);
  ASSERT_EQ(c.propose(1, "z"), ProposeError::None);
  c.pump(1);  // the Appends of z carry commit idy; not delivered yet
  mark = c.sent.size();
  c.tick(1);
  c.pump(1);
  EXPECT_EQ(emptyAppends(mark), 0u);
  c.settleCommit(1);
  EXPECT_EQ(c[2].commitIndex(), c[1].commitIndex());
}

TEST(RaftReplication, CommitWaitsForTheLeadersOwnWriteWhenFollowersAreNoQuorum) {
  RaftCluster c(3);
  c.elect(1);
  c.stop(3);
  c.node(1).holdWrites = true;
  Index idx = 0;
  ASSERT_EQ(c.propose(1, "durable?", &idx), ProposeError::None);
  c.settle();
  ASSERT_EQ(c[2].lastIndex(), idx) << "node 2 has the entry (replicated in parallel)";
  ASSERT_EQ(c[2].stableIndex(), idx);
  EXPECT_LT(c[1].commitIndex(), idx)
      << "node 2 alone is no quorum; the leader's write is not durable";
  EXPECT_LT(c.node(1).applied.back().index, idx);
  c.persist(1);
  c.settle();
  EXPECT_EQ(c[1].commitIndex(), idx);
  EXPECT_EQ(c.node(1).applied.back().index, idx);
}

TEST(RaftReplication, LeaderAppliesOnlyWhatIsDurableLocally) {
  // Two followers are a quorum without the leader: the entry commits, but the leader
  // hands it out for apply only once its own copy is durable.
  RaftCluster c(3);
  c.elect(1);
  c.node(1).holdWrites = true;
  Index idx = 0;
  ASSERT_EQ(c.propose(1, "v", &idx), ProposeError::None);
  c.settle();
  EXPECT_EQ(c[1].commitIndex(), idx);
  EXPECT_LT(c.node(1).applied.back().index, idx);
  c.persist(1);
  c.settle();
  EXPECT_EQ(c.node(1).applied.back().index, idx);
}

}  // namespace
}  // namespace kvr::test
