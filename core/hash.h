// The one non-cryptographic hash of the project: XXH3-64, the same on every platform.
// For checksums (WAL records, snapshots, the identity file), state digests and the
// simulator's trace hash.
#pragma once

#include <cstdint>
#include <string_view>

namespace kvr {

uint64_t hash64(std::string_view bytes);

// Mixes `value` into a running hash (order matters): running = hash of (running, value).
uint64_t hashCombine(uint64_t running, uint64_t value);

}  // namespace kvr
