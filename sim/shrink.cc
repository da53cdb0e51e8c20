#include "sim/shrink.h"

#include "sim/world.h"

namespace kvr::sim {

std::string pinFlags(const ScenarioPins& pins) {
  std::string s;
  if (pins.nodes) s += " --nodes " + std::to_string(*pins.nodes);
  if (pins.clients) s += " --clients " + std::to_string(*pins.clients);
  if (pins.ops) s += " --ops " + std::to_string(*pins.ops);
  if (pins.keys) s += " --keys " + std::to_string(*pins.keys);
  if (pins.faults) s += " --faults " + pins.faults->describe();
  if (pins.membership) s += *pins.membership ? " --membership on" : " --membership off";
  return s;
}

ShrinkResult shrinkScenario(const Scenario& failing, const std::string& property,
                            uint64_t maxRuns) {
  ShrinkResult best;
  best.pins.nodes = failing.nodes;
  best.pins.clients = failing.clients;
  best.pins.ops = failing.ops;
  best.pins.keys = failing.keys;
  best.pins.faults = failing.faults;
  best.pins.membership = failing.membership();
  best.scenario = failing;
  auto stillFails = [&](const ScenarioPins& pins) {
    if (best.runs >= maxRuns) return false;
    ++best.runs;
    Scenario sc = Scenario::draw(failing.seed, pins);
    RunResult r = runScenario(sc, RunOptions{});
    return !r.ok && r.property == property;
  };
  // Delta debugging on each dimension: try halving, then decrementing, keep what fails.
  bool progress = true;
  while (progress && best.runs < maxRuns) {
    progress = false;
    for (auto dim : {&ScenarioPins::ops, &ScenarioPins::clients, &ScenarioPins::keys}) {
      const uint32_t current = *(best.pins.*dim);
      for (uint32_t candidate : {current / 2, current - 1}) {
        if (candidate < 1 || candidate >= current) continue;
        ScenarioPins trial = best.pins;
        trial.*dim = candidate;
        if (stillFails(trial)) {
          best.pins = trial;
          progress = true;
          break;
        }
      }
    }
    for (size_t f = 0; f < kFaultCount; ++f) {
      if (!best.pins.faults->on[f]) continue;
      ScenarioPins trial = best.pins;
      trial.faults->on[f] = false;
      if (stillFails(trial)) {
        best.pins = trial;
        progress = true;
      }
    }
    if (*best.pins.nodes > 1) {
      ScenarioPins trial = best.pins;
      *trial.nodes = *best.pins.nodes - 2 >= 1 ? *best.pins.nodes - 2 : 1;
      if (stillFails(trial)) {
        best.pins = trial;
        progress = true;
      }
    }
  }
  best.scenario = Scenario::draw(failing.seed, best.pins);
  best.flags = pinFlags(best.pins);
  return best;
}

}  // namespace kvr::sim
