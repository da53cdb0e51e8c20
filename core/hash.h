// The one non-cryptographic hash of the project: XXH3-64, the same on every platform.
// For checksums (WAL records, snapshots, the identity file), state digests and the
// simulator's trace hash.
#pragma once

#include <cstdint>
#include <string_view>

namespace kvr {

uint64_t hash64(std::string_view bytes);

// hash64 over bytes given in pieces: digest() == hash64(the pieces joined), whatever the
// cut (snapshots streamed to a file without being held whole).
class Hasher {
 public:
  Hasher();
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void update(std::string_view bytes);
  uint64_t digest() const;

 private:
  void* state_;  // XXH3_state_t
};

// Mixes `value` into a running hash (order matters): running = hash of (running, value).
uint64_t hashCombine(uint64_t running, uint64_t value);

}  // namespace kvr
