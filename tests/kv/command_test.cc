// Command validation and the command/reply codec.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <set>
#include <string>

#include "core/command.h"
#include "core/limits.h"
#include "tests/kv/kv_test_util.h"

namespace kvr {
namespace {

using test::cas;
using test::del;
using test::get;
using test::put;
using test::range;

TEST(StatusName, EveryStatusHasADistinctShortName) {
  EXPECT_STREQ(statusName(Status::Ok), "ok");
  EXPECT_STREQ(statusName(Status::NotFound), "not_found");
  EXPECT_STREQ(statusName(Status::CasMismatch), "cas_mismatch");
  EXPECT_STREQ(statusName(Status::NotLeader), "not_leader");
  EXPECT_STREQ(statusName(Status::Timeout), "timeout");
  EXPECT_STREQ(statusName(Status::TooLarge), "too_large");
  EXPECT_STREQ(statusName(Status::SessionExpired), "session_expired");
  EXPECT_STREQ(statusName(Status::Busy), "busy");
  EXPECT_STREQ(statusName(Status::Invalid), "invalid");
  EXPECT_STREQ(statusName(Status::StaleRequest), "stale_request");
  EXPECT_STREQ(statusName(Status::ShuttingDown), "shutting_down");
  EXPECT_STREQ(statusName(Status::TransferInProgress), "transfer_in_progress");
  std::set<std::string> names;
  for (int s = 0; s <= 11; ++s) names.insert(statusName(static_cast<Status>(s)));
  EXPECT_EQ(names.size(), 12u);
}

TEST(Validate, AcceptsWellFormedCommands) {
  std::string why;
  EXPECT_EQ(validate(put(1, 1, "k", "v"), &why), Status::Ok) << why;
  EXPECT_EQ(validate(del(1, 1, "k"), &why), Status::Ok) << why;
  EXPECT_EQ(validate(cas(1, 1, "k", "a", "b"), &why), Status::Ok) << why;
  EXPECT_EQ(validate(get("k"), &why), Status::Ok) << why;
  EXPECT_EQ(validate(range("a", "b", 10), &why), Status::Ok) << why;
  EXPECT_EQ(validate(range("a", ""), &why), Status::Ok) << why;
  EXPECT_EQ(validate(range("", "z"), &why), Status::Ok) << "a range may start at the beginning";
  EXPECT_EQ(validate(test::openSession(), &why), Status::Ok) << "no ids needed to open";
  // Exactly at the limits.
  EXPECT_EQ(validate(put(1, 1, std::string(limits::kMaxKeyBytes, 'k'),
                         std::string(limits::kMaxValueBytes, 'v')),
                     &why),
            Status::Ok);
  EXPECT_EQ(validate(range("a", "", limits::kMaxRangeLimit), &why), Status::Ok);
}

TEST(Validate, RejectsOversizedFieldsWithAReason) {
  std::string why;
  EXPECT_EQ(validate(put(1, 1, std::string(5000, 'k'), "v"), &why), Status::TooLarge);
  EXPECT_EQ(why, "key is 5000 bytes; the limit is 4096");
  EXPECT_EQ(validate(get(std::string(limits::kMaxKeyBytes + 1, 'k')), &why), Status::TooLarge);
  EXPECT_EQ(validate(put(1, 1, "k", std::string(limits::kMaxValueBytes + 1, 'v')), &why),
            Status::TooLarge);
  EXPECT_NE(why.find("value is 1048577 bytes"), std::string::npos) << why;
  EXPECT_EQ(validate(cas(1, 1, "k", std::string(limits::kMaxValueBytes + 1, 'e'), ""), &why),
            Status::TooLarge);
  EXPECT_NE(why.find("expected value"), std::string::npos) << why;
  EXPECT_EQ(validate(range("a", std::string(limits::kMaxKeyBytes + 1, 'z')), &why),
            Status::TooLarge);
  EXPECT_NE(why.find("range end"), std::string::npos) << why;
}

TEST(Validate, RejectsMalformedCommandsWithAReason) {
  std::string why;
  EXPECT_EQ(validate(put(1, 1, "", "v"), &why), Status::Invalid);
  EXPECT_EQ(why, "key is empty");
  EXPECT_EQ(validate(get(""), &why), Status::Invalid);
  EXPECT_EQ(validate(range("a", "b", limits::kMaxRangeLimit + 1), &why), Status::Invalid);
  EXPECT_NE(why.find("10001"), std::string::npos) << why;
  EXPECT_EQ(validate(range("b", "b"), &why), Status::Invalid);
  EXPECT_EQ(validate(range("b", "a"), &why), Status::Invalid);
  EXPECT_NE(why.find("range end"), std::string::npos) << why;
  EXPECT_EQ(validate(put(0, 1, "k", "v"), &why), Status::Invalid);
  EXPECT_NE(why.find("client id"), std::string::npos) << why;
  EXPECT_EQ(validate(del(1, 0, "k"), &why), Status::Invalid);
  EXPECT_NE(why.find("request id"), std::string::npos) << why;
  KvCommand unknown = put(1, 1, "k", "v");
  unknown.op = static_cast<OpType>(42);
  EXPECT_EQ(validate(unknown, &why), Status::Invalid);
  EXPECT_EQ(why, "unknown operation 42");
  // A null reason pointer is allowed.
  EXPECT_EQ(validate(put(0, 0, "", ""), nullptr), Status::Invalid);
}

TEST(CommandCodec, RoundTripsEveryField) {
  KvCommand c = cas(0xffffffffffffffffull, 300, "key", "old", "new");
  c.expectAbsent = true;
  c.rangeEnd = "zz";
  c.limit = 0xffffffffu;
  KvCommand out;
  ASSERT_TRUE(decodeCommand(encodeCommand(c), &out));
  EXPECT_EQ(out, c);
}

TEST(CommandCodec, RejectsEveryTruncationAndTrailingBytes) {
  const std::string bytes = encodeCommand(put(7, 9, "key", "value"));
  KvCommand out;
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decodeCommand(std::string_view(bytes).substr(0, n), &out)) << n;
  }
  EXPECT_FALSE(decodeCommand(bytes + '\0', &out));
  EXPECT_TRUE(decodeCommand(bytes, &out));
}

