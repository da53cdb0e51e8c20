#include "core/hash.h"

#include <xxhash.h>

namespace kvr {

uint64_t hash64(std::string_view bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

uint64_t hashCombine(uint64_t running, uint64_t value) {
  // The value's little-endian bytes, hashed with the running hash as seed.
  char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return XXH3_64bits_withSeed(bytes, sizeof(bytes), running);
}

}  // namespace kvr
