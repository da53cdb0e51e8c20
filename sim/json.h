// One small, strict JSON reader for the simulator's own files: the kvsim summary object
// and history JSON lines. Strings are byte strings: a \u escape above 00ff is refused,
// because our writers (text::Quote::Json) only ever write bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvr::sim::json {

struct Value {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool boolean = false;
  std::string text;  // a number's literal text, or a string's value
  std::vector<Value> items;
  std::vector<std::pair<std::string, Value>> members;  // in document order, keys unique

  // The member named `key`, or nullptr (also for a value that is not an object).
  const Value* get(std::string_view key) const;
};

// Nesting deeper than this is refused (a hostile file cannot exhaust the stack).
constexpr int kMaxDepth = 32;

// Parses exactly one JSON value, with white space around it allowed. False, with the
// reason and its byte offset in *error, on any syntax error, a duplicate key or a
// document nested deeper than kMaxDepth.
bool parse(std::string_view text, Value* out, std::string* error);

// A non-negative decimal integer without sign, fraction, exponent or leading zero that
// fits 64 bits. Sets *out only on success.
bool toU64(const Value& v, uint64_t* out);

// The member `key` of `obj` as such an integer / as a string. False, with a reason that
// names the key in *error, when it is missing or of another kind.
bool getU64(const Value& obj, std::string_view key, uint64_t* out, std::string* error);
bool getString(const Value& obj, std::string_view key, std::string* out, std::string* error);

}  // namespace kvr::sim::json