TEST(CommandCodec, RejectsUnknownVersionOpAndFlags) {
  std::string bytes = encodeCommand(put(7, 9, "key", "value"));
  KvCommand out;
  std::string badVersion = bytes;
  badVersion[0] = 2;
  EXPECT_FALSE(decodeCommand(badVersion, &out));
  std::string badOp = bytes;
  badOp[1] = 6;
  EXPECT_FALSE(decodeCommand(badOp, &out));
  // Layout: version, op, clientId(1), requestId(1), key(1+3), value(1+5), expected(1), flags.
  std::string badFlags = bytes;
  ASSERT_EQ(badFlags[15], 0);
  badFlags[15] = 2;
  EXPECT_FALSE(decodeCommand(badFlags, &out));
  badFlags[15] = 1;
  EXPECT_TRUE(decodeCommand(badFlags, &out));
  EXPECT_TRUE(out.expectAbsent);
}

TEST(CommandCodec, RejectsOverlongVarintsAndHugeLengths) {
  KvCommand out;
  // clientId 7 written in two bytes instead of one.
  const std::string valid = encodeCommand(put(7, 9, "k", "v"));
  ASSERT_TRUE(decodeCommand(valid, &out));
  std::string overlong = valid.substr(0, 2) + std::string("\x87\x00", 2) + valid.substr(3);
  EXPECT_FALSE(decodeCommand(overlong, &out));
  // A key length of 2^63 must be rejected without trying to allocate it.
  std::string huge("\x01\x00\x01\x01", 4);
  huge += std::string("\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 10);
  EXPECT_FALSE(decodeCommand(huge, &out));
  // Eleven-byte varint.
  std::string eleven("\x01\x00", 2);
  eleven += std::string(10, '\xff') + '\x01';
  EXPECT_FALSE(decodeCommand(eleven, &out));
}

TEST(CommandCodec, RejectsOversizedInput) {
  KvCommand big = put(1, 1, "k", std::string(limits::kMaxCommandBytes, 'v'));
  std::string bytes = encodeCommand(big);
  ASSERT_GT(bytes.size(), limits::kMaxCommandBytes);
  KvCommand out;
  EXPECT_FALSE(decodeCommand(bytes, &out));
  // The largest valid command still fits.
  KvCommand largest = cas(~0ull, ~0ull, std::string(limits::kMaxKeyBytes, 'k'),
                          std::string(limits::kMaxValueBytes, 'e'),
                          std::string(limits::kMaxValueBytes, 'v'));
  largest.rangeEnd = std::string(limits::kMaxKeyBytes, 'z');
  largest.limit = ~0u;
  ASSERT_EQ(validate(largest, nullptr), Status::Ok);
  EXPECT_TRUE(decodeCommand(encodeCommand(largest), &out));
  EXPECT_EQ(out, largest);
}

TEST(ReplyCodec, RoundTripsAndRejectsBadInput) {
  KvReply r;
  r.status = Status::CasMismatch;
  r.value = "current";
  r.kvs = {{"a", "1"}, {"b", ""}};
  r.more = true;
  r.clientId = 12;
  r.leaderHint = 3;
  r.index = 1u << 20;
  const std::string bytes = encodeReply(r);
  KvReply out;
  ASSERT_TRUE(decodeReply(bytes, &out));
  EXPECT_EQ(out, r);
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decodeReply(std::string_view(bytes).substr(0, n), &out)) << n;
  }
  EXPECT_FALSE(decodeReply(bytes + 'x', &out));
  std::string badStatus = bytes;
  badStatus[1] = 12;
  EXPECT_FALSE(decodeReply(badStatus, &out));
  // A pair count over the range limit is rejected before reading any pair.
  std::string manyPairs("\x01\x00\x00", 3);
  manyPairs += std::string("\x91\x4e", 2);  // 10001
  manyPairs += std::string(20002, '\0') + std::string(4, '\0');
  EXPECT_FALSE(decodeReply(manyPairs, &out));
  std::string maxPairs("\x01\x00\x00", 3);
  maxPairs += std::string("\x90\x4e", 2);  // 10000
  maxPairs += std::string(20000, '\0') + std::string(4, '\0');
  ASSERT_TRUE(decodeReply(maxPairs, &out));
  EXPECT_EQ(out.kvs.size(), 10000u);
}

