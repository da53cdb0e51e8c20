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
  uint64_t faultEvents = 0;  // fault events that fired (kept or dropped), see Schedule
  uint64_t opsDrawn = 0;     // client operations drawn (issued or dropped)
  uint64_t chaosEndNs = 0;   // when the chaos phase ended (0: the run stopped during it)
  std::array<uint64_t, kProbeCount> probes{};  // coverage probe hits in this run
};

// Which of a run's fault events and client operations take place: replay files and
// schedule shrinking (sim/shrink.h). Events are numbered in the order they come up: the
// k-th time the fault schedule fires, the k-th operation a client draws. Each draws
// from its own random stream (derived from the seed and k), so dropping some leaves the
// others as they were drawn (their effects on the run may differ, of course).
struct Schedule {
  std::vector<bool> keepFaults;  // index k kept when k < size() and keepFaults[k]
  std::vector<bool> keepOps;
  // When the chaos phase ends (0: as usual, once every operation was drawn). A fixed
  // end keeps the fault events coming at their times however many operations remain.
  uint64_t chaosEndNs = 0;
  static bool kept(const std::vector<bool>& keep, uint64_t k) {
    return k < keep.size() && keep[k];
  }
};

struct RunOptions {
  std::string tracePath;     // write a readable trace here when set
  std::string historyPath;   // write the client history (JSON lines) here when set
  std::string timelinePath;  // write the run as an HTML timeline here when set
  bool memStore = false;     // replicas on MemStore instead of the real WAL (tests only)
  // When set, only the kept fault events and operations take place (replay, shrinking).
  std::optional<Schedule> schedule;
  // Testing the shrinker: the run fails (property "injected") once all of these fault
  // events have been injected.
  std::vector<uint64_t> testFailAfterFaults;
  uint64_t maxSimNs = 600'000'000'000ull;  // hard stop: 10 simulated minutes
};

class World;

// Runs one scenario to completion and checks it.
RunResult runScenario(const Scenario& scenario, const RunOptions& options);

}  // namespace kvr::sim
