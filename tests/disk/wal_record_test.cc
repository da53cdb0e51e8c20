// Record framing and payload decoding: round trips, and garbage never accepted.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "core/hash.h"
#include "core/wire.h"
#include "disk/wal_record.h"
#include "tests/disk/disk_test_util.h"

namespace kvr::disk {
namespace {

using testing::makeEntry;

std::string sampleFrames() {
  std::string out;
  appendFrame(out, RecordType::HardState, true, encodeHardState({5, 2, 9}));
  appendFrame(out, RecordType::TruncateSuffix, true, encodeTruncateSuffix(3));
  appendFrame(out, RecordType::Entries, true,
              encodeEntries({makeEntry(5, 3, "x"), makeEntry(5, 4, "yy")}));
  SnapshotMarker m;
  m.meta.index = 2;
  m.meta.term = 1;
  m.meta.conf.voters = {1, 2};
  m.dataBytes = 10;
  m.dataChecksum = 77;
  appendFrame(out, RecordType::SnapshotMarker, false, encodeSnapshotMarker(m));
  Index hwm = 0;
  EXPECT_EQ(stampSeqs(out, 1, &hwm), 4u);
  EXPECT_EQ(hwm, 4u);
  return out;
}

TEST(WalRecord, RoundTrip) {
  std::string bytes = sampleFrames();
  std::string_view rest = bytes;
  std::vector<RecordBody> bodies;
  std::vector<bool> continues;
  uint64_t seq = 1;
  while (!rest.empty()) {
    RecordRead r = readRecord(rest, seq++);
    ASSERT_EQ(r.status, RecordStatus::Ok) << r.problem;
    std::string problem;
    auto body = decodePayload(r.header->type, r.payload, &problem);
    ASSERT_TRUE(body) << problem;
    bodies.push_back(*body);
    continues.push_back(r.header->continues);
    rest.remove_prefix(r.header->recordBytes());
  }
  ASSERT_EQ(bodies.size(), 4u);
  EXPECT_EQ(continues, (std::vector<bool>{true, true, true, false}));
  EXPECT_EQ(std::get<HardState>(bodies[0]), (HardState{5, 2, 9}));
  EXPECT_EQ(std::get<TruncateSuffix>(bodies[1]).from, 3u);
  EXPECT_EQ(std::get<std::vector<Entry>>(bodies[2]),
            (std::vector<Entry>{makeEntry(5, 3, "x"), makeEntry(5, 4, "yy")}));
  EXPECT_EQ(std::get<SnapshotMarker>(bodies[3]).meta.conf.voters, (std::vector<NodeId>{1, 2}));
}

TEST(WalRecord, HeaderSummarizesThePayload) {
  std::string bytes = sampleFrames();
  auto hs = parseHeader(bytes);
  ASSERT_TRUE(hs);
  EXPECT_EQ(hs->type, RecordType::HardState);
  EXPECT_EQ(hs->a, 5u);  // term
  EXPECT_EQ(hs->b, 2u);  // vote
  std::string_view rest = std::string_view(bytes).substr(hs->recordBytes());
  rest.remove_prefix(parseHeader(rest)->recordBytes());
  auto es = parseHeader(rest);
  ASSERT_TRUE(es);
  EXPECT_EQ(es->type, RecordType::Entries);
  EXPECT_EQ(es->a, 3u);
  EXPECT_EQ(es->b, 4u);
  EXPECT_EQ(es->hwm, 4u);
  EXPECT_EQ(es->seq, 3u);
}

// A write cut anywhere (a prefix survives) reads as torn, never as corruption.
TEST(WalRecord, CutShortIsTorn) {
  std::string bytes;
  appendFrame(bytes, RecordType::Entries, false, encodeEntries({makeEntry(1, 1, "hello")}));
  Index hwm = 0;
  stampSeqs(bytes, 1, &hwm);
  for (size_t len = 0; len < bytes.size(); ++len) {
    for (char fill : {'\0', '\x5a'}) {
      std::string cut = bytes.substr(0, len);
      std::string filled = cut + std::string(bytes.size() - len, fill);
      EXPECT_EQ(readRecord(cut, 1).status, RecordStatus::Torn) << len;
      // Only a record whose payload fully arrived may read as complete (its trailer
      // copy is not needed then).
      const RecordStatus want = len >= bytes.size() - kRecordHeaderBytes ? RecordStatus::Ok
                                                                         : RecordStatus::Torn;
      EXPECT_EQ(readRecord(filled, 1).status, want) << len << " " << int(fill);
    }
  }
}

// A single-bit flip anywhere in a complete record is either harmless (one header copy
// damaged, the other and the payload agree) or corruption: never torn, never accepted
// with other contents.
TEST(WalRecord, EveryBitFlipIsCorruptionOrHarmless) {
  std::string bytes;
  appendFrame(bytes, RecordType::Entries, false,
              encodeEntries({makeEntry(1, 1, "hello"), makeEntry(1, 2, "world")}));
  Index hwm = 0;
  stampSeqs(bytes, 7, &hwm);
  const RecordRead clean = readRecord(bytes, 7);
  ASSERT_EQ(clean.status, RecordStatus::Ok);
  for (size_t bit = 0; bit < bytes.size() * 8; ++bit) {
    std::string mutated = bytes;
    mutated[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    RecordRead r = readRecord(mutated, 7);
    ASSERT_NE(r.status, RecordStatus::Torn) << "bit " << bit;
    ASSERT_TRUE(r.header) << "bit " << bit;
    EXPECT_EQ(*r.header, *clean.header) << "bit " << bit;
    if (r.status == RecordStatus::Ok) {
      EXPECT_EQ(r.payload, clean.payload) << "bit " << bit;
    }
  }
}

TEST(WalRecord, WrongSeqIsCorruption) {
  std::string bytes = sampleFrames();
  EXPECT_EQ(readRecord(bytes, 2).status, RecordStatus::Corrupt);
}

TEST(WalRecord, V1RecordsAreRecognized) {
  // [u32 length][u64 XXH3 of type byte + payload][u8 type][payload]
  std::string payload = encodeHardState({1, 1, 0});
  std::string typed = std::string(1, '\x01') + payload;
  std::string v1;
  wire::putFixed32(v1, static_cast<uint32_t>(payload.size()));
  wire::putFixed64(v1, hash64(typed));
  v1 += typed;
  EXPECT_TRUE(looksLikeV1Record(v1));
  EXPECT_FALSE(looksLikeV1Record(sampleFrames()));
}

RC_GTEST_PROP(WalRecordProp, RandomBytesNeverAccepted, (std::string bytes)) {
  // A random header passes a 64-bit checksum with negligible probability.
  RC_ASSERT(readRecord(bytes, 1).status != RecordStatus::Ok);
  for (uint8_t t = 1; t <= 4; ++t) {
    std::string problem;
    (void)decodePayload(static_cast<RecordType>(t), bytes, &problem);  // must not crash
  }
}

RC_GTEST_PROP(WalRecordProp, MutatedRecordsNeverAcceptedChanged,
              (std::vector<std::pair<uint32_t, uint8_t>> edits)) {
  RC_PRE(!edits.empty());
  std::string bytes = sampleFrames();
  std::string mutated = bytes;
  for (auto [pos, value] : edits) mutated[pos % mutated.size()] = static_cast<char>(value);
  RC_PRE(mutated != bytes);
  // Read records as recovery does; a record accepted from the mutated bytes must be
  // the original record.
  std::string_view a = bytes, b = mutated;
  uint64_t seq = 1;
  while (!a.empty()) {
    RecordRead ra = readRecord(a, seq);
    RecordRead rb = readRecord(b, seq);
    ++seq;
    if (rb.status != RecordStatus::Ok) return;  // rejected: good
    RC_ASSERT(*ra.header == *rb.header);
    RC_ASSERT(ra.payload == rb.payload);
    a.remove_prefix(ra.header->recordBytes());
    b.remove_prefix(rb.header->recordBytes());
  }
}

// Payloads that pass the checksum but are malformed are refused by the decoder, without
// crashing (decodePayload runs on random input under ASan/UBSan).
RC_GTEST_PROP(WalRecordProp, DecoderSurvivesRandomPayloads,
              (std::string payload, uint32_t count)) {
  std::string withCount;
  withCount.push_back(static_cast<char>(count & 0xff));
  withCount.push_back(static_cast<char>((count >> 8) & 0xff));
  withCount.push_back(0);
  withCount.push_back(0);
  withCount += payload;
  for (uint8_t t = 1; t <= 4; ++t) {
    std::string problem;
    auto body = decodePayload(static_cast<RecordType>(t), withCount, &problem);
    if (body && t == 2) {
      const auto& entries = std::get<std::vector<Entry>>(*body);
      for (size_t i = 1; i < entries.size(); ++i) {
        RC_ASSERT(entries[i].index == entries[0].index + i);
      }
    }
  }
}

}  // namespace
}  // namespace kvr::disk
