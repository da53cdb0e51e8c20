// Garbage in never crashes the decoder (run under ASan/UBSan), and whatever it accepts is
// a valid value: it re-encodes and decodes back to itself.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstring>

#include "schemas/codec.h"
#include "tests/schemas/codec_gen.h"
#include "tests/schemas/kv_bytes.h"

namespace kvr {
namespace {

constexpr uint64_t kFuzzCluster = 99;

// Applies a few random byte-level mutations: overwrite, bit flip, truncate, extend,
// splice a word out.
std::string mutate(std::string bytes) {
  auto count = *rc::gen::inRange(1, 5);
  for (int i = 0; i < count; ++i) {
    auto kind = *rc::gen::inRange(0, 5);
    if (bytes.empty()) kind = 3;
    switch (kind) {
      case 0: {
        auto pos = *rc::gen::inRange<size_t>(0, bytes.size());
        bytes[pos] = static_cast<char>(*rc::gen::inRange(0, 256));
        break;
      }
      case 1: {
        auto pos = *rc::gen::inRange<size_t>(0, bytes.size());
        bytes[pos] = static_cast<char>(bytes[pos] ^ (1 << *rc::gen::inRange(0, 8)));
        break;
      }
      case 2: bytes.resize(*rc::gen::inRange<size_t>(0, bytes.size())); break;
      case 3: bytes += test::genBytes(24); break;
      case 4: {
        if (bytes.size() >= 16) {
          auto word = *rc::gen::inRange<size_t>(0, bytes.size() / 8);
          bytes.erase(word * 8, 8);
        }
        break;
      }
    }
  }
  return bytes;
}

// A one-segment frame around random words, so the bytes get past the segment table and
// exercise pointer decoding.
std::string randomFrame() {
  auto words = *rc::gen::inRange<uint32_t>(0, 40);
  std::string body;
  for (uint32_t i = 0; i < words; ++i) {
    std::string w = test::genBytes(8);
    w.resize(8, '\0');
    body += w;
  }
  std::string header(8, '\0');
  uint32_t segmentCountMinusOne = 0;
  memcpy(&header[0], &segmentCountMinusOne, 4);
  memcpy(&header[4], &words, 4);
  return header + body;
}

// True when the bytes were accepted.
bool checkMessageBytes(const std::string& bytes) {
  Message m;
  std::string error;
  if (codec::decodeMessageBytes(bytes, kFuzzCluster, &m, &error)) {
    Message again;
    std::string error2;
    RC_ASSERT(codec::decodeMessageBytes(codec::encodeMessageBytes(kFuzzCluster, m),
                                        kFuzzCluster, &again, &error2));
    RC_ASSERT(again == m);
    return true;
  }
  RC_ASSERT(!error.empty());
  return false;
}

bool checkCommandBytes(const std::string& bytes) {
  KvCommand c;
  std::string error;
  if (test::fromMessageBytes(bytes, &c, &error)) {
    KvCommand again;
    RC_ASSERT(test::fromMessageBytes(test::messageBytes(c), &again, &error));
    RC_ASSERT(again == c);
    return true;
  }
  RC_ASSERT(!error.empty());
  return false;
}

bool checkReplyBytes(const std::string& bytes) {
  KvReply r;
  std::string error;
  if (test::fromMessageBytes(bytes, &r, &error)) {
    KvReply again;
    RC_ASSERT(test::fromMessageBytes(test::messageBytes(r), &again, &error));
    RC_ASSERT(again == r);
    return true;
  }
  RC_ASSERT(!error.empty());
  return false;
}

RC_GTEST_PROP(CodecFuzz, RandomBytesNeverCrash, ()) {
  std::string bytes = test::genBytes(256);
  checkMessageBytes(bytes);
  checkCommandBytes(bytes);
  checkReplyBytes(bytes);
}

RC_GTEST_PROP(CodecFuzz, RandomFramesNeverCrash, ()) {
  int accepted = 0;
  for (int i = 0; i < 10; ++i) {
    std::string bytes = randomFrame();
    accepted += checkMessageBytes(bytes) ? 1 : 0;
    accepted += checkCommandBytes(bytes) ? 1 : 0;
    accepted += checkReplyBytes(bytes) ? 1 : 0;
  }
  RC_CLASSIFY(accepted > 0, "some frame accepted");
}

RC_GTEST_PROP(CodecFuzz, MutatedMessagesNeverCrash, ()) {
  std::string valid = codec::encodeMessageBytes(kFuzzCluster, test::genMessage());
  int accepted = 0;
  for (int i = 0; i < 20; ++i) accepted += checkMessageBytes(mutate(valid)) ? 1 : 0;
  RC_CLASSIFY(accepted > 0, "some mutation accepted");
}

RC_GTEST_PROP(CodecFuzz, MutatedCommandsAndRepliesNeverCrash, ()) {
  std::string command = test::messageBytes(test::genCommand());
  std::string reply = test::messageBytes(test::genReply());
  int accepted = 0;
  for (int i = 0; i < 10; ++i) {
    accepted += checkCommandBytes(mutate(command)) ? 1 : 0;
    accepted += checkReplyBytes(mutate(reply)) ? 1 : 0;
  }
  RC_CLASSIFY(accepted > 0, "some mutation accepted");
}

}  // namespace
}  // namespace kvr
