// Little-endian integer encoding into std::string and a bounds-checked reader.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace kvr::disk {

inline void putU8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }

inline void putU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline void putU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline uint64_t loadLe(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

// Reads fields in order; any read past the end sets failed() and yields zeros.
class ByteReader {
 public:
  explicit ByteReader(std::string_view bytes) : bytes_(bytes) {}

  uint8_t u8() { return static_cast<uint8_t>(take(1)); }
  uint32_t u32() { return static_cast<uint32_t>(take(4)); }
  uint64_t u64() { return take(8); }
  std::string_view bytes(size_t n) {
    if (failed_ || bytes_.size() - pos_ < n) {
      failed_ = true;
      return {};
    }
    std::string_view out = bytes_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  size_t remaining() const { return bytes_.size() - pos_; }
  bool failed() const { return failed_; }
  bool done() const { return !failed_ && pos_ == bytes_.size(); }

 private:
  uint64_t take(int n) {
    if (failed_ || bytes_.size() - pos_ < static_cast<size_t>(n)) {
      failed_ = true;
      return 0;
    }
    uint64_t v = loadLe(bytes_.data() + pos_, n);
    pos_ += static_cast<size_t>(n);
    return v;
  }

  std::string_view bytes_;
  size_t pos_ = 0;
  bool failed_ = false;
};

}  // namespace kvr::disk
