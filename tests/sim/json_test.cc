// The simulator's JSON reader (sim/json.h): what it accepts and what it refuses.
#include "sim/json.h"

#include <gtest/gtest.h>

#include <string>

namespace kvr::sim::json {
namespace {

TEST(Json, ParsesNestedValues) {
  Value v;
  std::string err;
  ASSERT_TRUE(parse(" {\"a\":[1,true,null,\"x\\u0041\\n\"],\"b\":{\"c\":false}} \n", &v, &err))
      << err;
  ASSERT_EQ(v.kind, Value::Object);
  const Value* a = v.get("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->items.size(), 4u);
  uint64_t n = 0;
  EXPECT_TRUE(toU64(a->items[0], &n));
  EXPECT_EQ(n, 1u);
  EXPECT_TRUE(a->items[1].boolean);
  EXPECT_EQ(a->items[2].kind, Value::Null);
  EXPECT_EQ(a->items[3].text, "xA\n");
  ASSERT_NE(v.get("b"), nullptr);
  EXPECT_EQ(v.get("b")->get("c")->kind, Value::Bool);
  EXPECT_EQ(v.get("missing"), nullptr);
}

TEST(Json, RefusesMalformedDocuments) {
  const char* bad[] = {
      "",          "{",           "{\"a\":1,\"a\":2}", "{\"a\":1} x",    "[1,]",
      "{\"a\" 1}", "\"\\u0100\"", "\"\\q\"",           "\"unterminated", "tru",
      "{1:2}",     "\"a\x01\"",
  };
  for (const char* text : bad) {
    Value v;
    std::string err;
    EXPECT_FALSE(parse(text, &v, &err)) << text;
    EXPECT_NE(err.find(" at offset "), std::string::npos) << err;
  }
}

TEST(Json, RefusesDeepNesting) {
  Value v;
  std::string err;
  std::string ok(kMaxDepth, '[');
  ok += std::string(kMaxDepth, ']');
  EXPECT_TRUE(parse(ok, &v, &err)) << err;
  std::string deep(kMaxDepth + 2, '[');
  deep += std::string(kMaxDepth + 2, ']');
  EXPECT_FALSE(parse(deep, &v, &err));
  EXPECT_NE(err.find("nested too deeply"), std::string::npos) << err;
}

TEST(Json, IntegersAreStrict) {
  auto u64 = [](const char* text, uint64_t* out) {
    Value v;
    std::string err;
    return parse(text, &v, &err) && toU64(v, out);
  };
  uint64_t n = 0;
  EXPECT_TRUE(u64("18446744073709551615", &n));
  EXPECT_EQ(n, UINT64_MAX);
  EXPECT_TRUE(u64("0", &n));
  EXPECT_EQ(n, 0u);
  for (const char* text : {"18446744073709551616", "-1", "01", "1.5", "1e3", "\"7\""}) {
    EXPECT_FALSE(u64(text, &n)) << text;
  }
}

TEST(Json, GettersNameTheKey) {
  Value v;
  std::string err;
  ASSERT_TRUE(parse("{\"n\":\"x\",\"s\":3}", &v, &err));
  uint64_t n = 0;
  std::string s;
  EXPECT_FALSE(getU64(v, "n", &n, &err));
  EXPECT_NE(err.find("'n'"), std::string::npos) << err;
  EXPECT_FALSE(getString(v, "s", &s, &err));
  EXPECT_NE(err.find("'s'"), std::string::npos) << err;
  EXPECT_FALSE(getU64(v, "gone", &n, &err));
  EXPECT_NE(err.find("'gone'"), std::string::npos) << err;
}

}  // namespace
}  // namespace kvr::sim::json
