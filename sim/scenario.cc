#include "sim/scenario.h"

#include <kj/debug.h>

namespace kvr::sim {

namespace {
constexpr const char* kFaultNames[kFaultCount] = {"drop",
                                                  "delay",
                                                  "reorder",
                                                  "duplicate",
                                                  "partition",
                                                  "crash",
                                                  "pause",
                                                  "clock_drift",
                                                  "torn_write",
                                                  "bit_flip",
                                                  "fsync_error",
                                                  "slow_fsync",
                                                  "client_loss",
                                                  "replay",
                                                  "isolate_leader",
                                                  "lost_write",
                                                  "misdirected_write"};
}

const char* faultName(Fault f) { return kFaultNames[static_cast<size_t>(f)]; }

std::optional<Fault> parseFault(const std::string& name) {
  for (size_t i = 0; i < kFaultCount; ++i) {
    if (name == kFaultNames[i]) return static_cast<Fault>(i);
  }
  return std::nullopt;
}

FaultSet FaultSet::all() {
  FaultSet s;
  s.on.fill(true);
  return s;
}

bool FaultSet::parse(const std::string& text, FaultSet* out, std::string* error) {
  if (text == "all") {
    *out = all();
    return true;
  }
  FaultSet s;
  if (text == "none") {
    *out = s;
    return true;
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string name = text.substr(start, comma - start);
    auto f = parseFault(name);
    if (!f) {
      *error = "unknown fault '" + name + "'; known: all, none, or a list of";
      for (auto n : kFaultNames) *error += std::string(" ") + n;
      return false;
    }
    s.set(*f);
    start = comma + 1;
  }
  *out = s;
  return true;
}

std::string FaultSet::describe() const {
  std::string s;
  for (size_t i = 0; i < kFaultCount; ++i) {
    if (!on[i]) continue;
    if (!s.empty()) s += ',';
    s += kFaultNames[i];
  }
  return s.empty() ? "none" : s;
}

Scenario Scenario::draw(uint64_t seed, const ScenarioPins& pins) {
  Rng rng(seed ^ 0x5ce7a210ull);
  Scenario sc;
  sc.seed = seed;
  static constexpr uint32_t kSizes[] = {1, 3, 3, 5, 5, 5, 7};
  sc.nodes = pins.nodes.value_or(kSizes[rng.below(7)]);
  KJ_REQUIRE(sc.nodes >= 1 && sc.nodes <= 7, "--nodes must be 1..7");
  sc.clients = pins.clients.value_or(static_cast<uint32_t>(rng.between(1, 16)));
  KJ_REQUIRE(sc.clients >= 1 && sc.clients <= 256, "--clients must be 1..256");
  sc.ops = pins.ops.value_or(static_cast<uint32_t>(rng.between(100, 600)));
  KJ_REQUIRE(sc.ops >= 1 && sc.ops <= 1'000'000, "--ops must be 1..1000000");
  sc.keys = pins.keys.value_or(static_cast<uint32_t>(rng.between(1, 12)));
  KJ_REQUIRE(sc.keys >= 1 && sc.keys <= 100'000, "--keys must be 1..100000");
  // Swarm: each class on with probability 3/4, so runs differ in what they stress.
  // Drawn even when pinned, so a pin changes nothing else about the run.
  // The classes added later (lost and misdirected writes) are drawn last, so every
  // older draw of a seed stays what it was.
  for (size_t i = 0; i < kFaultsFirstDrawn; ++i) sc.faults.on[i] = rng.chance(0.75);
  if (pins.faults) sc.faults = *pins.faults;
  sc.putPct = static_cast<uint32_t>(rng.between(10, 50));
  sc.deletePct = static_cast<uint32_t>(rng.between(0, 15));
  sc.casPct = static_cast<uint32_t>(rng.between(0, 30));
  sc.dropP = sc.faults.has(Fault::Drop) ? 0.002 * static_cast<double>(rng.between(1, 100)) : 0;
  sc.duplicateP = sc.faults.has(Fault::Duplicate)
                      ? 0.001 * static_cast<double>(rng.between(1, 50))
                      : 0;
  sc.reorderP = sc.faults.has(Fault::Reorder) ? 0.002 * static_cast<double>(rng.between(1, 100))
                                              : 0;
  sc.meanDelayNs = rng.between(50'000, 2'000'000);
  sc.faultEveryNs = rng.between(50'000'000, 1'000'000'000);
  sc.clientLossP = sc.faults.has(Fault::ClientLoss)
                       ? 0.001 * static_cast<double>(rng.between(1, 50))
                       : 0;
  sc.slowFsyncP = sc.faults.has(Fault::SlowFsync)
                      ? 0.001 * static_cast<double>(rng.between(1, 100))
                      : 0;
  sc.snapshotEvery = static_cast<uint32_t>(rng.between(20, 400));
  sc.sessionCap = static_cast<uint32_t>(rng.between(sc.clients, sc.clients * 4 + 8));
  sc.preVote = rng.chance(0.75);
  sc.checkQuorum = rng.chance(0.75);
  sc.electionTicks = static_cast<uint32_t>(rng.between(4, 20));
  sc.heartbeatTicks = static_cast<uint32_t>(
      rng.between(1, std::max<uint64_t>(1, sc.electionTicks / 3)));
  static constexpr uint32_t kAppendBytes[] = {1, 1, 200, 2000, 64 * 1024};
  sc.maxAppendBytes = kAppendBytes[rng.below(5)];
  sc.maxInflight = static_cast<uint32_t>(rng.chance(0.3) ? 1 : rng.between(2, 16));
  sc.snapshotChunkBytes = static_cast<uint32_t>(rng.chance(0.3) ? rng.between(16, 128)
                                                                : rng.between(512, 8192));
  sc.compactionKeepEntries = static_cast<uint32_t>(rng.below(sc.snapshotEvery / 2 + 1));
  sc.replayP = sc.faults.has(Fault::Replay) ? 0.0005 * static_cast<double>(rng.between(1, 20))
                                            : 0;
  sc.stickyClients = rng.chance(0.5) ? 1 : 0;
  for (size_t i = kFaultsFirstDrawn; i < kFaultCount; ++i) {
    bool on = rng.chance(0.75);
    if (!pins.faults) sc.faults.on[i] = on;
  }
  // Membership changes for about a third of the seeds, from a stream of their own so
  // the draws above stay what they were.
  Rng mrng(seed ^ 0x6d656d62657273ull);
  bool members = mrng.chance(0.35);
  if (pins.membership) members = *pins.membership;
  uint32_t room = 7 - sc.nodes;
  uint32_t spares = room == 0 ? 0 : static_cast<uint32_t>(mrng.between(1, std::min(room, 3u)));
  uint64_t every = mrng.between(200'000'000, 2'000'000'000);
  if (members) {
    sc.spares = spares;
    sc.memberEveryNs = every;
  }
  return sc;
}

std::string Scenario::describe() const {
  return kj::str("seed=", seed, " nodes=", nodes, " clients=", clients, " ops=", ops,
                 " keys=", keys, " faults=", faults.describe().c_str(),
                 preVote ? "" : " no-prevote", checkQuorum ? "" : " no-checkquorum",
                 " election=", electionTicks, " heartbeat=", heartbeatTicks,
                 " append_bytes=", maxAppendBytes, " inflight=", maxInflight,
                 membership() ? kj::str(" membership spares=", spares).cStr() : "")
      .cStr();
}

}  // namespace kvr::sim
