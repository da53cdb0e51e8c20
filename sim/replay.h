// Replay files: a failing run reduced to its seed, its pinned scenario flags and the
// fault events and operations that still take place (a Schedule). `kvsim --replay FILE`
// runs exactly that, and, in the build that wrote it, reproduces the same run byte for
// byte. Plain text, one field a line:
//
//   kvsim-replay 1
//   seed 25
//   pins --nodes 5 --clients 3 --ops 40 --keys 2 --faults partition,crash
//   property stale_read
//   faults 85 3 12 40      (events in the full run, then the kept ones)
//   ops 473 0 1 7 9
//   chaos_end_ns 9000000000
#pragma once

#include <cstdint>
#include <string>

#include "sim/scenario.h"
#include "sim/world.h"

namespace kvr::sim {

constexpr uint32_t kReplayFormat = 1;

struct Replay {
  uint64_t seed = 0;
  ScenarioPins pins;
  std::string property;  // the violation it reproduces
  Schedule schedule;
};

std::string formatReplay(const Replay& replay);
// False, with the reason in *error, for a file of another format version, a missing or
// unknown field, or an index beyond its count.
bool parseReplay(const std::string& text, Replay* out, std::string* error);

}  // namespace kvr::sim
