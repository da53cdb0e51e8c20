#include "core/text.h"

namespace kvr::text {

void appendQuoted(std::string& out, std::string_view s, Quote style) {
  static constexpr char kHex[] = "0123456789abcdef";
  const bool json = style == Quote::Json;
  out += '"';
  for (unsigned char c : s) {
    const char* shortEscape = nullptr;
    switch (c) {
      case '"': shortEscape = "\\\""; break;
      case '\\': shortEscape = "\\\\"; break;
      case '\n': shortEscape = json ? "\\n" : nullptr; break;
      case '\r': shortEscape = json ? "\\r" : nullptr; break;
      case '\t': shortEscape = json ? "\\t" : nullptr; break;
      case '\b': shortEscape = json ? "\\b" : nullptr; break;
      case '\f': shortEscape = json ? "\\f" : nullptr; break;
      default: break;
    }
    if (shortEscape != nullptr) {
      out += shortEscape;
    } else if (c >= 0x20 && c <= 0x7e) {
      out += static_cast<char>(c);
    } else {
      out += json ? "\\u00" : "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  out += '"';
}

std::string quoted(std::string_view s, Quote style) {
  std::string out;
  out.reserve(s.size() + 2);
  appendQuoted(out, s, style);
  return out;
}

NumberError parseUnsigned(std::string_view text, uint64_t* out, uint64_t max) {
  if (text.empty()) return NumberError::NotANumber;
  for (char c : text) {
    if (c < '0' || c > '9') return NumberError::NotANumber;
  }
  uint64_t v = 0;
  for (char c : text) {
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (digit > max || v > (max - digit) / 10) return NumberError::TooLarge;
    v = v * 10 + digit;
  }
  *out = v;
  return NumberError::None;
}

std::optional<uint64_t> parseHex16(std::string_view text) {
  if (text.size() != 16) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return std::nullopt;
    value = value * 16 + static_cast<uint64_t>(digit);
  }
  return value;
}

}  // namespace kvr::text
