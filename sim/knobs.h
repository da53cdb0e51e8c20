// The simulator's fixed chances and durations, by name and in one place. What the swarm
// draws per seed (fault classes, rates, the core's size knobs) is in Scenario
// (sim/scenario.cc); these are the same for every seed today. A Scenario carries a copy
// (Scenario::knobs), so a test, or a later swarm dimension, changes one here without
// touching the code that uses it. The targeted stories keep their own constants in
// their files: each is one story's schedule, not a knob of the random weather.
#pragma once

#include <cstdint>

#include "core/rng.h"

namespace kvr::sim {

// A uniform draw from [lo, hi] (Rng::between): nanoseconds, or a count where named so.
struct Span {
  uint64_t lo = 0;
  uint64_t hi = 0;
  uint64_t draw(Rng& rng) const { return rng.between(lo, hi); }
};

constexpr uint64_t kKnobMs = 1'000'000;

// The network (World::sampleDelay, World::sendMessage).
struct NetworkKnobs {
  double delayTailP = 0.02;              // a message takes far longer (Fault::Delay)
  Span delayTailFactor{10, 100};         // ... this many times its usual delay (a count)
  uint64_t reorderMaxNs = 20 * kKnobMs;  // extra delay of a reordered message, at most
  Span replayLate{300 * kKnobMs, 5000 * kKnobMs};  // a stale copy arrives this much later
};

// The disk as the simulator drives it (World::flush).
struct DiskKnobs {
  uint64_t groupCommitNs = 20'000;  // writes within this window share one fsync
  // fsync takes fsyncBaseNs plus up to fsyncFastNs (with fsyncFastP), else fsyncSlowNs:
  // long enough, next to sub-millisecond messages, that a crash often lands while
  // acknowledgements wait for it.
  uint64_t fsyncBaseNs = 50'000;
  double fsyncFastP = 0.5;
  uint64_t fsyncFastNs = 150'000;
  uint64_t fsyncSlowNs = 2'000'000;
  Span slowFsyncExtra{10 * kKnobMs, 200 * kKnobMs};   // Fault::SlowFsync
  Span fragileVoteExtra{20 * kKnobMs, 80 * kKnobMs};  // the lone-voter story's flushes
  // Power loss between a write and its fsync: at an ordinary flush, at one that makes a
  // vote durable (where a vote sent too early would be lost), and in the lone-voter
  // story's window.
  double crashInFlushP = 0.03;
  double crashInVoteFlushP = 0.25;
  double crashInFragileVoteFlushP = 0.7;
  Span restartAfterFlushCrash{1 * kKnobMs, 50 * kKnobMs};
  uint64_t restartAfterFsyncErrorNs = 100 * kKnobMs;
};

// The random fault events (sim/nemesis.cc).
struct NemesisKnobs {
  double lullP = 0.08;  // a pause in the workload instead of a fault
  Span lull{200 * kKnobMs, 3000 * kKnobMs};
  double transferP = 0.1;  // an operator's leadership transfer instead of a fault
  Span pause{10 * kKnobMs, 1000 * kKnobMs};
  // Clock drift: a rate of driftBase + k / 1000 for k drawn below driftPermille.
  double driftBase = 0.5;
  uint64_t driftPermille = 1000;
  Span partitionHeal{50 * kKnobMs, 3000 * kKnobMs};
  double crashLeaderP = 0.5;  // a crash goes for the leader
  Span crashRestart{10 * kKnobMs, 2000 * kKnobMs};
  Span storageRestart{10 * kKnobMs, 500 * kKnobMs};  // after damage at rest
  double flakyLeadersP = 0.6;  // isolate_leader: every new leader cut off for a while...
  Span flakyLeaders{300 * kKnobMs, 3000 * kKnobMs};
  // ... else one leader cut off for long, with clients on both sides.
  Span deafHoldTimeouts{2, 6};  // a follower stops hearing the leader (election timeouts)
  double deafLullP = 0.7;       // ... during a workload lull
  double cutOffCrashP = 0.7;    // a flaky leader is crashed soon after its cut-off
  Span cutOffCrashAfter{1 * kKnobMs, 150 * kKnobMs};
  Span cutOffHoldTimeouts{3, 12};   // how long a cut-off leader keeps leading (timeouts)
  double cutOffClientsStayP = 0.5;  // a client keeps using the cut-off leader
  double cutOffSlowClockP = 0.7;    // with clock_drift: its clock slow too...
  Span cutOffSlowClockPermille{500, 2000};  // ... by 1 + k / 1000
  double cutOffSnapshotP = 0.5;  // the majority's leader compacts just before the heal
  Span cutOffHealJitter{0, 100 * kKnobMs};
  Span leaderRestart{5 * kKnobMs, 300 * kKnobMs};  // a cut-off or Figure-8 leader crashed
  double replayToRestartedP = 0.5;  // old answers replayed to a restarted node...
  double replayAllP = 0.5;          // ... all of them (else some)
  Span replayToRestartedLate{5 * kKnobMs, 500 * kKnobMs};
  double powerOutageP = 0.25;  // every node restarts at once when the chaos ends
};

// The simulated clients (World::clientNext and after).
struct ClientKnobs {
  double casExpectAbsentP = 0.3;  // a cas expects absence (else a value some client wrote)
  double stickyGiveUpP = 0.5;     // a sticky client gives up on a timed-out write
  uint64_t retryBackoffNs = 20 * kKnobMs;  // before a retry with no leader hint
};

struct Knobs {
  NetworkKnobs net;
  DiskKnobs disk;
  NemesisKnobs nemesis;
  ClientKnobs client;
};

}  // namespace kvr::sim