RC_GTEST_PROP(CommandCodecProp, RoundTrip, ()) {
  const KvCommand c = *test::anyCommand();
  KvCommand out;
  RC_ASSERT(decodeCommand(encodeCommand(c), &out));
  RC_ASSERT(out == c);
}

RC_GTEST_PROP(ReplyCodecProp, RoundTrip, ()) {
  const KvReply r = *test::anyReply();
  KvReply out;
  RC_ASSERT(decodeReply(encodeReply(r), &out));
  RC_ASSERT(out == r);
}

// Turns valid bytes into nearly valid ones: the interesting inputs for a decoder.
std::string mutate(std::string bytes) {
  const int kind = *rc::gen::inRange(0, 4);
  if (bytes.empty()) return bytes;
  const size_t at = *rc::gen::inRange<size_t>(0, bytes.size());
  switch (kind) {
    case 0:  // flip bits in one byte
      bytes[at] = static_cast<char>(bytes[at] ^ *rc::gen::inRange(1, 256));
      break;
    case 1:  // truncate
      bytes.resize(at);
      break;
    case 2:  // insert a byte
      bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                   *rc::gen::arbitrary<char>());
      break;
    default:  // delete a byte
      bytes.erase(at, 1);
      break;
  }
  return bytes;
}

RC_GTEST_PROP(CommandCodecProp, DecodeOfRandomBytesIsSafeAndCanonical, ()) {
  const bool fromValid = *rc::gen::arbitrary<bool>();
  const std::string bytes = fromValid ? mutate(encodeCommand(*test::anyCommand()))
                                      : *rc::gen::arbitrary<std::string>();
  KvCommand out;
  if (decodeCommand(bytes, &out)) {
    RC_ASSERT(encodeCommand(out) == bytes);
  }
}

RC_GTEST_PROP(ReplyCodecProp, DecodeOfRandomBytesIsSafeAndCanonical, ()) {
  const bool fromValid = *rc::gen::arbitrary<bool>();
  const std::string bytes = fromValid ? mutate(encodeReply(*test::anyReply()))
                                      : *rc::gen::arbitrary<std::string>();
  KvReply out;
  if (decodeReply(bytes, &out)) {
    RC_ASSERT(encodeReply(out) == bytes);
  }
}

}  // namespace
}  // namespace kvr
