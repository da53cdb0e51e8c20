#include "sim/shrink.h"

#include <algorithm>
#include <functional>
#include <vector>

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
                            uint64_t maxRuns, const RunOptions& base) {
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
    RunResult r = runScenario(sc, base);
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

namespace {

std::vector<bool> maskOf(const std::vector<uint64_t>& kept, uint64_t count) {
  std::vector<bool> mask(count, false);
  for (uint64_t k : kept) mask[k] = true;
  return mask;
}

// Delta debugging, complements only (Zeller's ddmin without the subset tests): drop one
// of n chunks at a time; on success keep the rest and coarsen, else refine; stop at
// single items or when the budget is spent.
std::vector<uint64_t> ddmin(std::vector<uint64_t> items,
                            const std::function<bool(const std::vector<uint64_t>&)>& fails) {
  if (items.empty()) return items;
  if (fails({})) return {};
  size_t n = 2;
  while (items.size() >= 2) {
    const size_t chunk = (items.size() + n - 1) / n;
    bool reduced = false;
    for (size_t start = 0; start < items.size(); start += chunk) {
      std::vector<uint64_t> rest(items.begin(), items.begin() + ptrdiff_t(start));
      rest.insert(rest.end(), items.begin() + ptrdiff_t(std::min(start + chunk, items.size())),
                  items.end());
      if (fails(rest)) {
        items = std::move(rest);
        n = std::max<size_t>(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= items.size()) break;
      n = std::min(n * 2, items.size());
    }
  }
  if (items.size() == 1 && fails({})) items.clear();
  return items;
}

uint64_t keptCount(const std::vector<bool>& mask) {
  return static_cast<uint64_t>(std::count(mask.begin(), mask.end(), true));
}

}  // namespace

ScheduleShrinkResult shrinkSchedule(const Scenario& failing, const std::string& property,
                                    uint64_t maxRuns, const RunOptions& base) {
  ScheduleShrinkResult out;
  RunOptions full = base;
  out.before = runScenario(failing, full);
  out.runs = 1;
  const uint64_t faults = out.before.faultEvents, ops = out.before.opsDrawn;
  out.faultsBefore = faults;
  out.opsBefore = ops;
  out.schedule.keepFaults.assign(faults, true);
  out.schedule.keepOps.assign(ops, true);
  // Chaos lasts as long as it did (or, if the violation came first, a while past it),
  // so that fewer operations do not end it before the fault events that matter.
  const uint64_t chaosEnd = out.before.chaosEndNs > 0
                                ? out.before.chaosEndNs
                                : out.before.simNs + out.before.simNs / 2 + 1'000'000'000;
  out.schedule.chaosEndNs = chaosEnd;
  out.after = out.before;
  if (out.before.ok || out.before.property != property) return out;
  auto run = [&](const Schedule& s, RunResult* r) {
    if (out.runs >= maxRuns) return false;
    ++out.runs;
    RunOptions o = base;
    o.schedule = s;
    *r = runScenario(failing, o);
    return !r->ok && r->property == property;
  };
  // Every schedule kept below is one that failed; it must also fail under replay.
  KJ_ASSERT(run(out.schedule, &out.after), "the full schedule does not replay the failure");
  auto index = [](uint64_t count) {
    std::vector<uint64_t> all(count);
    for (uint64_t k = 0; k < count; ++k) all[k] = k;
    return all;
  };
  std::vector<uint64_t> keptFaults = index(faults), keptOps = index(ops);
  // Fails with these kept events? Then its result is the newest minimized run.
  auto fails = [&](const std::vector<uint64_t>& f, const std::vector<uint64_t>& o) {
    RunResult r;
    if (!run(Schedule{maskOf(f, faults), maskOf(o, ops), chaosEnd}, &r)) return false;
    out.after = r;
    return true;
  };
  for (int pass = 0; pass < 2; ++pass) {
    keptFaults = ddmin(keptFaults, [&](const auto& trial) { return fails(trial, keptOps); });
    keptOps = ddmin(keptOps, [&](const auto& trial) { return fails(keptFaults, trial); });
  }
  out.schedule = Schedule{maskOf(keptFaults, faults), maskOf(keptOps, ops), chaosEnd};
  out.faultsAfter = keptCount(out.schedule.keepFaults);
  out.opsAfter = keptCount(out.schedule.keepOps);
  return out;
}

}  // namespace kvr::sim
