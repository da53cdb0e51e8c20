// The one byte codec of the project: writers that append to a std::string and a
// bounds-checked reader. Used by the command and reply encoding (core/command.cc), the KV
// snapshot (core/kv.cc) and every disk record (disk/).
//
// Two integer forms:
//   varint   LEB128, shortest form only (a multi-byte varint never ends in a zero byte;
//            the tenth byte carries only the top bit of a uint64)
//   fixed    little-endian, 1, 4 or 8 bytes
// and one string form: a varint length followed by the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

namespace kvr::wire {

inline void putU8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }

inline void putFixed32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline void putFixed64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline void putVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// A varint length, then the bytes.
inline void putBytes(std::string& out, std::string_view s) {
  putVarint(out, s.size());
  out.append(s.data(), s.size());
}

// Reads fields in order. Nothing throws: a getter that would read past the end or meets a
// malformed field returns false and leaves *out as it was. Failure sticks: after one,
// every getter returns false and done() is false, so a decoder may check each read or
// only done() at the end (outputs initialized beforehand then hold their initial values).
// Lengths are checked against the bytes left before anything is allocated.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  size_t remaining() const { return bytes_.size() - pos_; }
  bool failed() const { return failed_; }
  // Everything was read, and nothing failed.
  bool done() const { return !failed_ && pos_ == bytes_.size(); }

  bool u8(uint8_t* out) {
    if (!check(1)) return false;
    *out = static_cast<uint8_t>(bytes_[pos_++]);
    return true;
  }

  // One byte, 0 or 1.
  bool flag(bool* out) {
    uint8_t b = 0;
    if (!u8(&b)) return false;
    if (b > 1) return fail();
    *out = b == 1;
    return true;
  }

  bool fixed32(uint32_t* out) {
    uint64_t v = 0;
    if (!fixed(4, &v)) return false;
    *out = static_cast<uint32_t>(v);
    return true;
  }

  bool fixed64(uint64_t* out) { return fixed(8, out); }

  bool varint(uint64_t* out) {
    uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      uint8_t b = 0;
      if (!u8(&b)) return false;
      if (i == 9 && b > 1) return fail();
      v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if ((b & 0x80) == 0) {
        if (i > 0 && b == 0) return fail();
        *out = v;
        return true;
      }
    }
    return fail();
  }

  // A varint that must fit in 32 bits.
  bool varint32(uint32_t* out) {
    uint64_t v = 0;
    if (!varint(&v)) return false;
    if (v > std::numeric_limits<uint32_t>::max()) return fail();
    *out = static_cast<uint32_t>(v);
    return true;
  }

  // A varint length, then that many bytes: a view into the input.
  bool bytes(std::string_view* out) {
    uint64_t n = 0;
    if (!varint(&n)) return false;
    if (n > remaining()) return fail();
    return raw(static_cast<size_t>(n), out);
  }

  bool bytes(std::string* out) {
    std::string_view view;
    if (!bytes(&view)) return false;
    out->assign(view.data(), view.size());
    return true;
  }

  // Exactly n bytes, with no length prefix.
  bool raw(size_t n, std::string_view* out) {
    if (!check(n)) return false;
    *out = bytes_.substr(pos_, n);
    pos_ += n;
    return true;
  }

  // Consumes `prefix` if the input continues with it; fails otherwise.
  bool expect(std::string_view prefix) {
    std::string_view got;
    if (!raw(prefix.size(), &got)) return false;
    if (got != prefix) return fail();
    return true;
  }

 private:
  bool fail() {
    failed_ = true;
    return false;
  }

  bool check(size_t n) {
    if (failed_) return false;
    if (remaining() < n) return fail();
    return true;
  }

  bool fixed(int n, uint64_t* out) {
    if (!check(static_cast<size_t>(n))) return false;
    uint64_t v = 0;
    for (int i = 0; i < n; ++i)
      v |= uint64_t{static_cast<uint8_t>(bytes_[pos_ + i])} << (8 * i);
    pos_ += static_cast<size_t>(n);
    *out = v;
    return true;
  }

  std::string_view bytes_;
  size_t pos_ = 0;
  bool failed_ = false;
};

}  // namespace kvr::wire
