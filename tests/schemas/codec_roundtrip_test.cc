// Every valid core value survives encode -> decode unchanged, on every codec path.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <capnp/message.h>

#include "schemas/codec.h"
#include "tests/schemas/codec_gen.h"
#include "tests/schemas/kv_bytes.h"

namespace kvr {
namespace {

constexpr uint64_t kCluster = 0x5eed;

RC_GTEST_PROP(CodecRoundTrip, MessageThroughBytes, ()) {
  Message m = test::genMessage();
  uint64_t cluster = *rc::gen::arbitrary<uint64_t>();
  std::string bytes = codec::encodeMessageBytes(cluster, m);
  Message back;
  std::string error;
  RC_ASSERT(codec::decodeMessageBytes(bytes, cluster, &back, &error));
  RC_ASSERT(error.empty());
  RC_ASSERT(back == m);
}

RC_GTEST_PROP(CodecRoundTrip, MessageThroughEnvelopeWords, ()) {
  Message m = test::genMessage();
  uint64_t cluster = *rc::gen::arbitrary<uint64_t>();
  auto words = codec::encodeEnvelope(cluster, m);
  Message back;
  uint64_t clusterBack = 0;
  std::string error;
  RC_ASSERT(codec::decodeEnvelope(words, &clusterBack, &back, &error));
  RC_ASSERT(clusterBack == cluster);
  RC_ASSERT(back == m);
}

RC_GTEST_PROP(CodecRoundTrip, MessageBodyThroughBuilderKeepsRouting, ()) {
  Message m = test::genMessage();
  capnp::MallocMessageBuilder builder;
  codec::toCapnp(m, builder.initRoot<schema::Message>());
  auto reader = builder.getRoot<schema::Message>().asReader();
  // The body carries no routing: from/to of the output are left as they were.
  Message back;
  back.from = m.from;
  back.to = m.to;
  std::string error;
  RC_ASSERT(codec::fromCapnp(reader, &back, &error));
  RC_ASSERT(back == m);
}

RC_GTEST_PROP(CodecRoundTrip, CommandThroughBytesAndBuilder, ()) {
  KvCommand c = test::genCommand();
  KvCommand back;
  std::string error;
  RC_ASSERT(test::fromMessageBytes(test::messageBytes(c), &back, &error));
  RC_ASSERT(back == c);

  capnp::MallocMessageBuilder builder;
  codec::toCapnp(c, builder.initRoot<schema::Command>());
  RC_ASSERT(codec::fromCapnp(builder.getRoot<schema::Command>().asReader()) == c);
}

RC_GTEST_PROP(CodecRoundTrip, ReplyThroughBytesAndBuilder, ()) {
  KvReply r = test::genReply();
  KvReply back;
  std::string error;
  RC_ASSERT(test::fromMessageBytes(test::messageBytes(r), &back, &error));
  RC_ASSERT(back == r);

  capnp::MallocMessageBuilder builder;
  auto b = builder.initRoot<schema::Reply>();
  codec::toCapnp(r, b);
  b.setError("explanation");  // the error text rides along without disturbing the reply
  auto reader = builder.getRoot<schema::Reply>().asReader();
  KvReply fromBuilder;
  RC_ASSERT(codec::fromCapnp(reader, &fromBuilder, &error));
  RC_ASSERT(fromBuilder == r);
  RC_ASSERT(reader.getError() == "explanation");
}

TEST(CodecRoundTrip, LargestAllowedAppendFits) {
  Message m;
  m.type = MsgType::Append;
  m.from = 1;
  m.to = 2;
  m.term = 3;
  for (size_t i = 0; i < limits::kMaxEntriesPerAppend; ++i) {
    m.entries.push_back(Entry{3, i + 1, EntryKind::Command, std::string(100, 'x')});
  }
  Message back;
  std::string error;
  ASSERT_TRUE(codec::decodeMessageBytes(codec::encodeMessageBytes(kCluster, m), kCluster, &back,
                                        &error))
      << error;
  EXPECT_TRUE(back == m);
}

TEST(CodecRoundTrip, LargestSnapshotChunkFits) {
  Message m;
  m.type = MsgType::Snapshot;
  m.from = 1;
  m.to = 7;
  m.snap.index = 100;
  m.snap.term = 2;
  m.snap.conf.voters = {1, 2, 3, 4, 5, 6, 7};
  m.snapChunk = std::string(limits::kMaxSnapshotChunkBytes, '\xab');
  m.snapSize = m.snapChunk.size();
  m.snapDone = true;
  Message back;
  std::string error;
  ASSERT_TRUE(codec::decodeMessageBytes(codec::encodeMessageBytes(kCluster, m), kCluster, &back,
                                        &error))
      << error;
  EXPECT_TRUE(back == m);
}

TEST(CodecRoundTrip, UnalignedInputDecodes) {
  Message m;
  m.type = MsgType::Vote;
  m.from = 2;
  m.to = 3;
  m.term = 9;
  std::string bytes = codec::encodeMessageBytes(kCluster, m);
  std::string shifted = "x" + bytes;  // data() + 1 is not word aligned
  Message back;
  std::string error;
  ASSERT_TRUE(
      codec::decodeMessageBytes(std::string_view(shifted).substr(1), kCluster, &back, &error))
      << error;
  EXPECT_TRUE(back == m);
}

TEST(CodecRoundTrip, NodeStatusCarriesRoleText) {
  ReplicaStatus s;
  s.id = 3;
  s.role = Role::Leader;
  s.term = 7;
  s.leader = 3;
  s.commit = 10;
  s.applied = 9;
  s.lastIndex = 11;
  s.snapshotIndex = 4;
  capnp::MallocMessageBuilder builder;
  codec::toCapnp(s, builder.initRoot<schema::NodeStatus>());
  auto r = builder.getRoot<schema::NodeStatus>().asReader();
  EXPECT_EQ(r.getId(), 3u);
  EXPECT_EQ(r.getRole(), "leader");
  EXPECT_EQ(r.getTerm(), 7u);
  EXPECT_EQ(r.getLeader(), 3u);
  EXPECT_EQ(r.getCommit(), 10u);
  EXPECT_EQ(r.getApplied(), 9u);
  EXPECT_EQ(r.getLastIndex(), 11u);
  EXPECT_EQ(r.getSnapshotIndex(), 4u);
}

}  // namespace
}  // namespace kvr
