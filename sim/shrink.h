// Minimizes a failing scenario: fewer ops, clients, keys and fault classes, keeping the
// seed, for as long as the run still fails with the same property. The result is a set
// of kvsim flags that replays it.
#pragma once

#include <string>

#include "sim/scenario.h"

namespace kvr::sim {

struct ShrinkResult {
  Scenario scenario;
  ScenarioPins pins;
  std::string flags;  // e.g. " --nodes 3 --clients 2 --ops 40 --keys 1 --faults crash,drop"
  uint64_t runs = 0;
};

ShrinkResult shrinkScenario(const Scenario& failing, const std::string& property,
                            uint64_t maxRuns = 300);

std::string pinFlags(const ScenarioPins& pins);

}  // namespace kvr::sim
