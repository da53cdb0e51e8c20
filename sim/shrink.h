// Minimizes a failing scenario: fewer ops, clients, keys and fault classes, keeping the
// seed, for as long as the run still fails with the same property. The result is a set
// of kvsim flags that replays it.
#pragma once

#include <string>

#include "sim/scenario.h"
#include "sim/world.h"

namespace kvr::sim {

struct ShrinkResult {
  Scenario scenario;
  ScenarioPins pins;
  std::string flags;  // e.g. " --nodes 3 --clients 2 --ops 40 --keys 1 --faults crash,drop"
  uint64_t runs = 0;
};

ShrinkResult shrinkScenario(const Scenario& failing, const std::string& property,
                            uint64_t maxRuns = 300, const RunOptions& base = {});

std::string pinFlags(const ScenarioPins& pins);

// Minimizes the schedule of a failing run (its fault events, then its operations, by
// delta debugging) while the run still fails with `property`, within `maxRuns` runs.
struct ScheduleShrinkResult {
  Schedule schedule;
  RunResult before, after;  // the full run and the minimized one
  uint64_t faultsBefore = 0, faultsAfter = 0, opsBefore = 0, opsAfter = 0;
  uint64_t runs = 0;
};
// Every run uses `base` (its schedule replaced).
ScheduleShrinkResult shrinkSchedule(const Scenario& failing, const std::string& property,
                                    uint64_t maxRuns, const RunOptions& base = {});

}  // namespace kvr::sim
