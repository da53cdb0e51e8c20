// What one simulation run does: drawn from its seed (swarm testing), with any part
// pinned from the command line.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "core/rng.h"
#include "sim/knobs.h"

namespace kvr::sim {

enum class Fault : uint8_t {
  Drop,
  Delay,
  Reorder,
  Duplicate,
  Partition,
  Crash,
  Pause,
  ClockDrift,
  TornWrite,
  BitFlip,
  FsyncError,
  SlowFsync,
  ClientLoss,
  Replay,            // an old message delivered again, seconds late
  IsolateLeader,     // the leader cut off with a minority, then often crashed (Figure 8)
  LostWrite,         // a synced sector never reached the disk (reads back as zeros)
  MisdirectedWrite,  // a synced sector landed at another place (of the node's files)
};
constexpr size_t kFaultCount = 17;
constexpr size_t kFaultsFirstDrawn = 15;  // the rest are drawn after the other knobs
const char* faultName(Fault f);           // "drop", "torn_write", ...
std::optional<Fault> parseFault(const std::string& name);

struct FaultSet {
  std::array<bool, kFaultCount> on{};
  bool has(Fault f) const { return on[static_cast<size_t>(f)]; }
  void set(Fault f, bool v = true) { on[static_cast<size_t>(f)] = v; }
  static FaultSet all();
  static FaultSet none() { return {}; }
  // "all", "none", or a comma-separated list of fault names. False on a bad name.
  static bool parse(const std::string& text, FaultSet* out, std::string* error);
  std::string describe() const;
};

// Flags that pin parts of the scenario; unset parts are drawn from the seed.
struct ScenarioPins {
  std::optional<uint32_t> nodes;
  std::optional<uint32_t> clients;
  std::optional<uint32_t> ops;
  std::optional<uint32_t> keys;
  std::optional<FaultSet> faults;
  std::optional<bool> membership;
};

struct Scenario {
  uint64_t seed = 0;
  uint32_t nodes = 5;
  uint32_t clients = 4;
  uint32_t ops = 500;
  uint32_t keys = 8;
  FaultSet faults;
  // Workload mix, in percent (get is the rest).
  uint32_t putPct = 35, deletePct = 10, casPct = 20;
  uint32_t stalePct = 0;  // stale reads are not linearizable: kept at 0 for checked runs
  // Fault rates.
  double dropP = 0, duplicateP = 0, reorderP = 0;
  uint64_t meanDelayNs = 200'000;       // one-way latency (heavy-tailed around this)
  uint64_t faultEveryNs = 300'000'000;  // mean time between scheduled faults
  double clientLossP = 0;
  double slowFsyncP = 0;
  uint32_t snapshotEvery = 200;         // entries between local snapshots
  uint32_t snapshotSpreadPercent = 50;  // each stretched by up to this (as kvnode does)
  uint32_t sessionCap = 64;             // small, to exercise session expiry
  // Raft options are drawn too: safety (and ReadIndex) must not depend on them.
  bool preVote = true;
  bool checkQuorum = true;
  uint32_t electionTicks = 10;
  uint32_t heartbeatTicks = 2;
  // The core's size knobs, drawn small too: bugs hide behind big batches.
  uint32_t maxAppendBytes = 64 * 1024;  // 1 means one entry per Append
  uint32_t maxInflight = 8;
  uint32_t snapshotChunkBytes = 1024;
  uint32_t compactionKeepEntries = 50;
  double replayP = 0;  // per delivered message: replay it later
  // Share of clients that retry the same node after a timeout (one endpoint known):
  // all of them grow a cut-off leader's divergent log; none of them move on to the new
  // leader and write there while others still read from the old one.
  double stickyClients = 0;
  // Membership changes (sim/membership.cc): `spares` more node slots (ids nodes+1..)
  // that start empty and join as learners; a change is tried every ~memberEveryNs.
  uint32_t spares = 0;
  uint64_t memberEveryNs = 0;
  bool membership() const { return memberEveryNs > 0; }

  // Draws everything not pinned from `seed`.
  static Scenario draw(uint64_t seed, const ScenarioPins& pins);
  std::string describe() const;
  Knobs knobs;  // fixed chances and durations (sim/knobs.h), not drawn
};

}  // namespace kvr::sim
