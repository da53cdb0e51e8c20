// The decoder refuses every envelope that breaks a rule, with a message saying which.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include "schemas/codec.h"
#include "tests/schemas/kv_bytes.h"

namespace kvr {
namespace {

constexpr uint64_t kRejectCluster = 42;

std::string toBytes(kj::ArrayPtr<const capnp::word> words) {
  auto b = words.asBytes();
  return std::string(reinterpret_cast<const char*>(b.begin()), b.size());
}

// An envelope built by hand, so it can break rules the encoder would refuse to break.
std::string rawEnvelope(std::function<void(schema::Message::Builder)> fill, NodeId from = 1,
                        NodeId to = 2, uint64_t cluster = kRejectCluster) {
  capnp::MallocMessageBuilder builder;
  auto env = builder.initRoot<schema::PeerEnvelope>();
  env.setClusterId(cluster);
  env.setFrom(from);
  env.setTo(to);
  fill(env.initMessage());
  return toBytes(capnp::messageToFlatArray(builder));
}

// Decodes and expects a refusal whose message contains `needle`.
void expectRejected(const std::string& bytes, const std::string& needle) {
  Message m;
  std::string error;
  EXPECT_FALSE(codec::decodeMessageBytes(bytes, kRejectCluster, &m, &error));
  EXPECT_NE(error.find(needle), std::string::npos) << "error was: " << error;
}

TEST(CodecReject, ValidRawEnvelopeIsAccepted) {
  // Guards the tests below: they differ from this one only in the broken rule.
  Message m;
  std::string error;
  auto bytes = rawEnvelope([](schema::Message::Builder b) {
    b.setType(schema::MsgType::APPEND);
    b.setTerm(2);
    b.setIndex(5);
    auto es = b.initEntries(1);
    es[0].setTerm(2);
    es[0].setIndex(6);
  });
  EXPECT_TRUE(codec::decodeMessageBytes(bytes, kRejectCluster, &m, &error)) << error;
}

TEST(CodecReject, WrongClusterNamesBothIds) {
  Message m;
  m.type = MsgType::Heartbeat;
  m.from = 1;
  m.to = 2;
  Message out;
  std::string error;
  EXPECT_FALSE(
      codec::decodeMessageBytes(codec::encodeMessageBytes(1234567, m), 7654321, &out, &error));
  EXPECT_NE(error.find("1234567"), std::string::npos) << error;
  EXPECT_NE(error.find("7654321"), std::string::npos) << error;

  // The reader-level envelope check says the same.
  capnp::MallocMessageBuilder builder;
  codec::toCapnp(1234567, m, builder.initRoot<schema::PeerEnvelope>());
  error.clear();
  EXPECT_FALSE(codec::fromCapnp(builder.getRoot<schema::PeerEnvelope>().asReader(), 7654321,
                                &out, &error));
  EXPECT_NE(error.find("1234567"), std::string::npos) << error;
  EXPECT_NE(error.find("7654321"), std::string::npos) << error;
}

TEST(CodecReject, OversizedEntryCount) {
  auto bytes = rawEnvelope([](schema::Message::Builder b) {
    b.setType(schema::MsgType::APPEND);
    b.setTerm(1);
    auto es = b.initEntries(limits::kMaxEntriesPerAppend + 1);
    for (uint32_t i = 0; i < es.size(); ++i) {
      es[i].setTerm(1);
      es[i].setIndex(i + 1);
    }
  });
  expectRejected(bytes, "entries, over the limit");
}

TEST(CodecReject, EncoderRefusesOversizedEntryCount) {
  Message m;
  m.type = MsgType::Append;
  m.from = 1;
  m.to = 2;
  m.term = 1;
  for (size_t i = 0; i <= limits::kMaxEntriesPerAppend; ++i) {
    m.entries.push_back(Entry{1, i + 1, EntryKind::Noop, {}});
  }
  EXPECT_THROW(codec::encodeMessageBytes(kRejectCluster, m), kj::Exception);
}

TEST(CodecReject, UnknownMessageType) {
  expectRejected(rawEnvelope([](schema::Message::Builder b) {
                   b.setType(static_cast<schema::MsgType>(kMsgTypeCount));
                 }),
                 "unknown message type " + std::to_string(kMsgTypeCount));
}

TEST(CodecReject, UnknownEntryKind) {
  expectRejected(rawEnvelope([](schema::Message::Builder b) {
                   b.setType(schema::MsgType::APPEND);
                   b.setTerm(1);
                   auto es = b.initEntries(1);
                   es[0].setTerm(1);
                   es[0].setIndex(1);
                   es[0].setKind(static_cast<schema::EntryKind>(3));
                 }),
                 "unknown kind 3");
}

TEST(CodecReject, EntriesOutsideAppend) {
  expectRejected(rawEnvelope([](schema::Message::Builder b) {
                   b.setType(schema::MsgType::HEARTBEAT);
                   b.setTerm(1);
                   auto es = b.initEntries(1);
                   es[0].setTerm(1);
                   es[0].setIndex(1);
                 }),
                 "only Append may");
}

TEST(CodecReject, EntriesWithGap) {
  expectRejected(rawEnvelope([](schema::Message::Builder b) {
                   b.setType(schema::MsgType::APPEND);
                   b.setTerm(1);
                   b.setIndex(10);
                   auto es = b.initEntries(2);
                   es[0].setTerm(1);
                   es[0].setIndex(11);
                   es[1].setTerm(1);
                   es[1].setIndex(13);
                 }),
                 "entry 1 has index 13");
}

TEST(CodecReject, EntryTermBeyondLeaderTerm) {
  expectRejected(rawEnvelope([](schema::Message::Builder b) {
                   b.setType(schema::MsgType::APPEND);
                   b.setTerm(3);
                   auto es = b.initEntries(1);
                   es[0].setTerm(4);
                   es[0].setIndex(1);
                 }),
                 "entry 0 has term 4");
}

TEST(CodecReject, OversizedSnapshotChunk) {
  expectRejected(rawEnvelope([](schema::Message::Builder b) {
                   b.setType(schema::MsgType::SNAPSHOT);
                   b.setSnapSize(limits::kMaxSnapshotChunkBytes * 2);
                   b.initSnapChunk(limits::kMaxSnapshotChunkBytes + 1);
                 }),
                 "snapshot chunk of");
}

TEST(CodecReject, SnapshotChunkPastSize) {
  expectRejected(rawEnvelope([](schema::Message::Builder b) {
                   b.setType(schema::MsgType::SNAPSHOT);
                   b.setSnapOffset(10);
                   b.setSnapSize(12);
                   b.initSnapChunk(3);
                 }),
                 "runs past the snapshot size");
}

TEST(CodecReject, ChunkOutsideSnapshot) {
  expectRejected(rawEnvelope([](schema::Message::Builder b) {
                   b.setType(schema::MsgType::APPEND_RESP);
                   b.initSnapChunk(3);
                 }),
                 "carries a snapshot chunk");
}

TEST(CodecReject, UnsortedVoters) {
  expectRejected(rawEnvelope([](schema::Message::Builder b) {
                   b.setType(schema::MsgType::SNAPSHOT);
                   auto v = b.initSnap().initVoters(2);
                   v.set(0, 3);
                   v.set(1, 2);
                 }),
                 "not sorted and unique");
}

TEST(CodecReject, InvalidNodeIds) {
  auto noop = [](schema::Message::Builder b) { b.setType(schema::MsgType::HEARTBEAT); };
  expectRejected(rawEnvelope(noop, 0, 2), "sender 0");
  expectRejected(rawEnvelope(noop, 1, limits::kMaxNodes + 1), "receiver 8");
}

TEST(CodecReject, FramingErrors) {
  Message m;
  m.type = MsgType::Heartbeat;
  m.from = 1;
  m.to = 2;
  std::string bytes = codec::encodeMessageBytes(kRejectCluster, m);
  expectRejected("", "not a positive multiple");
  expectRejected(bytes.substr(0, bytes.size() - 3), "not a positive multiple");
  expectRejected(bytes.substr(0, bytes.size() - 8), "malformed envelope");
  expectRejected(bytes + std::string(8, '\0'), "8 trailing bytes");
  expectRejected(std::string(limits::kMaxMessageBytes + 8, '\0'), "exceeds the limit");
}

TEST(CodecReject, AliasedPointersHitTraversalLimit) {
  // Four pointers of a command aimed at one 5 MiB blob: under 16 MiB on the wire, but
  // 20 MiB to read. Only the traversal limit stops such amplification.
  constexpr size_t kBlobBytes = 5 * 1024 * 1024;
  capnp::MallocMessageBuilder builder(kBlobBytes / sizeof(capnp::word) + 64,
                                      capnp::AllocationStrategy::FIXED_SIZE);
  auto cmd = builder.initRoot<schema::Command>();
  cmd.initKey(kBlobBytes);
  cmd.initValue(1);
  cmd.initExpected(1);
  cmd.initRangeEnd(1);
  auto words = capnp::messageToFlatArray(builder);
  ASSERT_EQ(builder.getSegmentsForOutput().size(), 1u);

  // Little-endian 64-bit words: [0] is the segment table, [1] the root struct pointer.
  auto* raw = reinterpret_cast<kj::byte*>(words.begin());
  auto wordAt = [&](size_t i) {
    uint64_t w;
    memcpy(&w, raw + i * 8, 8);
    return w;
  };
  uint64_t root = wordAt(1);
  ASSERT_EQ(root & 3, 0u);  // a struct pointer
  size_t structStart = 2 + static_cast<size_t>(static_cast<int32_t>(root & 0xffffffff) >> 2);
  size_t pointers = structStart + ((root >> 32) & 0xffff);  // key, value, expected, rangeEnd
  uint64_t keyPtr = wordAt(pointers);
  ASSERT_EQ(keyPtr & 3, 1u);  // a list pointer
  int32_t keyOffset = static_cast<int32_t>(keyPtr & 0xffffffff) >> 2;
  for (int32_t i = 1; i < 4; ++i) {
    // The same target, seen from a pointer i words further on.
    uint64_t p = (keyPtr & ~uint64_t{0xffffffff}) |
                 ((uint64_t{static_cast<uint32_t>(keyOffset - i)} << 2) & 0xffffffff) | 1;
    memcpy(raw + (pointers + i) * 8, &p, 8);
  }

  std::string bytes = toBytes(words);
  ASSERT_LT(bytes.size(), limits::kMaxMessageBytes);
  KvCommand c;
  std::string error;
  EXPECT_FALSE(test::fromMessageBytes(bytes, &c, &error));
  EXPECT_NE(error.find("traversal limit"), std::string::npos) << error;
}

TEST(CodecReject, ThrowingReaderThrows) {
  capnp::MallocMessageBuilder builder;
  auto b = builder.initRoot<schema::Command>();
  b.setOp(static_cast<schema::OpType>(99));
  EXPECT_THROW(codec::fromCapnp(b.asReader()), kj::Exception);
}

TEST(CodecReject, CommandAndReplyEnums) {
  {
    capnp::MallocMessageBuilder builder;
    builder.initRoot<schema::Command>().setOp(static_cast<schema::OpType>(6));
    KvCommand c;
    std::string error;
    EXPECT_FALSE(codec::fromCapnp(builder.getRoot<schema::Command>().asReader(), &c, &error));
    EXPECT_NE(error.find("unknown operation 6"), std::string::npos) << error;
  }
  {
    capnp::MallocMessageBuilder builder;
    builder.initRoot<schema::Reply>().setStatus(static_cast<schema::Status>(12));
    KvReply r;
    std::string error;
    EXPECT_FALSE(codec::fromCapnp(builder.getRoot<schema::Reply>().asReader(), &r, &error));
    EXPECT_NE(error.find("unknown status 12"), std::string::npos) << error;
  }
}

}  // namespace
}  // namespace kvr
