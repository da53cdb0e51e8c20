// Membership changes: the configuration codec and checks (core/membership.h), and the
// Raft rules: learners, one change at a time after an own-term commit, a configuration
// in force from the moment it is in the log (and gone when truncated), the leader that
// removes itself, a removed node that cannot disturb.
#include <gtest/gtest.h>

#include "core/membership.h"
#include "core/probe.h"
#include "tests/raft/raft_harness.h"

namespace kvr {
namespace {

using test::RaftCluster;
using test::votersUpTo;

ConfState withLearner(ConfState c, NodeId id) {
  ConfState out;
  ConfChange cc{ConfChangeType::AddLearner, id, "raft" + std::to_string(id),
                "client" + std::to_string(id)};
  EXPECT_EQ(applyConfChange(c, cc, &out), ConfChangeError::None);
  return out;
}

TEST(Membership, ConfRoundTripAndRejects) {
  ConfState c = withLearner(votersUpTo(3), 5);
  ConfState back;
  ASSERT_TRUE(decodeConf(encodeConf(c), &back));
  EXPECT_EQ(back, c);
  EXPECT_EQ(describeConf(c), "voters=1,2,3 learners=5");
  std::string bytes = encodeConf(c);
  EXPECT_FALSE(decodeConf(bytes + "x", &back));                        // trailing byte
  EXPECT_FALSE(decodeConf(bytes.substr(0, bytes.size() - 1), &back));  // truncated
  EXPECT_FALSE(decodeConf("", &back));
  ConfState bad = c;
  bad.learners = {2};  // also a voter
  EXPECT_FALSE(decodeConf(encodeConf(bad), &back));
  bad = c;
  bad.voters = {3, 1};
  EXPECT_FALSE(decodeConf(encodeConf(bad), &back));
  bad = c;
  bad.voters.clear();
  EXPECT_FALSE(decodeConf(encodeConf(bad), &back));
  bad = votersUpTo(7);
  bad.learners = {8};
  EXPECT_FALSE(decodeConf(encodeConf(bad), &back));
}

TEST(Membership, BadChangesAreRefused) {
  ConfState c = withLearner(votersUpTo(3), 4);
  ConfState out;
  auto add = [](NodeId id, std::string raft, std::string client) {
    return ConfChange{ConfChangeType::AddLearner, id, std::move(raft), std::move(client)};
  };
  EXPECT_EQ(applyConfChange(c, add(2, "a", "b"), &out), ConfChangeError::IdExists);
  EXPECT_EQ(applyConfChange(c, add(4, "a", "b"), &out), ConfChangeError::IdExists);
  EXPECT_EQ(applyConfChange(c, add(0, "a", "b"), &out), ConfChangeError::InvalidId);
  EXPECT_EQ(applyConfChange(c, add(8, "a", "b"), &out), ConfChangeError::InvalidId);
  EXPECT_EQ(applyConfChange(c, add(5, "", "b"), &out), ConfChangeError::BadAddress);
  EXPECT_EQ(applyConfChange(c, add(5, std::string(257, 'a'), "b"), &out),
            ConfChangeError::BadAddress);
  EXPECT_EQ(applyConfChange(c, add(5, "raft4", "b"), &out), ConfChangeError::AddressInUse);
  EXPECT_EQ(applyConfChange(c, add(5, "a", "client4"), &out), ConfChangeError::AddressInUse);
  EXPECT_EQ(applyConfChange(c, ConfChange{ConfChangeType::Promote, 6, {}, {}}, &out),
            ConfChangeError::UnknownNode);
  EXPECT_EQ(applyConfChange(c, ConfChange{ConfChangeType::Promote, 2, {}, {}}, &out),
            ConfChangeError::NotLearner);
  EXPECT_EQ(applyConfChange(c, ConfChange{ConfChangeType::Remove, 6, {}, {}}, &out),
            ConfChangeError::UnknownNode);
  EXPECT_EQ(applyConfChange(votersUpTo(1), ConfChange{ConfChangeType::Remove, 1, {}, {}}, &out),
            ConfChangeError::LastVoter);
  ConfState full = votersUpTo(7);
  EXPECT_EQ(applyConfChange(votersUpTo(6), add(7, "a", "b"), &out), ConfChangeError::None);
  EXPECT_EQ(applyConfChange(out, add(8, "c", "d"), &out), ConfChangeError::InvalidId);
  full.voters.pop_back();
  full = withLearner(full, 7);
  ConfState removed;
  ASSERT_EQ(applyConfChange(full, ConfChange{ConfChangeType::Remove, 7, {}, {}}, &removed),
            ConfChangeError::None);
  EXPECT_EQ(removed, votersUpTo(6));  // the address goes with the member
  EXPECT_NE(confChangeErrorText(ConfChangeError::LearnerLags), std::string("?"));
}

TEST(Membership, LearnerCatchesUpNeverVotesThenPromoted) {
  RaftCluster c(3);
  c.elect(1);
  for (int i = 0; i < 5; ++i) c.propose(1, "v" + std::to_string(i));
  c.settle();
  EXPECT_EQ(c.change(1, ConfChangeType::AddLearner, 4), ConfChangeError::None);
  c.addNode(4, c[1].conf());
  // A second change waits for the first to commit.
  EXPECT_EQ(c.change(1, ConfChangeType::Promote, 4), ConfChangeError::InProgress);
  c.settle();
  EXPECT_EQ(c[4].lastIndex(), c[1].lastIndex());
  EXPECT_EQ(c[4].conf(), c[1].conf());
  EXPECT_EQ(c[4].conf().learners, std::vector<NodeId>{4});
  // A learner never campaigns.
  Term t = c[4].term();
  c.tick(4, 200);
  c.settle();
  EXPECT_EQ(c[4].role(), Role::Follower);
  EXPECT_EQ(c[4].term(), t);
  EXPECT_EQ(c.leaders(), std::vector<NodeId>{1});
  EXPECT_EQ(c.change(1, ConfChangeType::Promote, 4), ConfChangeError::None);
  c.settle();
  for (NodeId id = 1; id <= 4; ++id) EXPECT_EQ(c[id].conf().voters, votersUpTo(4).voters);
  EXPECT_EQ(c[1].commitIndex(), c[1].lastIndex());
}

TEST(Membership, LaggingLearnerNotPromoted) {
  RaftCluster c(3);
  c.elect(1);
  ASSERT_EQ(c.change(1, ConfChangeType::AddLearner, 4), ConfChangeError::None);
  c.addNode(4, c[1].conf());
  c.isolate(4);
  c.settle();
  for (uint64_t i = 0; i < limits::kMaxPromoteLagEntries + 10; ++i) c.propose(1, "x");
  c.settle();
  EXPECT_EQ(c.change(1, ConfChangeType::Promote, 4), ConfChangeError::LearnerLags);
  c.heal();
  c.tickAllAndSettle(5);
  EXPECT_EQ(c.change(1, ConfChangeType::Promote, 4), ConfChangeError::None);
}

TEST(Membership, NoChangeBeforeTheLeaderCommitsInItsTerm) {
  RaftConfig base;
  base.checkQuorum = false;  // no lease: node 2 can win while 1 is cut off
  RaftCluster c(3, base);
  c.elect(1);
  c.isolate(1);
  // Node 2 wins, but no acknowledgement reaches it: its no-op stays uncommitted.
  c.dropIf = [](const Message& m) { return m.to == 2 && m.type == MsgType::AppendResp; };
  c.campaign(2);
  ASSERT_EQ(c[2].role(), Role::Leader);
  EXPECT_EQ(c.change(2, ConfChangeType::AddLearner, 4), ConfChangeError::NotReady);
  c.heal();
  c.isolate(1);
  c.tick(2, 3);
  c.settle();
  EXPECT_EQ(c.change(2, ConfChangeType::AddLearner, 4), ConfChangeError::None);
}

TEST(Membership, LearnerNotCountedForCommitOrReads) {
  RaftCluster c(3);
  c.elect(1);
  ASSERT_EQ(c.change(1, ConfChangeType::AddLearner, 4), ConfChangeError::None);
  c.addNode(4, c[1].conf());
  c.settle();
  c.isolate(2);
  c.isolate(3);
  Index at = 0;
  ASSERT_EQ(c.propose(1, "only-leader-and-learner", &at), ProposeError::None);
  c[1].readIndex(77);
  c.settle();
  EXPECT_EQ(c[4].lastIndex(), at);    // the learner has it ...
  EXPECT_LT(c[1].commitIndex(), at);  // ... which commits nothing
  EXPECT_FALSE(c.readFor(1, 77).has_value());
}

TEST(Membership, ConfigRevertsWhenTruncated) {
  RaftConfig base;
  base.checkQuorum = false;
  RaftCluster c(3, base);
  c.elect(1);
  c.isolate(1);
  ASSERT_EQ(c.change(1, ConfChangeType::AddLearner, 4), ConfChangeError::None);
  EXPECT_EQ(c[1].conf().learners, std::vector<NodeId>{4});  // in force while uncommitted
  c.settle();
  c.elect(2);
  c.heal();
  uint64_t before = ProbeCounts::global().get(Probe::ConfReverted);
  c.tickAllAndSettle(5);
  EXPECT_EQ(c[1].role(), Role::Follower);
  EXPECT_EQ(c[1].conf(), votersUpTo(3));
  EXPECT_EQ(c[1].confIndex(), 0u);
  EXPECT_GT(ProbeCounts::global().get(Probe::ConfReverted), before);
}

TEST(Membership, RemovedLeaderStepsDownAndHandsOver) {
  RaftCluster c(3);
  c.elect(1);
  ASSERT_EQ(c.change(1, ConfChangeType::Remove, 1), ConfChangeError::None);
  EXPECT_EQ(c[1].role(), Role::Leader);  // leads until the removal commits
  c.settle();
  EXPECT_NE(c[1].role(), Role::Leader);
  auto leaders = c.leaders();
  ASSERT_EQ(leaders.size(), 1u);
  EXPECT_NE(leaders[0], 1u);
  NodeId leader = leaders[0];
  Term t = c[leader].term();
  c.tick(1, 500);  // no longer a voter: never campaigns
  c.settle();
  EXPECT_EQ(c[leader].term(), t);
  EXPECT_EQ(c[leader].role(), Role::Leader);
  EXPECT_EQ(c[leader].conf().voters, (std::vector<NodeId>{2, 3}));
}

TEST(Membership, RemovedNodeCannotDisturb) {
  RaftConfig base;
  base.preVote = false;  // its own term climbs with every campaign
  base.checkQuorum = false;
  RaftCluster c(3, base);
  c.elect(1);
  c.isolate(3);
  ASSERT_EQ(c.change(1, ConfChangeType::Remove, 3), ConfChangeError::None);
  c.settle();
  ASSERT_EQ(c[1].conf().voters, (std::vector<NodeId>{1, 2}));
  EXPECT_EQ(c[3].conf().voters, votersUpTo(3).voters);  // never learned of it
  c.heal();
  Term t = c[1].term();
  for (int i = 0; i < 20; ++i) c.campaign(3);
  EXPECT_GT(c[3].term(), t);
  EXPECT_EQ(c[1].term(), t);
  EXPECT_EQ(c[2].term(), t);
  EXPECT_EQ(c.leaders(), (std::vector<NodeId>{1}));
}

TEST(Membership, SnapshotCarriesTheConfiguration) {
  RaftConfig base;
  base.compactionKeepEntries = 0;
  RaftCluster c(3, base);
  c.elect(1);
  ASSERT_EQ(c.change(1, ConfChangeType::AddLearner, 5), ConfChangeError::None);
  c.settle();
  for (int i = 0; i < 5; ++i) c.propose(1, "x");
  c.settle();
  c.compact(1, "state");
  ASSERT_GT(c[1].snapshotIndex(), 0u);
  EXPECT_EQ(c[1].snapshot().meta.conf, c[1].conf());
  c.addNode(5, c[1].conf());
  uint64_t before = ProbeCounts::global().get(Probe::LearnerSnapshot);
  c.tickAllAndSettle(3);
  EXPECT_EQ(c[5].snapshotIndex(), c[1].snapshotIndex());
  EXPECT_EQ(c[5].conf(), c[1].conf());
  EXPECT_GT(ProbeCounts::global().get(Probe::LearnerSnapshot), before);
}

}  // namespace
// A single voter wins a term without asking anyone, so no vote request waits for its
// term and vote to be durable: it must lead only once they are, or a crash could take
// them back and it could vote in that term again, for another node (regression seeds
// single-voter-term-not-durable, single-voter-vote-not-durable).
TEST(Membership, SingleVoterLeadsOnceItsVoteIsDurable) {
  RaftCluster c(1);
  c.elect(1);
  ASSERT_EQ(c.change(1, ConfChangeType::AddLearner, 2), ConfChangeError::None);
  c.addNode(2, c[1].conf());
  c.settle();
  c.crash(1);
  c.reboot(1);
  c.node(1).holdWrites = true;
  Term before = c[1].term();
  size_t sentBefore = c.sent.size();
  for (int i = 0; i < 1000 && c[1].role() == Role::Follower; ++i) c.tick(1);
  ASSERT_EQ(c[1].role(), Role::Candidate);
  ASSERT_GT(c[1].term(), before);
  c.settle();
  EXPECT_EQ(c[1].role(), Role::Candidate) << "led before its vote was durable";
  for (size_t i = sentBefore; i < c.sent.size(); ++i)
    EXPECT_LT(c.sent[i].term, c[1].term()) << "sent at a term that was not durable";
  c.persist(1);
  EXPECT_EQ(c[1].role(), Role::Leader);
  c.node(1).holdWrites = false;
  c.settle();
  EXPECT_EQ(c[2].term(), c[1].term());
  EXPECT_EQ(c[2].lastIndex(), c[1].lastIndex());
}

// Votes are answered without consulting the configuration (thesis §4.1): our log may
// not yet hold the change that made the candidate a voter. But a non-voter whose log is
// behind ours is dropped before its term can depose anyone: a removed node.
TEST(Membership, VoteFromANonVoterCountsOnlyIfItsLogIsUpToDate) {
  RaftConfig base;
  base.checkQuorum = false;
  RaftCluster c(3, base);
  c.elect(1);
  c.settle();
  Raft& r = c[2];
  const Term t = r.term();
  Message v;
  v.type = MsgType::Vote;
  v.from = 5;
  v.to = 2;
  v.term = t + 1;
  v.index = r.lastIndex() - 1;
  v.logTerm = r.lastTerm();
  const uint64_t dropped = r.droppedMessages();
  r.step(v);
  EXPECT_EQ(r.term(), t) << "a removed node's campaign changed our term";
  EXPECT_FALSE(r.hasReady());
  EXPECT_EQ(r.droppedMessages(), dropped);
  v.index = r.lastIndex();
  r.step(v);
  EXPECT_EQ(r.term(), t + 1);
  Ready rd = r.takeReady();
  bool granted = false;
  for (const Message& m : rd.afterPersist)
    granted |= m.type == MsgType::VoteResp && m.to == 5 && !m.reject;
  EXPECT_TRUE(granted);
  v.from = 8;  // beyond any configuration: malformed
  v.term = t + 2;
  r.step(v);
  EXPECT_EQ(r.droppedMessages(), dropped + 1);
  EXPECT_EQ(r.term(), t + 1);
}

}  // namespace kvr
