// Record framing and payload decoding: round trips, and garbage never accepted.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

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
  return out;
}

TEST(WalRecord, RoundTrip) {
  std::string bytes = sampleFrames();
  std::string_view rest = bytes;
  std::vector<RecordBody> bodies;
  std::vector<bool> continues;
  while (!rest.empty()) {
    Frame f = readFrame(rest);
    ASSERT_EQ(f.status, FrameStatus::Ok) << f.problem;
    const char* problem = "";
    auto body = decodePayload(f.type, f.payload, &problem);
    ASSERT_TRUE(body) << problem;
    bodies.push_back(*body);
    continues.push_back(f.continues);
    rest.remove_prefix(f.frameBytes);
  }
  ASSERT_EQ(bodies.size(), 4u);
  EXPECT_EQ(continues, (std::vector<bool>{true, true, true, false}));
  EXPECT_EQ(std::get<HardState>(bodies[0]), (HardState{5, 2, 9}));
  EXPECT_EQ(std::get<TruncateSuffix>(bodies[1]).from, 3u);
  EXPECT_EQ(std::get<std::vector<Entry>>(bodies[2]),
            (std::vector<Entry>{makeEntry(5, 3, "x"), makeEntry(5, 4, "yy")}));
  EXPECT_EQ(std::get<SnapshotMarker>(bodies[3]).meta.conf.voters, (std::vector<NodeId>{1, 2}));
}

TEST(WalRecord, CutShortIsIncomplete) {
  std::string bytes;
  appendFrame(bytes, RecordType::Entries, false, encodeEntries({makeEntry(1, 1, "hello")}));
  for (size_t len = 0; len < bytes.size(); ++len) {
    EXPECT_EQ(readFrame(std::string_view(bytes).substr(0, len)).status, FrameStatus::Incomplete)
        << len;
  }
}

// Every single-bit flip anywhere in a frame is caught.
TEST(WalRecord, EveryBitFlipRejected) {
  std::string bytes;
  appendFrame(bytes, RecordType::Entries, false,
              encodeEntries({makeEntry(1, 1, "hello"), makeEntry(1, 2, "world")}));
  for (size_t bit = 0; bit < bytes.size() * 8; ++bit) {
    std::string mutated = bytes;
    mutated[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    EXPECT_NE(readFrame(mutated).status, FrameStatus::Ok) << "bit " << bit;
  }
}

RC_GTEST_PROP(WalRecordProp, RandomBytesNeverAccepted, (std::string bytes)) {
  Frame f = readFrame(bytes);
  // A random header passes a 64-bit checksum with negligible probability.
  RC_ASSERT(f.status != FrameStatus::Ok);
  for (uint8_t t = 1; t <= 4; ++t) {
    const char* problem = "";
    (void)decodePayload(static_cast<RecordType>(t), bytes, &problem);  // must not crash
  }
}

RC_GTEST_PROP(WalRecordProp, MutatedFramesRejected,
              (std::vector<std::pair<uint32_t, uint8_t>> edits)) {
  RC_PRE(!edits.empty());
  std::string bytes = sampleFrames();
  std::string mutated = bytes;
  for (auto [pos, value] : edits) mutated[pos % mutated.size()] = static_cast<char>(value);
  RC_PRE(mutated != bytes);
  // Read frames as recovery does; the first frame that differs must not be accepted.
  std::string_view a = bytes, b = mutated;
  while (!a.empty()) {
    Frame fa = readFrame(a);
    Frame fb = readFrame(b);
    if (fb.status != FrameStatus::Ok) return;  // rejected: good
    RC_ASSERT(fa.frameBytes == fb.frameBytes);
    RC_ASSERT(a.substr(0, fa.frameBytes) == b.substr(0, fb.frameBytes));
    a.remove_prefix(fa.frameBytes);
    b.remove_prefix(fb.frameBytes);
  }
  RC_FAIL("mutation not detected");
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
    const char* problem = "";
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
