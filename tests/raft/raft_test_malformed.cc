// Malformed or misaddressed messages are dropped, counted, and change nothing.
#include <gtest/gtest.h>

#include "tests/raft/raft_harness.h"

namespace kvr::test {
namespace {

Message appendFrom(NodeId from, NodeId to, Term term, Index prev, Term prevTerm,
                   std::vector<Entry> entries) {
  Message m;
  m.type = MsgType::Append;
  m.from = from;
  m.to = to;
  m.term = term;
  m.index = prev;
  m.logTerm = prevTerm;
  m.entries = std::move(entries);
  return m;
}

Entry entry(Index i, Term t) { return Entry{t, i, EntryKind::Command, "x"}; }

struct Case {
  const char* what;
  Message msg;
};

TEST(RaftMalformed, DroppedAndCounted) {
  Message badType = appendFrom(2, 1, 5, 2, 1, {});
  badType.type = static_cast<MsgType>(200);
  Message badKind = appendFrom(2, 1, 5, 2, 1, {entry(3, 5)});
  badKind.entries[0].kind = static_cast<EntryKind>(9);
  Message badChunk;
  badChunk.type = MsgType::Snapshot;
  badChunk.from = 2;
  badChunk.to = 1;
  badChunk.term = 5;
  badChunk.snap.index = 10;
  badChunk.snap.term = 5;
  badChunk.snap.conf = votersUpTo(3);
  badChunk.snapSize = 4;
  badChunk.snapOffset = 2;
  badChunk.snapChunk = "abcd";  // runs past the declared size
  Message snapNoConf = badChunk;
  snapNoConf.snapOffset = 0;
  snapNoConf.snap.conf.voters.clear();

  // A non-member may be a leader whose Config entry we lack: only what a leader sends is
  // taken from it.
  Message voteFromStranger = appendFrom(9, 1, 5, 2, 1, {});
  voteFromStranger.type = MsgType::Vote;
  Message ackFromStranger = appendFrom(9, 1, 5, 2, 1, {});
  ackFromStranger.type = MsgType::AppendResp;
  Message badConf = appendFrom(2, 1, 5, 2, 1, {entry(3, 5)});
  badConf.entries[0].kind = EntryKind::Config;  // "x" is no configuration

  const std::vector<Case> cases = {
      {"a vote request from a non-member", voteFromStranger},
      {"an answer from a non-member", ackFromStranger},
      {"a configuration entry that does not decode", badConf},
      {"from no node", appendFrom(kNoNode, 1, 5, 2, 1, {})},
      {"to another node", appendFrom(2, 3, 5, 2, 1, {entry(3, 5)})},
      {"from itself", appendFrom(1, 1, 5, 2, 1, {})},
      {"non-contiguous entries", appendFrom(2, 1, 5, 2, 1, {entry(3, 5), entry(5, 5)})},
      {"entries not following prev", appendFrom(2, 1, 5, 2, 1, {entry(4, 5)})},
      {"entry term above the message term", appendFrom(2, 1, 5, 2, 1, {entry(3, 6)})},
      {"entry terms going backwards", appendFrom(2, 1, 5, 2, 1, {entry(3, 4), entry(4, 3)})},
      {"unknown message type", badType},
      {"unknown entry kind", badKind},
      {"snapshot chunk beyond its size", badChunk},
      {"snapshot without voters", snapNoConf},
  };
  // Node 1: log 1:1 2:1 at term 4.
  RaftConfig cfg;
  cfg.id = 1;
  Raft r(cfg, Rng(1), votersUpTo(3), recoveredWith(4, {1, 1}, 1));
  r.takeReady();  // recovered committed entries to apply
  ASSERT_FALSE(r.hasReady());
  uint64_t dropped = 0;
  for (auto& tc : cases) {
    r.step(tc.msg);
    ++dropped;
    EXPECT_EQ(r.droppedMessages(), dropped) << tc.what;
    EXPECT_EQ(r.term(), 4u) << tc.what;
    EXPECT_EQ(r.lastIndex(), 2u) << tc.what;
    EXPECT_EQ(r.leader(), kNoNode) << tc.what;
    EXPECT_FALSE(r.hasReady()) << tc.what;
  }
  // A well-formed Append is accepted and not counted.
  r.step(appendFrom(2, 1, 5, 2, 1, {entry(3, 5), entry(4, 5)}));
  EXPECT_EQ(r.droppedMessages(), dropped);
  EXPECT_EQ(r.lastIndex(), 4u);
  EXPECT_EQ(r.term(), 5u);
  EXPECT_EQ(r.leader(), 2u);
}

TEST(RaftMalformed, MisroutedMessagesInAClusterAreDropped) {
  RaftCluster c(3);
  c.elect(1);
  const Index last = c[2].lastIndex();
  // A leader's Append delivered to the wrong follower.
  Message m = appendFrom(1, 3, c[1].term(), last, c[1].lastTerm(),
                         {entry(last + 1, c[1].term())});
  c[2].step(m);
  EXPECT_EQ(c[2].droppedMessages(), 1u);
  EXPECT_EQ(c[2].lastIndex(), last);
  EXPECT_EQ(c[1].droppedMessages(), 0u);
}

}  // namespace
}  // namespace kvr::test
