#include "core/hash.h"

#include <xxhash.h>

#include <kj/debug.h>

namespace kvr {

uint64_t hash64(std::string_view bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

Hasher::Hasher() : state_(XXH3_createState()) {
  KJ_ASSERT(state_ != nullptr, "out of memory for a hash state");
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_));
}

Hasher::~Hasher() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

void Hasher::update(std::string_view bytes) {
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), bytes.data(), bytes.size());
}

uint64_t Hasher::digest() const {
  return XXH3_64bits_digest(static_cast<const XXH3_state_t*>(state_));
}

uint64_t hashCombine(uint64_t running, uint64_t value) {
  // The value's little-endian bytes, hashed with the running hash as seed.
  char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return XXH3_64bits_withSeed(bytes, sizeof(bytes), running);
}

}  // namespace kvr
