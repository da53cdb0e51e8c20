#include "sim/json.h"

#include "core/text.h"

namespace kvr::sim::json {

const Value* Value::get(std::string_view key) const {
  for (const auto& [k, v] : members) {
    if (k == key) return &v;
  }
  return nullptr;
}

namespace {

int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}

  bool document(Value* out, std::string* error) {
    skipSpace();
    bool ok = value(out, 0);
    if (ok) {
      skipSpace();
      if (pos_ != s_.size()) ok = fail("trailing text");
    }
    if (!ok && error != nullptr) *error = error_ + " at offset " + std::to_string(pos_);
    return ok;
  }

 private:
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool fail(const char* why) {
    if (error_.empty()) error_ = why;
    return false;
  }
  void skipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool eat(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return fail("unexpected character");
    pos_ += word.size();
    return true;
  }

  bool value(Value* out, int depth) {
    if (depth > kMaxDepth) return fail("nested too deeply");
    if (pos_ >= s_.size()) return fail("unexpected end");
    char c = s_[pos_];
    switch (c) {
      case '{': return object(out, depth);
      case '[': return array(out, depth);
      case '"': out->kind = Value::String; return string(&out->text);
      case 't':
        out->kind = Value::Bool;
        out->boolean = true;
        return literal("true");
      case 'f': out->kind = Value::Bool; return literal("false");
      case 'n': out->kind = Value::Null; return literal("null");
      default: break;
    }
    if (c != '-' && (c < '0' || c > '9')) return fail("unexpected character");
    size_t start = pos_;
    while (pos_ < s_.size() &&
           std::string_view("+-.eE0123456789").find(s_[pos_]) != std::string_view::npos) {
      ++pos_;
    }
    out->kind = Value::Number;
    out->text = std::string(s_.substr(start, pos_ - start));
    return true;
  }

  bool string(std::string* out) {
    ++pos_;  // the opening quote
    while (pos_ < s_.size() && s_[pos_] != '"') {
      char c = s_[pos_++];
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character in a string");
      if (c != '\\') {
        *out += c;
        continue;
      }
      if (pos_ >= s_.size()) return fail("unexpected end");
      char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/': *out += e; break;
        case 'b': *out += '\b'; break;
        case 'f': *out += '\f'; break;
        case 'n': *out += '\n'; break;
        case 'r': *out += '\r'; break;
        case 't': *out += '\t'; break;
        case 'u': {
          if (pos_ + 4 > s_.size()) return fail("short \\u escape");
          int code = 0;
          for (int i = 0; i < 4; ++i) {
            int d = hexDigit(s_[pos_++]);
            if (d < 0) return fail("bad \\u escape");
            code = code * 16 + d;
          }
          if (code > 0xff) return fail("\\u escape above 00ff (strings are bytes)");
          *out += static_cast<char>(code);
          break;
        }
        default: return fail("bad escape");
      }
    }
    if (!eat('"')) return fail("unterminated string");
    return true;
  }

  bool object(Value* out, int depth) {
    out->kind = Value::Object;
    ++pos_;
    skipSpace();
    if (eat('}')) return true;
    for (;;) {
      skipSpace();
      if (peek() != '"') return fail("expected a key");
      std::string key;
      if (!string(&key)) return false;
      skipSpace();
      if (!eat(':')) return fail("expected ':'");
      skipSpace();
      Value v;
      if (!value(&v, depth + 1)) return false;
      if (out->get(key) != nullptr) return fail("duplicate key");
      out->members.emplace_back(std::move(key), std::move(v));
      skipSpace();
      if (eat(',')) continue;
      if (eat('}')) return true;
      return fail("expected ',' or '}'");
    }
  }

  bool array(Value* out, int depth) {
    out->kind = Value::Array;
    ++pos_;
    skipSpace();
    if (eat(']')) return true;
    for (;;) {
      skipSpace();
      Value v;
      if (!value(&v, depth + 1)) return false;
      out->items.push_back(std::move(v));
      skipSpace();
      if (eat(',')) continue;
      if (eat(']')) return true;
      return fail("expected ',' or ']'");
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace

bool parse(std::string_view text, Value* out, std::string* error) {
  *out = Value();
  return Reader(text).document(out, error);
}

bool toU64(const Value& v, uint64_t* out) {
  if (v.kind != Value::Number) return false;
  if (v.text.size() > 1 && v.text[0] == '0') return false;  // leading zero
  return text::parseUnsigned(v.text, out) == text::NumberError::None;
}

bool getU64(const Value& obj, std::string_view key, uint64_t* out, std::string* error) {
  const Value* v = obj.get(key);
  if (v == nullptr) {
    *error = "no '" + std::string(key) + "'";
    return false;
  }
  if (!toU64(*v, out)) {
    *error = "'" + std::string(key) + "' is not a non-negative 64-bit integer";
    return false;
  }
  return true;
}

bool getString(const Value& obj, std::string_view key, std::string* out, std::string* error) {
  const Value* v = obj.get(key);
  if (v == nullptr || v->kind != Value::String) {
    *error = "'" + std::string(key) + (v == nullptr ? "' is missing" : "' is not a string");
    return false;
  }
  *out = v->text;
  return true;
}

}  // namespace kvr::sim::json
