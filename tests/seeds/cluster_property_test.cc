// rapidcheck over the whole replica: generated cluster sizes, client counts, workloads
// and fault mixes (message drop, delay, reordering, duplication, partitions, crashes
// that keep only what was fsynced), on in-memory storage so every generated case is
// about the core alone. Each run checks, on every event: one leader per term, log
// matching, leader completeness, committed entries never change, no two nodes apply
// different entries at one index, each request executes at most once; at the end the
// client history is linearizable and a healed cluster made progress.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include "sim/world.h"

namespace kvr::sim {
namespace {

RC_GTEST_PROP(ClusterProperty, SafeAndLiveUnderGeneratedFaults, ()) {
  const auto seed = *rc::gen::arbitrary<uint64_t>();
  const auto nodes = *rc::gen::element<uint32_t>(1, 2, 3, 4, 5, 7);
  const auto clients = *rc::gen::inRange<uint32_t>(1, 9);
  const auto ops = *rc::gen::inRange<uint32_t>(10, 200);
  const auto keys = *rc::gen::inRange<uint32_t>(1, 6);
  FaultSet faults;
  for (Fault f : {Fault::Drop, Fault::Delay, Fault::Reorder, Fault::Duplicate, Fault::Partition,
                  Fault::Crash, Fault::Pause, Fault::ClockDrift, Fault::FsyncError,
                  Fault::SlowFsync, Fault::ClientLoss}) {
    faults.set(f, *rc::gen::arbitrary<bool>());
  }
  ScenarioPins pins;
  pins.nodes = nodes;
  pins.clients = clients;
  pins.ops = ops;
  pins.keys = keys;
  pins.faults = faults;
  Scenario sc = Scenario::draw(seed, pins);
  RunOptions opts;
  opts.memStore = true;
  RunResult r = runScenario(sc, opts);
  RC_LOG() << sc.describe() << "\n";
  if (!r.ok) RC_FAIL(r.property + ": " + r.detail);
  RC_ASSERT(r.opsOk > 0);
}

}  // namespace
}  // namespace kvr::sim
