// One simulated cluster run: N replicas on simulated disks and a simulated network,
// clients recording a history, a fault schedule, and the checkers. Single-threaded,
// virtual time, every random choice from one seed.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/probe.h"
#include "core/replica.h"
#include "sim/checker.h"
#include "sim/event_queue.h"
#include "sim/history.h"
#include "sim/node_store.h"
#include "sim/scenario.h"

namespace kvr::sim {

struct RunResult {
  bool ok = true;
  std::string property;  // the violated property ("liveness", "linearizability", ...)
  std::string detail;
  uint64_t failedAtEvent = 0;
  uint64_t simNs = 0;
  uint64_t events = 0;
  uint64_t traceHash = 0;
  std::array<uint64_t, kFaultCount> faults{};  // injected, per kind
  uint64_t opsOk = 0, opsFail = 0, opsUnknown = 0;
  uint64_t messages = 0;
  uint64_t transfers = 0;      // leadership transfers requested
  uint64_t memberChanges = 0;  // membership changes a leader accepted
  uint64_t maxCommit = 0;
  std::array<uint64_t, kProbeCount> probes{};  // coverage probe hits in this run
};

struct RunOptions {
  std::string tracePath;    // write a readable trace here when set
  std::string historyPath;  // write the client history (JSON lines) here when set
  bool memStore = false;    // replicas on MemStore instead of the real WAL (tests only)
  // Scheduled faults, when set, replace the random fault schedule (replay/shrink).
  uint64_t maxSimNs = 600'000'000'000ull;  // hard stop: 10 simulated minutes
};

class World;

// Runs one scenario to completion and checks it.
RunResult runScenario(const Scenario& scenario, const RunOptions& options);

}  // namespace kvr::sim
