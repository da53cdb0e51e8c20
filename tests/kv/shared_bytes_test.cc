// SharedBytes (core/shared_bytes.h): the entry payload shared by reference count.
#include "core/shared_bytes.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "core/command.h"

namespace kvr {
namespace {

TEST(SharedBytes, CopiesShareTheBytesAndCompareByContent) {
  std::string text(300, 'x');
  SharedBytes a(text);
  SharedBytes b = a;
  EXPECT_EQ(a.data(), b.data());  // one buffer, not a copy
  EXPECT_EQ(b.view(), text);
  SharedBytes c(text);  // the same bytes elsewhere
  EXPECT_NE(a.data(), c.data());
  EXPECT_TRUE(a == c);
  EXPECT_FALSE(a == SharedBytes("y"));
  a = SharedBytes();
  EXPECT_EQ(b.view(), text);  // still alive through b
}

TEST(SharedBytes, EmptyAllocatesNothingAndMovesLeaveEmpty) {
  SharedBytes empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(empty.view(), "");
  EXPECT_TRUE(SharedBytes(std::string()).empty());
  EXPECT_TRUE(empty == SharedBytes(""));
  SharedBytes a("abc");
  SharedBytes b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(b.str(), "abc");
}

TEST(EncodeCommand, IntoAReusedBufferGivesTheSameBytes) {
  KvCommand put;
  put.op = OpType::Put;
  put.clientId = 7;
  put.requestId = 9;
  put.key = "key";
  put.value = std::string(256, 'v');
  KvCommand del;
  del.op = OpType::Delete;
  del.clientId = 7;
  del.requestId = 10;
  del.key = "k";
  std::string scratch;
  encodeCommand(put, &scratch);
  EXPECT_EQ(scratch, encodeCommand(put));
  encodeCommand(del, &scratch);  // shorter: nothing of the first is left
  EXPECT_EQ(scratch, encodeCommand(del));
}

}  // namespace
}  // namespace kvr
